"""The ``dblayer`` command, run as a user runs it: the installed entry point in a
subprocess, on a SQLite file, PostgreSQL and MariaDB (a database of its own), with the
database checked afterwards."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from dblayer.core import Database, migrations
from dblayer.stores.blitz import Reading, Session
from dblayer.stores.nova import NovaDBAPI, RequestContext
from dblayer.stores.nova.facade import create_schema
from dblayer.stores.nova.models import BASE
from dblayer.stores.topchef import JobStatus, Service
from tests.conftest import REDIS_URL, SHARED_BACKENDS, backend_url

NOVA = BASE.metadata

DBLAYER = Path(sys.executable).with_name("dblayer")
SECRET = "s3cret-Pw"


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    """Run ``dblayer args`` and return the finished process (stdout, stderr as text)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DBLAYER_URL", "COLUMNS")}
    environ.update(env or {})
    return subprocess.run(
        [str(DBLAYER), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=environ,
    )


def run_ok(*args: str, **kwargs: Any) -> Any:
    proc = run(*args, **kwargs)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def run_json(*args: str, **kwargs: Any) -> Any:
    return json.loads(run_ok(*args, "--json", **kwargs).stdout)


def one_line_error(proc: Any) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dblayer: error: ")
    return lines[0]


@pytest.fixture(params=SHARED_BACKENDS)
def url(request: pytest.FixtureRequest, run_dir: Path) -> str:
    """A database of the CLI tests' own on each backend several processes can share."""
    return backend_url(request.param, run_dir, store="cli")


@pytest.fixture
def db(url: str) -> Any:
    database = Database(url)
    yield database
    database.dispose()


def test_entry_point_is_installed() -> None:
    assert DBLAYER.exists()
    proc = run_ok("--help")
    for command in ("info", "db", "jobs", "archive", "purge", "copy", "demo"):
        assert command in proc.stdout


TOPCHEF_JOBS = {"REGISTERED": 2, "COMPLETED": 1, "WORKING": 0, "ERROR": 0}


def _topchef_url(db: Database, tmp_path: Path) -> str:
    """A database of TopChef's own on ``db``'s backend (its table services is nova's too):
    a file in ``tmp_path``, or this run's ``cli_topchef`` database on the server."""
    if db.backend == "sqlite":
        return f"sqlite:///{tmp_path / 'topchef.db'}"
    backend = "postgresql" if db.backend == "postgresql" else "mariadb"
    return backend_url(backend, tmp_path, store="cli_topchef")


def _topchef_demo_jobs(url: str) -> dict[str, Any]:
    """What the demo left in TopChef's database at ``url``, read through the store: its
    revision, the demo's services and their jobs by status, and the completed jobs."""
    topchef_db = Database(url)
    try:
        with OrmSession(topchef_db.engine) as session:
            services = session.query(Service).filter_by(name="demo-odmr").all()
            jobs = [job for service in services for job in service.jobs]
            return {
                "revision": migrations.current(topchef_db, "topchef"),
                "services": [str(service.id) for service in services],
                "available": [service.is_service_available for service in services],
                "jobs": {s.name: sum(job.status is s for job in jobs) for s in JobStatus},
                "completed": [
                    (str(job.id), job.parameters, job.results)
                    for job in jobs
                    if job.status is JobStatus.COMPLETED
                ],
            }
    finally:
        topchef_db.dispose()


def test_demo(url: str, db: Database, tmp_path: Path) -> None:
    topchef_url = _topchef_url(db, tmp_path)
    out = run_json(
        "demo",
        "--url",
        url,
        "--topchef-url",
        topchef_url,
        "--workers",
        "3",
        "--jobs",
        "60",
        "--redis-url",
        REDIS_URL,
    )
    assert out["backend"] == db.facts.backend or out["backend"] == "mariadb"
    jobs = out["jobman"]
    assert jobs["jobs"] == jobs["completed"] == sum(jobs["claimed_per_worker"]) == 60
    assert len(jobs["claimed_per_worker"]) == 3
    assert jobs["claimed_twice"] == 0
    nova = out["nova"]
    assert nova["hidden_after_delete"] and nova["row_kept_after_delete"]
    assert nova["in_shadow_after_archive"] and nova["archived_rows"] >= 1
    assert out["blitz"]["readings"] == 25
    # The database afterwards.
    with db.transaction() as conn:
        statuses = conn.execute(sa.text("SELECT status, COUNT(*) FROM demo_job GROUP BY status"))
        assert dict(statuses.all()) == {"COMPLETED": 60}
        uuid = nova["instance"]
        instances, shadow = NOVA.tables["instances"], NOVA.tables["shadow_instances"]
        assert conn.execute(sa.select(instances).where(instances.c.uuid == uuid)).first() is None
        assert conn.execute(sa.select(shadow).where(shadow.c.uuid == uuid)).first() is not None
        sessions, readings = Session.__table__, Reading.__table__
        ref = out["blitz"]["session"]
        session_id = conn.execute(
            sa.select(sessions.c.id).where(sessions.c.ref_id == ref)
        ).scalar_one()
        count = sa.select(sa.func.count()).select_from(readings)
        assert conn.execute(count.where(readings.c.sessionId == session_id)).scalar_one() == 25
    # info finds the three stores the demo made, with their row counts.
    info = run_json("info", "--url", url)
    assert info["url"] == db.url
    assert {"demo_job", "demo_kvp", "instances", "reading"} <= set(info["tables"])
    stores = {s["store"]: s for s in info["stores"]}
    assert {"jobman", "nova", "blitz"} <= set(stores)
    assert stores["jobman"]["prefix"] == "demo_"
    assert stores["jobman"]["tables"]["demo_job"] == 60
    assert stores["blitz"]["tables"]["reading"] >= 25
    assert stores["nova"]["archived_rows"] >= 1
    assert len(stores["nova"]["tables"]) == len(NOVA.tables)
    # Every schema the demo made came from its store's migrations, at head.
    heads = {store: migrations.heads(store)[0] for store in ("nanny", "blitz", "nova", "jobman")}
    assert out["schemas"] == {
        "nanny": heads["nanny"],
        "blitz": heads["blitz"],
        "nova": heads["nova"],
        "jobman (demo_*)": heads["jobman"],
    }
    for store, head in heads.items():
        assert (stores[store]["revision"], stores[store]["head"]) == (head, head)
        assert stores[store]["up_to_date"] is True
    assert migrations.current(db, "jobman", dao="worker", table_prefix="demo_") == heads["jobman"]
    assert stores["nanny"]["rows"] == 0
    text = run_ok("info", "--url", url).stdout
    assert "nova" in text and "jobman (demo_*)" in text and db.facts.driver in text
    assert f"{heads['nova']} (head)" in text
    # TopChef on its database of its own (its "services" table is nova's too), at head by
    # its migrations, with the demo's service and jobs; none of it in the main database.
    topchef_head = migrations.heads("topchef")[0]
    topchef = out["topchef"]
    topchef_display = sa.make_url(topchef_url).render_as_string(hide_password=True)
    assert (topchef["url"], topchef["revision"]) == (topchef_display, topchef_head)
    assert topchef["backend"] == out["backend"]
    assert topchef["submitted"] == 3 and topchef["jobs"] == TOPCHEF_JOBS
    assert topchef["job_results"] is not None
    left = _topchef_demo_jobs(topchef_url)
    assert left["revision"] == topchef_head
    assert left["services"] == [topchef["service"]] and left["available"] == [True]
    assert left["jobs"] == TOPCHEF_JOBS
    assert left["completed"] == [
        (topchef["job"], topchef["job_parameters"], topchef["job_results"])
    ]
    assert migrations.current(db, "topchef") is None and "topchef" not in stores
    topchef_info = run_json("info", "--url", topchef_url)
    assert [s["store"] for s in topchef_info["stores"]] == ["topchef"]
    assert topchef_info["stores"][0]["revision"] == topchef_head
    # Again, as text: a fresh set of TopChef jobs, the previous run's gone.
    again = run_ok(
        "demo",
        "--url",
        url,
        "--topchef-url",
        topchef_url,
        "--workers",
        "2",
        "--jobs",
        "10",
        "--redis-url",
        REDIS_URL,
    ).stdout
    assert "schemas nanny, blitz, nova, jobman (demo_*) at head" in again
    assert f"topchef on {topchef_display}, a database of its own" in again
    assert f"schema at head ({topchef_head})" in again
    assert "now 2 REGISTERED, 1 COMPLETED" in again
    rerun = _topchef_demo_jobs(topchef_url)
    assert len(rerun["services"]) == 1 and rerun["services"] != left["services"]
    assert rerun["jobs"] == TOPCHEF_JOBS


def _instances(db: Database, live: int, destroyed: int) -> list[str]:
    """Create instances (with metadata); soft-delete ``destroyed`` of them; their uuids."""
    create_schema(db)
    api = NovaDBAPI(database=db)
    ctx = RequestContext("cli-user", "cli-project")
    uuids = [
        api.instance_create(ctx, {"display_name": f"cli-{i}", "metadata": {"n": str(i)}})["uuid"]
        for i in range(live + destroyed)
    ]
    for uuid in uuids[live:]:
        api.instance_destroy(ctx, uuid)
    return uuids


def _where(db: Database, table: str, uuids: list[str]) -> int:
    t = NOVA.tables[table]
    with db.transaction() as conn:
        query = sa.select(sa.func.count()).select_from(t).where(t.c.uuid.in_(uuids))
        return conn.execute(query).scalar_one()


def test_archive_and_purge(url: str, db: Database) -> None:
    uuids = _instances(db, live=1, destroyed=4)
    first = run_json("archive", "--store", "nova", "--max-rows", "2", "--url", url)
    assert first["total"] == 2 == sum(first["archived"].values())
    rest = run_ok("archive", "--store", "nova", "--batch-size", "3", "--url", url)
    # Not a terminal: plain progress lines on stderr, the per-table summary on stdout.
    assert "archiving instances: " in rest.stderr
    assert "instances" in rest.stdout and "archived " in rest.stdout
    assert _where(db, "instances", uuids) == 1  # the live one
    assert _where(db, "shadow_instances", uuids) == 4
    again = run_json("archive", "--url", url)
    assert again == {"store": "nova", "archived": {}, "total": 0, "deleted_rows_left": 0}

    nothing = run_json("purge", "--before", "2000-01-01", "--url", url)
    assert nothing["total"] == 0 and nothing["purged"] == {}
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    purged = run_json("purge", "--store", "nova", "--before", tomorrow, "--url", url)
    assert purged["purged"]["shadow_instances"] >= 4
    assert purged["total"] == sum(purged["purged"].values())
    assert _where(db, "shadow_instances", uuids) == 0
    assert _where(db, "instances", uuids) == 1


def test_url_from_environment_then_default_file(tmp_path: Path) -> None:
    path = tmp_path / "env.db"
    run_ok("demo", "--workers", "2", "--jobs", "10", env={"DBLAYER_URL": f"sqlite:///{path}"})
    assert path.exists()
    # TopChef's database: the sibling file <stem>-topchef.db, at head.
    sibling = f"sqlite:///{tmp_path / 'env-topchef.db'}"
    assert _topchef_demo_jobs(sibling)["revision"] == migrations.heads("topchef")[0]
    assert migrations.current(f"sqlite:///{path}", "topchef") is None
    assert run_json("info", env={"DBLAYER_URL": f"sqlite:///{path}"})["url"].endswith("env.db")
    # No --url, no DBLAYER_URL: ./dblayer.db, which info does not create.
    line = one_line_error(run("info", cwd=tmp_path))
    assert "dblayer.db" in line and not (tmp_path / "dblayer.db").exists()


def test_demo_with_no_arguments_in_an_empty_directory(tmp_path: Path) -> None:
    text = run_ok("demo", cwd=tmp_path).stdout
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["dblayer-topchef.db", "dblayer.db"]
    assert "dblayer demo on sqlite:///dblayer.db" in text
    assert "topchef on sqlite:///dblayer-topchef.db, a database of its own" in text
    topchef = _topchef_demo_jobs(f"sqlite:///{tmp_path / 'dblayer-topchef.db'}")
    assert topchef["revision"] == migrations.heads("topchef")[0]
    assert topchef["jobs"] == TOPCHEF_JOBS


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_demo_on_a_server_puts_topchef_in_the_working_directory(
    backend: str, run_dir: Path, tmp_path: Path
) -> None:
    url = backend_url(backend, run_dir, store="cli")
    out = run_json("demo", "--url", url, "--workers", "2", "--jobs", "10", cwd=tmp_path)
    assert out["topchef"]["url"] == "sqlite:///dblayer-topchef.db"
    assert out["topchef"]["backend"] == "sqlite" and out["topchef"]["jobs"] == TOPCHEF_JOBS
    topchef = _topchef_demo_jobs(f"sqlite:///{tmp_path / 'dblayer-topchef.db'}")
    assert topchef["revision"] == migrations.heads("topchef")[0]


def test_demo_topchef_url_bad_or_the_main_database(tmp_path: Path) -> None:
    main = f"sqlite:///{tmp_path / 'main.db'}"
    bad = f"postgresql+psycopg://p:{SECRET}@127.0.0.1:1/x"
    proc = run("demo", "--url", main, "--topchef-url", bad)
    assert "TopChef's database postgresql+psycopg://p:***@127.0.0.1:1/x" in one_line_error(proc)
    assert SECRET not in proc.stderr + proc.stdout
    assert "--topchef-url" in one_line_error(run("demo", "--url", main, "--topchef-url", main))
    # Refused before the tour: nothing was made in the main database.
    with Database(main) as db:
        assert db.table_names() == []


@pytest.mark.parametrize(
    "args",
    [
        ["info", "--url", f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/nope"],
        ["info", "--url", f"mysql+pymysql://root:{SECRET}@127.0.0.1:3306/test"],
        ["info", "--url", f"nosuchdb://root:{SECRET}@host/db"],
        ["info", "--url", f"postgresql://u:{SECRET}@[bad"],
        ["archive", "--url", f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/x", "--json"],
        [
            "purge",
            "--before",
            "2020-01-01",
            "--url",
            f"postgresql+psycopg://p:{SECRET}@127.0.0.1:1/x",
        ],
        ["demo", "--url", f"postgresql+psycopg://p:{SECRET}@127.0.0.1:1/x"],
    ],
)
def test_bad_url_is_one_line_without_password(args: list[str]) -> None:
    proc = run(*args)
    one_line_error(proc)
    assert SECRET not in proc.stderr + proc.stdout


def test_password_in_environment_is_not_shown() -> None:
    proc = run("info", env={"DBLAYER_URL": f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/x"})
    one_line_error(proc)
    assert SECRET not in proc.stderr + proc.stdout


def test_bad_input_is_one_line(run_dir: Path) -> None:
    url = backend_url("sqlite_file", run_dir, store="cli")
    assert "nova" in one_line_error(run("archive", "--store", "nanny", "--url", url))
    assert "ISO date" in one_line_error(run("purge", "--before", "last week", "--url", url))
    assert "--before" in one_line_error(run("purge", "--url", url))
    assert one_line_error(run("archive", "--max-rows", "-1", "--url", url))
    assert one_line_error(run("info", "--no-such-option"))
    assert "sqlite://" in one_line_error(run("demo", "--url", "sqlite://"))


def test_archive_on_a_database_without_nova(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    Database(f"sqlite:///{path}").create_all(sa.MetaData())
    sa.create_engine(f"sqlite:///{path}").connect().close()
    line = one_line_error(run("archive", "--url", f"sqlite:///{path}"))
    assert "nova's tables are not in" in line
    info = run_json("info", "--url", f"sqlite:///{path}")
    assert info["stores"] == [] and info["backend"] == "sqlite"

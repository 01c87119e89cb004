"""``dblayer db upgrade|downgrade|current|history|check|adopt``, run as a user runs them:
the installed entry point in a subprocess, on a SQLite file, PostgreSQL and MariaDB, with
the ``--json`` output and the database checked afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dblayer.core import Database, migrations
from tests.conftest import SHARED_BACKENDS, backend_url
from tests.migrations.test_adopt import S1, empty, snapshot, topchef_original

from .test_cli import SECRET, one_line_error, run, run_json, run_ok


@pytest.fixture(params=SHARED_BACKENDS)
def url(request: pytest.FixtureRequest, run_dir: Path) -> str:
    """A database of these tests' own on each backend."""
    return backend_url(request.param, run_dir, store="clidb")


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    """The database at ``url``, empty before and after the test."""
    database = Database(url)
    empty(database)
    yield database
    empty(database)
    database.dispose()


def db_json(*args: str) -> Any:
    return run_json("db", *args)


def test_upgrade_current_history_check_downgrade(url: str, db: Database) -> None:
    assert db_json("current", "nanny", "--url", url) == {
        "store": "nanny",
        "url": db.url,
        "revision": None,
        "head": "0001",
        "up_to_date": False,
    }
    assert "no revision" in run_ok("db", "current", "nanny", "--url", url).stdout

    out = db_json("upgrade", "nanny", "--url", url)
    assert (out["previous"], out["revision"], out["head"]) == (None, "0001", "0001")
    assert {"user", "notification", "whitelist", "alembic_version_nanny"} <= set(db.table_names())
    assert db_json("current", "nanny", "--url", url)["up_to_date"] is True
    assert "nothing to do" in run_ok("db", "upgrade", "nanny", "--url", url).stdout

    history = db_json("history", "nanny", "--url", url)
    assert history["current"] == "0001"
    assert [(r["revision"], r["current"]) for r in history["revisions"]] == [("0001", True)]

    assert db_json("check", "nanny", "--url", url) == {
        "store": "nanny",
        "url": db.url,
        "revision": "0001",
        "head": "0001",
        "differences": [],
        "ok": True,
    }
    # A column the models do not have: check lists it and exits non-zero.
    with db.transaction() as conn:
        conn.execute(sa.text("ALTER TABLE whitelist ADD COLUMN surplus INTEGER"))
    proc = run("db", "check", "nanny", "--url", url, "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is False and out["differences"] == ["extra column whitelist.surplus"]
    proc = run("db", "check", "nanny", "--url", url)
    assert proc.returncode == 1 and "extra column whitelist.surplus" in proc.stdout

    out = db_json("downgrade", "nanny", "base", "--url", url)
    assert (out["previous"], out["revision"]) == ("0001", None)
    assert not {"user", "notification", "alembic_version_nanny"} & set(db.table_names())


def test_jobman_options(url: str, db: Database) -> None:
    extra = json.dumps({"priority": {"type": "INTEGER"}})
    options = ["--dao", "worker", "--table-prefix", "w_", "--extra-job-fields", extra]
    out = db_json("upgrade", "jobman", "--url", url, *options)
    assert out["revision"] == out["head"] == migrations.heads("jobman")[0]
    assert {"w_job", "w_kvp", "alembic_version_w_job"} <= set(db.table_names())
    assert "priority" in {c["name"] for c in sa.inspect(db.engine).get_columns("w_job")}
    assert db_json("check", "jobman", "--url", url, *options)["ok"] is True
    # A field added later: check names the column the database lacks.
    more = json.dumps({"priority": {"type": "INTEGER"}, "owner": {"type": "TEXT"}})
    later = ["--dao", "worker", "--table-prefix", "w_", "--extra-job-fields", more]
    proc = run("db", "check", "jobman", "--url", url, "--json", *later)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["differences"] == ["missing column w_job.owner"]
    assert db_json("current", "jobman", "--url", url, *options)["up_to_date"] is True
    # JobMan's own tables are another set, with a version table of their own.
    assert db_json("current", "jobman", "--url", url)["revision"] is None
    out = db_json("downgrade", "jobman", "base", "--url", url, *options)
    assert out["revision"] is None
    assert not {"w_job", "w_kvp", "alembic_version_w_job"} & set(db.table_names())


def test_adopt(url: str, db: Database) -> None:
    from dblayer.stores.topchef import Service

    topchef_original(db)  # TopChef's tables and rows as TopChef wrote them
    out = db_json("adopt", "topchef", "--url", url)
    assert out == {
        "url": db.url,
        "store": "topchef",
        "status": "adopted",
        "revision": migrations.heads("topchef")[0],
        "tables": {"services": 2, "job_sets": 1, "jobs": 3},
    }
    assert migrations.current(db, "topchef") == out["revision"]
    assert migrations.check(db, "topchef") == []
    with Session(db.engine) as session:
        service = session.get(Service, S1)
        assert service.job_registration_schema["required"] == ["volts"]
        assert service.jobs.count() == 2
    text = run_ok("db", "adopt", "topchef", "--url", url).stdout
    assert "already managed by dblayer" in text
    assert db_json("check", "topchef", "--url", url)["ok"] is True


def test_adopt_refuses_an_unknown_schema(url: str, db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(sa.text("CREATE TABLE services (id INTEGER PRIMARY KEY, label VARCHAR(9))"))
        conn.execute(sa.text("INSERT INTO services (id, label) VALUES (1, 'x')"))
    before = snapshot(db)
    line = one_line_error(run("db", "adopt", "topchef", "--url", url, "--json"))
    assert "not TopChef's database" in line and "nothing changed" in line
    assert snapshot(db) == before
    assert migrations.current(db, "topchef") is None


def test_errors_are_one_line(run_dir: Path) -> None:
    url = backend_url("sqlite_file", run_dir, store="clidb-errors")
    assert "no migrations for store 'bogus'" in one_line_error(
        run("db", "upgrade", "bogus", "--url", url)
    )
    assert "revision" in one_line_error(run("db", "downgrade", "nanny", "--url", url))
    line = one_line_error(run("db", "upgrade", "nanny", "--table-prefix", "x_", "--url", url))
    assert "takes no migration option table_prefix" in line
    line = one_line_error(run("db", "upgrade", "nanny", "no-such-revision", "--url", url))
    assert "no-such-revision" in line
    missing = str(run_dir / "missing.db")
    assert "no database at" in one_line_error(
        run("db", "current", "nanny", "--url", f"sqlite:///{missing}")
    )
    assert not Path(missing).exists()
    # The revisions alone, without a database.
    assert run_json("db", "history", "topchef", "--url", f"sqlite:///{missing}")["current"] is None
    for command in ("upgrade", "current", "check", "adopt"):
        bad = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/x"
        proc = run("db", command, "nanny", "--url", bad)
        one_line_error(proc)
        assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql"])
def test_adopt_jobman_with_its_options(backend: str, run_dir: Path) -> None:
    """A jobman file's worker tables (JobMan's DAO opened SQLite only; its DDL runs on
    PostgreSQL too, not on MariaDB: see tests/migrations/test_adopt.py)."""
    from dblayer.stores.jobman import WorkerSqliteDAO
    from tests.migrations.test_adopt import WORKER_EXTRA, jobman_original

    url = backend_url(backend, run_dir, store="clidb")
    database = Database(url)
    try:
        empty(database)
        jobman_original(database)
        options = ["--dao", "worker", "--table-prefix", "_worker_1_"]
        options += ["--extra-job-fields", json.dumps(WORKER_EXTRA)]
        out = db_json("adopt", "jobman", "--url", url, *options)
        assert (out["status"], out["tables"]) == (
            "adopted",
            {"_worker_1_job": 2, "_worker_1_kvp": 0},
        )
        assert db_json("check", "jobman", "--url", url, *options)["ok"] is True
        # JobMan's own tables in the same file are untouched until adopted in turn.
        assert db_json("current", "jobman", "--url", url)["revision"] is None
        assert db_json("adopt", "jobman", "--url", url)["tables"] == {
            "jobman_job": 3,
            "jobman_kvp": 2,
        }
        dao = WorkerSqliteDAO(
            db_uri=url, table_prefix="_worker_1_", extra_job_fields=WORKER_EXTRA, initialize=False
        )
        try:
            assert dao.get_job("w-1")["tags"] == ["x"]
        finally:
            dao.close()
    finally:
        empty(database)
        database.dispose()

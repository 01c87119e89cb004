"""``dblayer copy``: a SQLite file filled through the stores' APIs, copied into PostgreSQL
and MariaDB by the installed command, then read back through the same APIs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dblayer.core import Database
from dblayer.stores.blitz import DatabaseClient, Reading
from dblayer.stores.jobman import WorkerSqliteDAO
from dblayer.stores.nova import NovaDBAPI, RequestContext
from dblayer.stores.nova.facade import create_schema
from tests.cli.test_cli import SECRET, one_line_error, run, run_json, run_ok
from tests.conftest import MYSQL_URL, PG_URL, _server_run_url

PREFIX = "cq_"
FIELDS = {"priority": {"type": "INTEGER"}, "tags": {"type": "JSON"}}
CTX = RequestContext("copy-user", "copy-project")
_numbers = itertools.count()


def fresh_url(backend: str) -> str:
    """An empty database of the test's own on ``backend``'s server (dropped after the run)."""
    base = PG_URL if backend == "postgresql" else MYSQL_URL
    return _server_run_url(base, f"cli_copy{next(_numbers)}")


@pytest.fixture(params=["postgresql", "mariadb"])
def target(request: pytest.FixtureRequest) -> str:
    return fresh_url(request.param)


def fill(path: Path) -> dict[str, Any]:
    """nova instances (some destroyed and archived), a jobman queue with extra fields and
    key-value pairs, blitz config and readings: all through the stores' APIs."""
    url = f"sqlite:///{path}"
    db = Database(url)
    create_schema(db)
    nova = NovaDBAPI(database=db)
    uuids = [
        nova.instance_create(
            CTX,
            {
                "display_name": f"vm-{i}",
                "metadata": {"n": str(i)},
                "vcpus": i,
                "locked": i % 2 == 0,
            },
        )["uuid"]
        for i in range(6)
    ]
    for uuid in uuids[4:]:
        nova.instance_destroy(CTX, uuid)
    archived = nova.archive_deleted_rows(nova_admin(), max_rows=None)
    db.dispose()

    dao = WorkerSqliteDAO(db_uri=url, table_prefix=PREFIX, extra_job_fields=FIELDS)
    dao.save_jobs(
        [
            {
                "key": f"job-{i}",
                "status": "PENDING" if i % 3 else "RUNNING",
                "batch_meta": {"i": i, "names": ["ü", None]} if i % 2 else None,
                "priority": i,
                "tags": ["t", i] if i % 4 else None,
            }
            for i in range(25)
        ]
    )
    dao.create_kvp({"key": "cursor", "value": {"at": 7, "ok": True}})
    jobs = sorted(dao.query_jobs(), key=lambda j: j["key"])
    kvp = dao.get_kvp("cursor")
    dao.close()

    blitz = DatabaseClient(path=url)
    blitz.set_config("mode", "fast")
    category = blitz.get_or_create_category("temperature")
    for i in range(10):
        blitz.add_reading(1, 1_700_000_000 + i, category, f"{20 + i / 10}")
    blitz.close()
    return {"uuids": uuids, "archived": archived, "jobs": jobs, "kvp": kvp, "category": category}


def nova_admin() -> RequestContext:
    return RequestContext("admin", "admin", is_admin=True)


def read_back(url: str, filled: dict[str, Any]) -> None:
    db = Database(url)
    try:
        nova = NovaDBAPI(database=db)
        for i, uuid in enumerate(filled["uuids"][:4]):
            instance = nova.instance_get_by_uuid(CTX, uuid)
            assert instance["display_name"] == f"vm-{i}" and instance["vcpus"] == i
            assert instance["locked"] is (i % 2 == 0)
            assert {m["key"]: m["value"] for m in instance["metadata"]} == {"n": str(i)}
        with db.transaction() as conn:
            shadow = sa.table("shadow_instances", sa.column("uuid"))
            kept = conn.execute(sa.select(shadow.c.uuid)).scalars().all()
        assert sorted(kept) == sorted(filled["uuids"][4:])
        # New rows get new ids (PostgreSQL's sequences were reset).
        new = nova.instance_create(CTX, {"display_name": "after-copy"})
        assert new["id"] > 6
    finally:
        db.dispose()
    dao = WorkerSqliteDAO(db_uri=url, table_prefix=PREFIX, extra_job_fields=FIELDS)
    try:
        assert sorted(dao.query_jobs(), key=lambda j: j["key"]) == filled["jobs"]
        assert dao.get_kvp("cursor") == filled["kvp"]
    finally:
        dao.close()
    blitz = DatabaseClient(path=url)
    try:
        assert blitz.get_config("mode").value == "fast"
        assert blitz.get_or_create_category("temperature") == filled["category"]
        values = sorted(r.value for r in blitz.all(Reading))
        assert values == [f"{20 + i / 10}" for i in range(10)]
    finally:
        blitz.close()


def test_copy_a_sqlite_file_into_a_server(tmp_path: Path, target: str) -> None:
    path = tmp_path / "services.db"
    filled = fill(path)
    out = run_json(
        "copy",
        "--from",
        f"sqlite:///{path}",
        "--to",
        target,
        "--batch",
        "4",
        "--extra-job-fields",
        '{"tags": {"type": "JSON"}}',
    )
    stores = {s["store"]: s for s in out["stores"]}
    assert set(stores) == {"nova", "jobman", "blitz"}
    assert set(out["schema_created"]) == {"nova", "jobman (cq_*)", "blitz"}
    assert stores["jobman"]["prefix"] == PREFIX and stores["jobman"]["revision"]
    assert stores["jobman"]["tables"]["cq_job"]["rows"] == 25
    assert stores["nova"]["tables"]["instances"]["rows"] == 4
    assert stores["nova"]["tables"]["shadow_instances"]["rows"] == 2
    assert out["verified"] == "checksum"
    assert out["rows"] == sum(t["rows"] for s in out["stores"] for t in s["tables"].values())
    # Into PostgreSQL, tables of integers, doubles, text and JSON are checked on the server
    # (16 hex digits); the others by the checksum table_checksum computes (32).
    server = "postgresql" in target
    assert stores["jobman"]["tables"]["cq_job"]["verified_by"] == (
        "server" if server else "checksum"
    )
    assert stores["nova"]["tables"]["instances"]["verified_by"] == "checksum"
    for entry in out["stores"]:
        for copied in entry["tables"].values():
            digits = 16 if copied["verified_by"] == "server" else 32
            assert len(copied["checksum"]) == digits
    read_back(target, filled)


def test_one_store_with_progress_lines_and_summary(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    fill(path)
    target = fresh_url("postgresql")
    proc = run_ok("copy", "--from", f"sqlite:///{path}", "--to", target, "--store", "jobman")
    # Not a terminal: plain progress lines on stderr, the per-table summary on stdout.
    assert "copying cq_job: 25 rows" in proc.stderr
    assert "cq_job" in proc.stdout and "25" in proc.stdout and "copied 26 rows" in proc.stdout
    db = Database(target)
    try:
        assert set(db.table_names()) == {"cq_job", "cq_kvp", "alembic_version_cq_job"}
    finally:
        db.dispose()


def test_a_non_empty_target_is_refused_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    fill(path)
    target = fresh_url("mariadb")
    source = f"sqlite:///{path}"
    run_ok("copy", "--from", source, "--to", target, "--store", "blitz")
    db = Database(target)
    try:
        with db.transaction() as conn:
            before = conn.execute(sa.text("SELECT COUNT(*) FROM reading")).scalar_one()
        line = one_line_error(run("copy", "--from", source, "--to", target, "--store", "blitz"))
        assert "already hold rows" in line and "reading" in line and "--force" in line
        # --force copies into them: the same ids clash, and the copy is undone as a whole.
        line = one_line_error(
            run("copy", "--from", source, "--to", target, "--store", "blitz", "--force")
        )
        assert "Duplicate" in line or "duplicate" in line
        with db.transaction() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM reading")).scalar_one() == before
    finally:
        db.dispose()


def test_bad_input_is_one_line_without_password(tmp_path: Path, run_dir: Path) -> None:
    path = tmp_path / "bad.db"
    source = f"sqlite:///{path}"
    fill(path)
    assert "topchef" in one_line_error(
        run("copy", "--from", source, "--to", fresh_url("postgresql"), "--store", "topchef")
    )
    assert "--store" in one_line_error(
        run("copy", "--from", source, "--to", fresh_url("postgresql"), "--store", "nope")
    )
    assert "same database" in one_line_error(run("copy", "--from", source, "--to", source))
    assert "--to" in one_line_error(run("copy", "--from", source))
    missing = tmp_path / "missing.db"
    assert "no database" in one_line_error(
        run("copy", "--from", f"sqlite:///{missing}", "--to", fresh_url("postgresql"))
    )
    proc = run(
        "copy", "--from", source, "--to", f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/x"
    )
    one_line_error(proc)
    assert SECRET not in proc.stdout + proc.stderr
    assert "not JSON" in one_line_error(
        run("copy", "--from", source, "--to", source + "2", "--extra-job-fields", "{nope")
    )

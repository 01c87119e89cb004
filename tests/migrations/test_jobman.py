"""jobman's migrations: its tables follow the DAO's options (dao, table_prefix,
extra_job_fields), so the migrations take them as parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import Database, InvalidValue, migrations
from dblayer.stores.jobman import WorkerSqliteDAO
from tests.conftest import backend_url

from .cycle import MIGRATION_BACKENDS, round_trip, store_database

EXTRA = {"priority": {"type": "INTEGER"}, "notes": {"type": "JSON"}}


@pytest.mark.parametrize("backend", MIGRATION_BACKENDS)
def test_upgrade_check_downgrade(backend: str, run_dir: Path) -> None:
    db = store_database(backend, run_dir, "jobman")
    round_trip(db, "jobman")  # JobmanSqliteDAO: jobman_job, jobman_kvp
    round_trip(db, "jobman", dao="worker", table_prefix="w_", extra_job_fields=EXTRA)


@pytest.mark.parametrize("backend", MIGRATION_BACKENDS)
def test_prefixes_share_a_database_and_new_fields_are_added(backend: str, run_dir: Path) -> None:
    db = store_database(backend, run_dir, "jobman")
    engine = {"dao": "engine", "table_prefix": "e_"}
    worker = {"dao": "worker", "table_prefix": "w_", "extra_job_fields": EXTRA}
    migrations.upgrade(db, "jobman", **engine)
    migrations.upgrade(db, "jobman", **worker)
    assert {"alembic_version_e_job", "alembic_version_w_job"} <= set(db.table_names())

    # A field added to extra_job_fields later: the comparison sees it, add_missing adds it.
    more = {**EXTRA, "owner": {"type": "TEXT"}}
    later = {**worker, "extra_job_fields": json.dumps(more)}  # as -x gives it: JSON text
    [diff] = migrations.check(db, "jobman", **later)
    assert diff[0] == "add_column" and diff[2] == "w_job" and diff[3].name == "owner"
    assert migrations.add_missing(db, "jobman", **later) == ["add_column w_job.owner"]
    assert migrations.check(db, "jobman", **later) == []
    assert migrations.check(db, "jobman", **engine) == []

    # The DAO with the new field works on the migrated tables.
    dao = WorkerSqliteDAO(
        db_uri=backend_url(backend, run_dir, "mig_jobman"),
        table_prefix="w_",
        extra_job_fields=more,
        initialize=False,
    )
    try:
        job = dao.create_job({"status": "PENDING", "owner": "ann", "priority": 3})
        assert dao.get_job(job["key"])["owner"] == "ann"
    finally:
        dao.close()

    # A field the models dropped is not removed: add_missing refuses, changing nothing.
    with pytest.raises(InvalidValue, match="does not change"):
        migrations.add_missing(db, "jobman", **worker)

    migrations.downgrade(db, "jobman", "base", **later)
    migrations.downgrade(db, "jobman", "base", **engine)
    assert not {t for t in db.table_names() if t.startswith(("e_", "w_", "alembic_version_"))}


def test_options_are_checked() -> None:
    with pytest.raises(InvalidValue, match="unknown dao 'boss'"):
        migrations.check("sqlite://", "jobman", dao="boss")
    with pytest.raises(InvalidValue, match="tables are fixed"):
        migrations.check("sqlite://", "jobman", table_prefix="x_")
    with pytest.raises(InvalidValue, match="not JSON"):
        migrations.check("sqlite://", "jobman", dao="worker", extra_job_fields="{")
    with pytest.raises(InvalidValue, match="unknown type"):
        migrations.check(
            "sqlite://", "jobman", dao="worker", extra_job_fields={"x": {"type": "BOGUS"}}
        )


LEASE_COLUMNS = {"claimed_by", "claim_expires", "claimed_from"}


def _job_columns(db: Database, table: str) -> set[str]:
    with db.transaction(readonly=True) as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table)}


@pytest.mark.parametrize("backend", MIGRATION_BACKENDS)
def test_0002_adds_the_lease_columns_to_the_job_table_of_0001(backend: str, run_dir: Path) -> None:
    db = store_database(backend, run_dir, "jobman")
    worker = {"dao": "worker", "table_prefix": "l_", "extra_job_fields": EXTRA}
    assert migrations.upgrade(db, "jobman", "0001", **worker) == "0001"
    assert not LEASE_COLUMNS & _job_columns(db, "l_job")
    assert migrations.upgrade(db, "jobman", **worker) == "0002"
    assert _job_columns(db, "l_job") >= LEASE_COLUMNS
    assert migrations.check(db, "jobman", **worker) == []

    # Leased claims work on the migrated table, and survive going down to 0001 and back.
    dao = WorkerSqliteDAO(
        db_uri=backend_url(backend, run_dir, "mig_jobman"),
        table_prefix="l_",
        extra_job_fields=EXTRA,
        initialize=False,
    )
    try:
        dao.save_jobs([{"key": "a", "status": "PENDING", "priority": 1}])
        assert [job["key"] for job in dao.claim_jobs()] == ["a"]
        assert dao.extend_claims() == ["a"]
        assert migrations.downgrade(db, "jobman", "0001", **worker) == "0001"
        assert not LEASE_COLUMNS & _job_columns(db, "l_job")
        assert dao.get_job("a")["priority"] == 1
        assert migrations.upgrade(db, "jobman", **worker) == "0002"
        assert dao.get_job("a")["status"] == "CLAIMED"
    finally:
        dao.close()
    migrations.downgrade(db, "jobman", "base", **worker)
    assert not {t for t in db.table_names() if t.startswith(("l_", "alembic_version_"))}


@pytest.mark.parametrize("backend", MIGRATION_BACKENDS)
def test_0002_leaves_lease_columns_a_dao_made_alone(backend: str, run_dir: Path) -> None:
    db = store_database(backend, run_dir, "jobman")
    url = backend_url(backend, run_dir, "mig_jobman")
    WorkerSqliteDAO(db_uri=url, table_prefix="m_").close()  # the DAO's own tables, at head
    assert _job_columns(db, "m_job") >= LEASE_COLUMNS
    made = {"dao": "worker", "table_prefix": "m_"}
    migrations.stamp(db, "jobman", "0001", **made)
    assert migrations.upgrade(db, "jobman", **made) == "0002"
    assert migrations.check(db, "jobman", **made) == []
    migrations.downgrade(db, "jobman", "base", **made)
    assert not {t for t in db.table_names() if t.startswith(("m_", "alembic_version_"))}

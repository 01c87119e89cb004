"""``migrations.adopt``: databases the original applications made, as
``../shared/notes/originals-000-003.md`` describes their DDL, filled with
representative rows, adopted, then read back row by row through each store's own API.

Backends per original:
- node_nanny: SQLite and PostgreSQL. Its ``String`` columns have no length, which
  MariaDB/MySQL refuse in DDL (``VARCHAR`` needs one), so no node_nanny database can
  exist there.
- TopChef: SQLite, PostgreSQL and MariaDB (its CI ran all three; on MariaDB under a
  ``mysql://`` URL its JSON is MariaDB's JSON, i.e. LONGTEXT, and UUIDs CHAR(32)).
- jobman: its DAO only ever opened SQLite files (``sqlite3``); its DDL also runs on
  PostgreSQL, so both are tested. MariaDB refuses ``key TEXT PRIMARY KEY`` (a TEXT key
  needs a prefix length), so the DDL is not expressible there.
- blitz: the client only ever opened SQLite (``sqlite:///`` + path); its DDL also runs on
  PostgreSQL (with timestamps that fit its 32-bit INTEGER), so both are tested. MariaDB
  refuses its length-less VARCHAR.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dblayer.core import Database, InvalidValue, migrations

from .cycle import store_database

# -- helpers ----------------------------------------------------------------------------------


def empty(db: Database) -> None:
    """Drop every table (and PostgreSQL enum type) of ``db``."""
    with db.transaction() as conn:
        metadata = sa.MetaData()
        metadata.reflect(conn)
        metadata.drop_all(conn)
        if db.backend == "postgresql":
            for name in conn.execute(
                sa.text("SELECT typname FROM pg_type WHERE typtype = 'e'")
            ).scalars():
                conn.execute(sa.text(f'DROP TYPE IF EXISTS "{name}"'))


@pytest.fixture
def database(request: pytest.FixtureRequest, run_dir: Path) -> Iterator[Database]:
    """An empty database of this run for the store the test module section names."""
    backend = request.node.callspec.params["backend"]
    db = store_database(backend, run_dir, "adopt")
    empty(db)
    yield db
    empty(db)


def execute(db: Database, ddl: str) -> None:
    """Run ``;``-separated DDL statements."""
    with db.transaction() as conn:
        for statement in ddl.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)


def insert(db: Database, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` as the original application did (untyped: the values as given)."""
    with db.transaction() as conn:
        for row in rows:
            target = sa.table(table, *[sa.column(c) for c in row])
            conn.execute(sa.insert(target).values(dict(row)))


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted (what must not change when adopt refuses)."""
    with db.transaction(readonly=True) as conn:
        metadata = sa.MetaData()
        metadata.reflect(conn)
        return {
            name: sorted(map(tuple, conn.execute(sa.select(table)).all()), key=repr)
            for name, table in metadata.tables.items()
        }


def when(db: Database, value: dt.datetime) -> Any:
    """A DATETIME value as SQLAlchemy stored it (text on SQLite)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if db.backend == "sqlite" else value


def kept(db: Database, value: dt.datetime) -> dt.datetime:
    """``value`` as the original's column kept it (MariaDB's DATETIME has no fraction)."""
    return value.replace(microsecond=0) if db.backend == "mysql" else value


def adopted(db: Database, store: str, status: str = "adopted", **params: Any) -> dict[str, Any]:
    """Adopt, and check the result: ``status``, at head, no difference from the models."""
    result = migrations.adopt(db, store, **params)
    assert result["status"] == status, result
    assert result["revision"] == migrations.heads(store)[0]
    assert migrations.current(db, store, **params) == result["revision"]
    assert migrations.check(db, store, **params) == []
    assert not [t for t in db.table_names() if t.startswith(migrations.ADOPT_PREFIX)]
    # Adopting again: dblayer manages it now.
    assert migrations.adopt(db, store, **params)["status"] == "managed"
    return result


# -- node_nanny -------------------------------------------------------------------------------

NANNY_DDL = {
    "sqlite": """
        CREATE TABLE user (id INTEGER NOT NULL, name VARCHAR NOT NULL, PRIMARY KEY (id),
            UNIQUE (name));
        CREATE TABLE notification (id INTEGER NOT NULL, user_id INTEGER,
            time DATETIME NOT NULL, memory INTEGER NOT NULL, percentage INTEGER NOT NULL,
            node VARCHAR NOT NULL, "limit" INTEGER NOT NULL, PRIMARY KEY (id),
            FOREIGN KEY(user_id) REFERENCES user (id));
        CREATE TABLE whitelist (id INTEGER NOT NULL, user_id INTEGER, node VARCHAR,
            start_time DATETIME NOT NULL, end_time DATETIME NOT NULL,
            global_whitelist BOOLEAN NOT NULL, PRIMARY KEY (id),
            FOREIGN KEY(user_id) REFERENCES user (id))
    """,
    "postgresql": """
        CREATE TABLE "user" (id SERIAL NOT NULL, name VARCHAR NOT NULL, PRIMARY KEY (id),
            UNIQUE (name));
        CREATE TABLE notification (id SERIAL NOT NULL, user_id INTEGER,
            time TIMESTAMP WITHOUT TIME ZONE NOT NULL, memory INTEGER NOT NULL,
            percentage INTEGER NOT NULL, node VARCHAR NOT NULL, "limit" INTEGER NOT NULL,
            PRIMARY KEY (id), FOREIGN KEY(user_id) REFERENCES "user" (id));
        CREATE TABLE whitelist (id SERIAL NOT NULL, user_id INTEGER, node VARCHAR,
            start_time TIMESTAMP WITHOUT TIME ZONE NOT NULL,
            end_time TIMESTAMP WITHOUT TIME ZONE NOT NULL, global_whitelist BOOLEAN NOT NULL,
            PRIMARY KEY (id), FOREIGN KEY(user_id) REFERENCES "user" (id))
    """,
}
T0 = dt.datetime(2022, 7, 20, 9, 15, 30, 123456)


def nanny_original(db: Database) -> None:
    execute(db, NANNY_DDL[db.backend])
    insert(db, "user", [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}, {"id": 7, "name": "é"}])
    insert(
        db,
        "notification",
        [
            {"id": 1, "user_id": 1, "time": when(db, T0), "memory": 2048, "percentage": 91,
             "node": "login1", "limit": 90},
            {"id": 2, "user_id": None, "time": when(db, T0.replace(microsecond=0)),
             "memory": 0, "percentage": 0, "node": "login2", "limit": 0},
            {"id": 5, "user_id": 7, "time": when(db, T0), "memory": 1, "percentage": 100,
             "node": "login1", "limit": 1},
        ],
    )  # fmt: skip
    insert(
        db,
        "whitelist",
        [
            {"id": 1, "user_id": 2, "node": None, "start_time": when(db, T0),
             "end_time": when(db, T0 + dt.timedelta(days=30)), "global_whitelist": True},
            {"id": 3, "user_id": 1, "node": "login1", "start_time": when(db, T0),
             "end_time": when(db, T0 + dt.timedelta(hours=1)), "global_whitelist": False},
            {"id": 4, "user_id": None, "node": "login2", "start_time": when(db, T0),
             "end_time": when(db, T0), "global_whitelist": False},
        ],
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql"])
def test_nanny(backend: str, database: Database) -> None:
    from dblayer.stores.nanny import DBConnection, Notification, User, Whitelist

    nanny_original(database)
    result = adopted(database, "nanny")
    assert result["tables"] == {"user": 3, "notification": 3, "whitelist": 3}

    DBConnection.configure(database.engine.url.render_as_string(hide_password=False))
    try:
        with DBConnection.session() as session:
            users = session.scalars(sa.select(User).order_by(User.id)).all()
            assert [(u.id, u.name) for u in users] == [(1, "ann"), (2, "bob"), (7, "é")]
            notes = session.scalars(sa.select(Notification).order_by(Notification.id)).all()
            assert [
                (n.id, n.user_id, n.time, n.memory, n.percentage, n.node, n.limit) for n in notes
            ] == [
                (1, 1, T0, 2048, 91, "login1", 90),
                (2, None, T0.replace(microsecond=0), 0, 0, "login2", 0),
                (5, 7, T0, 1, 100, "login1", 1),
            ]
            assert [n.id for n in users[0].notifications] == [1]
            lists = session.scalars(sa.select(Whitelist).order_by(Whitelist.id)).all()
            assert [
                (w.id, w.user_id, w.node, w.start_time, w.end_time, w.global_whitelist)
                for w in lists
            ] == [
                (1, 2, None, T0, T0 + dt.timedelta(days=30), True),
                (3, 1, "login1", T0, T0 + dt.timedelta(hours=1), False),
                (4, None, "login2", T0, T0, False),
            ]
            # New rows continue after the ids copied in (PostgreSQL's sequences too).
            session.add(User(name="carl"))
            session.add(
                Notification(time=T0, memory=1, percentage=1, node="n1", limit=1, user=users[0])
            )
            session.commit()
            assert session.scalar(sa.select(User.id).where(User.name == "carl")) == 8
            assert session.scalar(sa.select(sa.func.max(Notification.id))) == 6
    finally:
        DBConnection.connection.close()
        DBConnection.engine.dispose()


# -- TopChef ----------------------------------------------------------------------------------

TOPCHEF_DDL = {
    "sqlite": """
        CREATE TABLE services (service_id CHAR(32) NOT NULL, name VARCHAR(30) NOT NULL,
            description VARCHAR(1000) NOT NULL, last_checked_in DATETIME NOT NULL,
            heartbeat_timeout_seconds INTEGER NOT NULL, is_service_available BOOLEAN NOT NULL,
            job_registration_schema VARCHAR NOT NULL, job_result_schema VARCHAR NOT NULL,
            PRIMARY KEY (service_id), CHECK (is_service_available IN (0, 1)));
        CREATE TABLE job_sets (job_set_id CHAR(32) NOT NULL, description VARCHAR(140) NOT NULL,
            PRIMARY KEY (job_set_id));
        CREATE TABLE jobs (job_id CHAR(32) NOT NULL, service_id CHAR(32) NOT NULL,
            date_submitted DATETIME NOT NULL, status VARCHAR(10), parameters VARCHAR NOT NULL,
            results VARCHAR, job_set_id CHAR(32), PRIMARY KEY (job_id),
            FOREIGN KEY(service_id) REFERENCES services (service_id),
            FOREIGN KEY(job_set_id) REFERENCES job_sets (job_set_id),
            CONSTRAINT jobstatus CHECK (status IN ('REGISTERED', 'COMPLETED', 'WORKING', 'ERROR')))
    """,
    "postgresql": """
        CREATE TABLE services (service_id UUID NOT NULL, name VARCHAR(30) NOT NULL,
            description VARCHAR(1000) NOT NULL, last_checked_in TIMESTAMP WITHOUT TIME ZONE NOT NULL,
            heartbeat_timeout_seconds INTEGER NOT NULL, is_service_available BOOLEAN NOT NULL,
            job_registration_schema JSON NOT NULL, job_result_schema JSON NOT NULL,
            PRIMARY KEY (service_id));
        CREATE TABLE job_sets (job_set_id UUID NOT NULL, description VARCHAR(140) NOT NULL,
            PRIMARY KEY (job_set_id));
        CREATE TYPE jobstatus AS ENUM ('REGISTERED', 'COMPLETED', 'WORKING', 'ERROR');
        CREATE TABLE jobs (job_id UUID NOT NULL, service_id UUID NOT NULL,
            date_submitted TIMESTAMP WITHOUT TIME ZONE NOT NULL, status jobstatus,
            parameters JSON NOT NULL, results JSON, job_set_id UUID, PRIMARY KEY (job_id),
            FOREIGN KEY(service_id) REFERENCES services (service_id),
            FOREIGN KEY(job_set_id) REFERENCES job_sets (job_set_id))
    """,
    "mysql": """
        CREATE TABLE services (service_id CHAR(32) NOT NULL, name VARCHAR(30) NOT NULL,
            description VARCHAR(1000) NOT NULL, last_checked_in DATETIME NOT NULL,
            heartbeat_timeout_seconds INTEGER NOT NULL, is_service_available BOOL NOT NULL,
            job_registration_schema JSON NOT NULL, job_result_schema JSON NOT NULL,
            PRIMARY KEY (service_id), CHECK (is_service_available IN (0, 1)));
        CREATE TABLE job_sets (job_set_id CHAR(32) NOT NULL, description VARCHAR(140) NOT NULL,
            PRIMARY KEY (job_set_id));
        CREATE TABLE jobs (job_id CHAR(32) NOT NULL, service_id CHAR(32) NOT NULL,
            date_submitted DATETIME NOT NULL,
            status ENUM('REGISTERED','COMPLETED','WORKING','ERROR'),
            parameters JSON NOT NULL, results JSON, job_set_id CHAR(32), PRIMARY KEY (job_id),
            FOREIGN KEY(service_id) REFERENCES services (service_id),
            FOREIGN KEY(job_set_id) REFERENCES job_sets (job_set_id))
    """,
}
REG = {"type": "object", "properties": {"volts": {"type": "number"}}, "required": ["volts"]}
S1, S2 = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100"), uuid.uuid4()
J1, J2, J3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
SET = uuid.uuid4()
JOBS = [  # (job_id, service, status, parameters, results, job set)
    (J1, S1, "REGISTERED", {"volts": 1.5, "ü": [1, None, True]}, None, None),
    (J2, S1, "COMPLETED", {"volts": 2}, {"counts": [1, 2, 3]}, SET),
    (J3, S2, None, "a plain string", "done", SET),
]


def topchef_original(db: Database) -> None:
    """TopChef's rows as its types wrote them: hex UUIDs (PostgreSQL: its UUID type),
    JSON text (on native JSON columns encoded twice)."""
    native = db.backend in ("postgresql", "mysql")

    def uid(value: uuid.UUID | None) -> Any:
        return None if value is None else value if db.backend == "postgresql" else value.hex

    def doc(value: Any) -> Any:
        return None if value is None else json.dumps(json.dumps(value) if native else value)

    execute(db, TOPCHEF_DDL[db.backend])
    insert(
        db,
        "services",
        [
            {"service_id": uid(sid), "name": name, "description": "An ODMR experiment",
             "last_checked_in": when(db, T0), "heartbeat_timeout_seconds": timeout,
             "is_service_available": available, "job_registration_schema": doc(REG),
             "job_result_schema": doc({"type": "object"})}
            for sid, name, timeout, available in [(S1, "odmr", 30, True), (S2, "nmr", 5, False)]
        ],
    )  # fmt: skip
    insert(db, "job_sets", [{"job_set_id": uid(SET), "description": "a set"}])
    insert(
        db,
        "jobs",
        [
            {"job_id": uid(jid), "service_id": uid(sid), "date_submitted": when(db, T0),
             "status": status, "parameters": doc(params), "results": doc(results),
             "job_set_id": uid(job_set)}
            for jid, sid, status, params, results, job_set in JOBS
        ],
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql", "mariadb"])
def test_topchef(backend: str, database: Database) -> None:
    from dblayer.stores.topchef import Job, JobSet, JobStatus, Service

    topchef_original(database)
    assert adopted(database, "topchef")["tables"] == {"services": 2, "job_sets": 1, "jobs": 3}
    with Session(database.engine) as session:
        services = {s.id: s for s in session.scalars(sa.select(Service))}
        assert set(services) == {S1, S2}
        odmr = services[S1]
        assert (odmr.name, odmr.description, odmr.timeout, odmr.is_service_available) == (
            "odmr",
            "An ODMR experiment",
            30,
            True,
        )
        assert odmr.last_checked_in == kept(database, T0)
        assert odmr.job_registration_schema == REG
        assert odmr.job_result_schema == {"type": "object"}
        assert (services[S2].timeout, services[S2].is_service_available) == (5, False)
        jobs = {j.id: j for j in session.scalars(sa.select(Job))}
        for jid, sid, status, params, results, job_set in JOBS:
            job = jobs[jid]
            assert job.service_id == sid and job.service is services[sid]
            assert job.status == (JobStatus[status] if status else None)
            assert (job.parameters, job.results) == (params, results)
            assert job.date_submitted == kept(database, T0)
            assert job.job_set_id == job_set
        assert {j.id for j in odmr.jobs} == {J1, J2}
        assert [j.id for j in odmr.jobs.filter_by(status=JobStatus.COMPLETED)] == [J2]
        [job_set] = session.scalars(sa.select(JobSet)).all()
        assert {j.id for j in job_set.jobs} == {J2, J3}
        # The models write to the adopted tables; JSON is real JSON on native backends.
        new = Job.new(odmr, {"volts": 3})
        session.add(new)
        session.commit()
        assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == 4
    if database.backend == "postgresql":
        with database.transaction(readonly=True) as conn:
            kinds = conn.execute(sa.text("SELECT DISTINCT json_typeof(parameters) FROM jobs"))
            assert set(kinds.scalars()) == {"object", "string"}


# -- jobman -----------------------------------------------------------------------------------

JOBMAN_FIELDS = {
    "jobman": [("created", "FLOAT"), ("modified", "FLOAT"), ("key", "TEXT PRIMARY KEY"),
               ("job_spec", "TEXT"), ("status", "TEXT"), ("batchable", "INTEGER"),
               ("worker_key", "TEXT"), ("worker_meta", "TEXT"), ("errors", "TEXT"),
               ("source_key", "TEXT"), ("source_meta", "TEXT"), ("source_tag", "TEXT"),
               ("purgeable", "INTEGER")],
    "worker": [("created", "FLOAT"), ("modified", "FLOAT"), ("key", "TEXT PRIMARY KEY"),
               ("status", "TEXT"), ("batchable", "INTEGER"), ("batch_meta", "TEXT"),
               ("is_batch", "INTEGER"), ("parent_batch_key", "Text"), ("engine_key", "TEXT"),
               ("engine_meta", "TEXT"), ("priority", "INTEGER"), ("tags", "TEXT")],
    "engine": [("created", "FLOAT"), ("modified", "FLOAT"), ("key", "TEXT PRIMARY KEY"),
               ("status", "TEXT")],
}  # fmt: skip
KVP_FIELDS = [("key", "TEXT PRIMARY KEY"), ("value", "TEXT"), ("created", "FLOAT"),
              ("modified", "FLOAT")]  # fmt: skip
# The worker's extra fields: "owner" was added to the code after its table was created
# (the original never altered a table), so the file lacks that column.
WORKER_EXTRA = {
    "priority": {"type": "INTEGER"},
    "tags": {"type": "JSON"},
    "owner": {"type": "TEXT"},
}


def jobman_table(db: Database, name: str, fields: list[tuple[str, str]]) -> None:
    columns = ", ".join(f"{field} {kind}" for field, kind in fields)
    execute(db, f"CREATE TABLE IF NOT EXISTS {name} ({columns})")


def dumps(value: Any) -> str:
    """json.dumps as the original called it (default separators, key order kept)."""
    return json.dumps(value)


def jobman_original(db: Database) -> None:
    """One file holding JobMan's tables, a worker's (with extra fields) and an engine's."""
    jobman_table(db, "jobman_job", JOBMAN_FIELDS["jobman"])
    jobman_table(db, "jobman_kvp", KVP_FIELDS)
    jobman_table(db, "_worker_1_job", JOBMAN_FIELDS["worker"])
    jobman_table(db, "_worker_1_kvp", KVP_FIELDS)
    jobman_table(db, "engine_1_job", JOBMAN_FIELDS["engine"])
    jobman_table(db, "engine_1_kvp", KVP_FIELDS)
    insert(
        db,
        "jobman_job",
        [
            {"created": 1503600000.125, "modified": 1503600001.5, "key": "k1",
             "job_spec": dumps({"z": 1, "a": {"y": [1, 2], "b": None}, "dir": "/tmp/ü"}),
             "status": "PENDING", "batchable": 1, "worker_key": None, "worker_meta": "null",
             "errors": dumps(["boom", {"code": 2}]), "source_key": "src", "source_meta": "null",
             "source_tag": None, "purgeable": 0},
            {"created": 1503600002.0, "modified": 1503600003.25, "key": "k2",
             "job_spec": dumps({"a": 1}), "status": "COMPLETED", "batchable": None,
             "worker_key": "w1", "worker_meta": dumps({"engine": "slurm"}), "errors": "",
             "source_key": None, "source_meta": dumps("tag"), "source_tag": "t",
             "purgeable": 1},
            {"created": 1503600004.0, "modified": 1503600004.0, "key": "k3",
             "job_spec": dumps({"a": 2}), "status": "PENDING", "batchable": 0,
             "worker_key": None, "worker_meta": dumps(3.5), "errors": dumps(True),
             "source_key": "src", "source_meta": dumps([]), "source_tag": None,
             "purgeable": None},
        ],
    )  # fmt: skip
    insert(
        db,
        "jobman_kvp",
        [
            {"key": "LAST_SCAN_REMOTE_DIRS_TIME", "value": dumps(1503600000.5),
             "created": 1503600000.0, "modified": 1503600000.5},
            {"key": "nothing", "value": "null", "created": 1.0, "modified": 2.0},
        ],
    )  # fmt: skip
    insert(
        db,
        "_worker_1_job",
        [
            {"created": 10.5, "modified": 11.0, "key": "w-1", "status": "RUNNING",
             "batchable": 1, "batch_meta": dumps({"subjobs": ["a", "b"]}), "is_batch": 1,
             "parent_batch_key": None, "engine_key": "e-1",
             "engine_meta": dumps({"job_id": 42}), "priority": 5, "tags": dumps(["x"])},
            {"created": 12.0, "modified": 13.0, "key": "w-2", "status": "PENDING",
             "batchable": 0, "batch_meta": "null", "is_batch": 0, "parent_batch_key": "w-1",
             "engine_key": None, "engine_meta": "null", "priority": None, "tags": "null"},
        ],
    )  # fmt: skip
    insert(
        db, "engine_1_job", [{"created": 1.0, "modified": 2.0, "key": "e-1", "status": "EXECUTED"}]
    )
    insert(db, "engine_1_kvp", [{"key": "k", "value": dumps({"b": 1, "a": 2}), "created": 1.0, "modified": 1.0}])  # fmt: skip


WORKER = {"dao": "worker", "table_prefix": "_worker_1_", "extra_job_fields": WORKER_EXTRA}
ENGINE = {"dao": "engine", "table_prefix": "engine_1_"}


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql"])
def test_jobman(backend: str, database: Database) -> None:
    from dblayer.stores.jobman import EngineSqliteDAO, JobmanSqliteDAO, WorkerSqliteDAO

    jobman_original(database)
    url = database.engine.url.render_as_string(hide_password=False)
    assert adopted(database, "jobman")["tables"] == {"jobman_job": 3, "jobman_kvp": 2}
    # JSON extra fields given as the command line gives them: JSON text.
    worker = {**WORKER, "extra_job_fields": json.dumps(WORKER_EXTRA)}
    assert adopted(database, "jobman", **worker)["tables"] == {
        "_worker_1_job": 2,
        "_worker_1_kvp": 0,
    }
    assert adopted(database, "jobman", **ENGINE)["tables"] == {"engine_1_job": 1, "engine_1_kvp": 1}

    dao = JobmanSqliteDAO(db_uri=url, initialize=False)
    try:
        jobs = {job["key"]: job for job in dao.query_jobs()}
        assert jobs["k1"] == {
            "created": 1503600000.125, "modified": 1503600001.5, "key": "k1",
            "job_spec": {"z": 1, "a": {"y": [1, 2], "b": None}, "dir": "/tmp/ü"},
            "status": "PENDING", "batchable": 1, "worker_key": None, "worker_meta": None,
            "errors": ["boom", {"code": 2}], "source_key": "src", "source_meta": None,
            "source_tag": None, "purgeable": 0,
        }  # fmt: skip
        assert jobs["k2"]["errors"] is None and jobs["k2"]["source_meta"] == "tag"
        assert jobs["k2"]["worker_meta"] == {"engine": "slurm"} and jobs["k2"]["batchable"] is None
        assert (jobs["k3"]["worker_meta"], jobs["k3"]["errors"], jobs["k3"]["source_meta"]) == (
            3.5,
            True,
            [],
        )
        # JSON filters: exact JSON equality whatever the key order; the text "null" is NULL.
        spec = {"dir": "/tmp/ü", "a": {"b": None, "y": [1, 2]}, "z": 1}
        found = dao.query_jobs({"filters": [{"field": "job_spec", "op": "=", "arg": spec}]})
        assert [j["key"] for j in found] == ["k1"]
        found = dao.query_jobs({"filters": [{"field": "worker_meta", "op": "IS", "arg": None}]})
        assert [j["key"] for j in found] == ["k1"]
        assert dao.get_kvp("LAST_SCAN_REMOTE_DIRS_TIME")["value"] == 1503600000.5
        assert dao.get_kvp("nothing")["value"] is None
        dao.update_kvp("nothing", 7, where_prev_value=None)
        assert dao.get_kvp("nothing")["value"] == 7
        claimed = dao.claim_jobs({"filters": [dao.generate_status_filter("PENDING")]})
        assert sorted(j["key"] for j in claimed) == ["k1", "k3"]
        assert dao.create_job({"status": "PENDING"})["key"] not in jobs
    finally:
        dao.close()

    worker_dao = WorkerSqliteDAO(
        db_uri=url, table_prefix="_worker_1_", extra_job_fields=WORKER_EXTRA, initialize=False
    )
    try:
        w1, w2 = worker_dao.get_job("w-1"), worker_dao.get_job("w-2")
        assert (w1["batch_meta"], w1["engine_meta"], w1["priority"], w1["tags"], w1["owner"]) == (
            {"subjobs": ["a", "b"]},
            {"job_id": 42},
            5,
            ["x"],
            None,
        )
        assert (w2["parent_batch_key"], w2["batch_meta"], w2["tags"], w2["priority"]) == (
            "w-1",
            None,
            None,
            None,
        )
        worker_dao.update_jobs(
            {"owner": "ann"}, {"filters": [{"field": "key", "op": "=", "arg": "w-2"}]}
        )
        assert worker_dao.get_job("w-2")["owner"] == "ann"
    finally:
        worker_dao.close()
    engine_dao = EngineSqliteDAO(db_uri=url, table_prefix="engine_1_", initialize=False)
    try:
        assert engine_dao.get_job("e-1")["status"] == "EXECUTED"
        assert engine_dao.get_kvp("k")["value"] == {"a": 2, "b": 1}
    finally:
        engine_dao.close()


# -- blitz ------------------------------------------------------------------------------------

BLITZ_DDL = """
    CREATE TABLE notifications (id INTEGER NOT NULL, "timeLogged" INTEGER, severity INTEGER,
        description VARCHAR, PRIMARY KEY (id));
    CREATE TABLE category (id INTEGER NOT NULL, "variableName" VARCHAR, PRIMARY KEY (id),
        UNIQUE ("variableName"));
    CREATE TABLE reading (id INTEGER NOT NULL, "sessionId" INTEGER, "timeLogged" INTEGER,
        "categoryId" INTEGER, value VARCHAR, PRIMARY KEY (id),
        FOREIGN KEY("categoryId") REFERENCES category (id));
    CREATE TABLE session (id INTEGER NOT NULL, ref_id INTEGER, available BOOLEAN,
        "timeStarted" INTEGER, "timeStopped" INTEGER, "numberOfReadings" INTEGER,
        PRIMARY KEY (id), UNIQUE (ref_id), CHECK (available IN (0, 1)));
    CREATE TABLE config (id INTEGER NOT NULL, "key" VARCHAR, value VARCHAR, PRIMARY KEY (id));
    CREATE TABLE cache (id INTEGER NOT NULL, "timeLogged" INTEGER, "categoryId" INTEGER,
        value VARCHAR, PRIMARY KEY (id))
"""


def blitz_original(db: Database) -> int:
    """blitz's client tables with rows as the client wrote them; the start time used.

    On SQLite the session list from the wire arrives as strings: digit strings become
    numbers by the columns' affinity, a running session's stop time stays the text "None".
    PostgreSQL's INTEGER holds no ms timestamp: the times there are seconds.
    """
    ddl = BLITZ_DDL
    if db.backend == "postgresql":  # a native BOOLEAN: SQLAlchemy added no CHECK there
        ddl = ddl.replace(", CHECK (available IN (0, 1))", "")
    execute(db, ddl)
    now = 1397390000000 if db.backend == "sqlite" else 1397390000
    insert(db, "category", [{"id": i, "variableName": f"adc_channel_{n}"} for i, n in [(1, "one"), (2, "two"), (3, "three")]])  # fmt: skip
    insert(db, "reading", [{"id": i + 1, "sessionId": 1, "timeLogged": now - i, "categoryId": 1 + i % 2, "value": str(i * 1.5)} for i in range(6)])  # fmt: skip
    insert(db, "cache", [{"id": i + 1, "timeLogged": now - i, "categoryId": 1 + i % 2, "value": str(i)} for i in range(6)])  # fmt: skip
    stopped = "None" if db.backend == "sqlite" else None
    insert(
        db,
        "session",
        [
            {"id": 1, "ref_id": 1, "available": True, "timeStarted": now - 100,
             "timeStopped": now, "numberOfReadings": 6},
            {"id": 2, "ref_id": 2, "available": False, "timeStarted": now,
             "timeStopped": stopped, "numberOfReadings": 0},
        ],
    )  # fmt: skip
    insert(db, "config", [{"id": i + 1, "key": k, "value": v} for i, (k, v) in enumerate([("loggerPort", "8989"), ("loggerIp", "192.168.1.79"), ("sampleRate", "50"), ("sampleRate", "60")])])  # fmt: skip
    insert(db, "notifications", [{"id": 4, "timeLogged": now, "severity": 2, "description": "board 3 did not answer"}, {"id": 5, "timeLogged": None, "severity": None, "description": None}])  # fmt: skip
    return now


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql"])
def test_blitz(backend: str, database: Database) -> None:
    from dblayer.stores.blitz import Cache, Category, DatabaseClient, Notification, Session

    now = blitz_original(database)
    tables = adopted(database, "blitz")["tables"]
    assert tables == {"category": 3, "reading": 6, "session": 2, "config": 4, "cache": 6, "notifications": 2}  # fmt: skip
    client = DatabaseClient(path=database.engine.url.render_as_string(hide_password=False))
    try:
        assert [c.variableName for c in client.all(Category)] == [
            "adc_channel_one",
            "adc_channel_two",
            "adc_channel_three",
        ]
        readings = client.get_session_readings(1)
        assert [(r.id, r.timeLogged, r.categoryId, r.value) for r in readings] == [
            (i + 1, now - i, 1 + i % 2, str(i * 1.5)) for i in range(6)
        ]
        sessions = [s.to_dict() for s in client.all(Session)]
        assert sessions == [
            {"id": 1, "sql_id": 1, "available": True, "timeStarted": float(now - 100),
             "timeStopped": float(now), "numberOfReadings": 6},
            {"id": 2, "sql_id": 2, "available": False, "timeStarted": float(now),
             "timeStopped": 0.0, "numberOfReadings": 0},
        ]  # fmt: skip
        assert client.all(Session)[1].timeStopped is None
        assert client.get_config("loggerPort").value == "8989"
        assert client.get_config("sampleRate").value == "50"  # the first of two rows
        assert sorted((c.id, c.value) for c in client.all(Cache)) == [
            (i + 1, str(i)) for i in range(6)
        ]
        notes = [n.to_dict() for n in client.all(Notification)]
        assert notes[0] == {"id": 4, "timeLogged": float(now), "severity": 2,
                            "description": "board 3 did not answer"}  # fmt: skip
        assert notes[1]["description"] is None
        # The client writes to the adopted tables (ids continue after the copied ones).
        assert client.add_reading(2, now + 1, 3, 7.25).id == 7
        assert client.get_or_create_category("adc_channel_four") == 4
        client.set_config("sampleRate", "70")
        assert client.get_config("sampleRate").value == "70"
    finally:
        client.close()


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql", "mariadb"])
def test_unknown_schema_is_refused_changing_nothing(backend: str, database: Database) -> None:
    # A "config" table of another application (blitz has one of that name).
    execute(
        database, "CREATE TABLE config (id INTEGER PRIMARY KEY, name VARCHAR(20), flags INTEGER)"
    )
    insert(database, "config", [{"id": 1, "name": "x", "flags": 3}])
    before = snapshot(database)
    with pytest.raises(InvalidValue, match=r"not blitz's client database .*, nothing changed: "
                       r"tables missing: category.*config has columns it never had: flags, name"):  # fmt: skip
        migrations.adopt(database, "blitz")
    assert snapshot(database) == before
    with pytest.raises(InvalidValue, match="none of its tables"):
        migrations.adopt(database, "nanny")
    with pytest.raises(InvalidValue, match="none of its tables"):
        migrations.adopt(database, "jobman", dao="worker", table_prefix="q_")
    assert snapshot(database) == before
    assert migrations.current(database, "blitz") is None


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql"])
def test_a_column_of_another_kind_is_refused(backend: str, database: Database) -> None:
    execute(database, NANNY_DDL[database.backend].replace("memory INTEGER", "memory VARCHAR(9)"))
    before = snapshot(database)
    with pytest.raises(InvalidValue, match=r"notification.memory is VARCHAR\(9\), not integer"):
        migrations.adopt(database, "nanny")
    assert snapshot(database) == before


@pytest.mark.parametrize("backend", ["sqlite_file"])
def test_rows_that_cannot_be_kept_are_refused(backend: str, database: Database) -> None:
    """SQLite enforced no foreign keys and no lengths for the originals: such rows are
    named, and nothing changes."""
    blitz_original(database)
    # As the original wrote them: sqlite3 with foreign keys off.
    with contextlib.closing(sqlite3.connect(database.engine.url.database)) as raw, raw:
        raw.execute('INSERT INTO reading (id, "categoryId", value) VALUES (99, 42, 1)')
        raw.execute('INSERT INTO category (id, "variableName") VALUES (9, ?)', ("v" * 300,))
    before = snapshot(database)
    with pytest.raises(InvalidValue) as error:
        migrations.adopt(database, "blitz")
    message = str(error.value)
    assert "category.variableName holds more than 255 characters in 1 rows" in message
    assert "reading.categoryId refers to no category row in 1 rows" in message
    assert snapshot(database) == before

    empty(database)
    jobman_table(database, "jobman_job", JOBMAN_FIELDS["jobman"])
    jobman_table(database, "jobman_kvp", KVP_FIELDS)
    insert(database, "jobman_kvp", [{"key": None, "value": "1", "created": 1.0, "modified": 1.0}])
    with pytest.raises(InvalidValue, match="jobman_kvp.key is NULL in 1 rows"):
        migrations.adopt(database, "jobman")
    assert migrations.current(database, "jobman") is None


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql", "mariadb"])
def test_dblayer_tables_without_a_revision_are_stamped(backend: str, database: Database) -> None:
    from dblayer.stores.topchef.schemas import database as topchef

    database.create_all(topchef.metadata)  # as dblayer made them before its migrations
    # (TopChef's original tables have the same columns: without its original, as for nova.)
    spec = dataclasses.replace(migrations.store_migrations("topchef"), original=None)
    result = migrations.adopt(database, spec)
    assert (result["status"], result["revision"]) == ("stamped", migrations.heads("topchef")[0])
    assert result["tables"] == {"services": 0, "jobs": 0, "job_sets": 0}
    assert migrations.adopt(database, "topchef")["status"] == "managed"
    # A store without an original (nova) whose tables are not its models' is refused.
    with pytest.raises(InvalidValue, match="no original application's schema"):
        migrations.adopt(database, "nova")


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql", "mariadb"])
def test_tables_dblayer_made_without_migrations_are_adopted(
    backend: str, database: Database
) -> None:
    """blitz's tables as dblayer's create_all made them are the original's columns: they are
    adopted too, although their index and constraint names are the ones the migrations
    create (names a database holds once: SQLite's and PostgreSQL's indexes, MariaDB's
    foreign keys)."""
    from dblayer.stores.blitz import DatabaseClient, Reading

    url = database.engine.url.render_as_string(hide_password=False)
    client = DatabaseClient(path=url)  # create_all
    try:
        category = client.get_or_create_category("volts")
        client.add_reading(1, 1397390000123, category, 1.5)
        assert adopted(database, "blitz")["tables"]["reading"] == 1
        [reading] = client.all(Reading)
        assert (reading.categoryId, reading.value, reading.timeLogged) == (
            category,
            "1.5",
            1397390000123,
        )
        assert client.add_reading(1, 1397390000124, category, 2).id == 2
    finally:
        client.close()


@pytest.mark.parametrize("backend", ["sqlite_file", "postgresql", "mariadb"])
def test_a_failure_while_copying_changes_nothing(backend: str, database: Database) -> None:
    """A value that cannot be kept, met while copying: SQLite and PostgreSQL roll the whole
    adoption back; on MariaDB, whose DDL commits as it goes, the original tables are put
    back (with their foreign keys)."""
    topchef_original(database)
    spec = migrations.store_migrations("topchef")

    def refuse(value: Any) -> Any:
        if value == "nmr":
            raise ValueError("no nmr here")
        return value

    def original(dialect: str, params: Mapping[str, Any]) -> migrations.Original:
        tables = list(spec.original(dialect, params).tables)
        tables[0] = dataclasses.replace(tables[0], convert={**tables[0].convert, "name": refuse})
        return dataclasses.replace(spec.original(dialect, params), tables=tuple(tables))

    before = snapshot(database)
    foreign_keys = sa.inspect(database.engine).get_foreign_keys("jobs")
    with pytest.raises(InvalidValue, match="services.name: cannot keep the value 'nmr'"):
        migrations.adopt(database, dataclasses.replace(spec, original=original))
    assert snapshot(database) == before
    assert migrations.current(database, "topchef") is None
    after = sa.inspect(database.engine).get_foreign_keys("jobs")
    assert sorted(fk["referred_table"] for fk in after) == sorted(
        fk["referred_table"] for fk in foreign_keys
    )
    assert adopted(database, "topchef")["tables"]["jobs"] == 3  # nothing was lost

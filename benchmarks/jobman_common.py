"""What the jobman cases share: the worker DAO's table, sample jobs and the raw SQL for it.

The DAO is ``WorkerSqliteDAO`` with tables ``bench_jm_job`` and ``bench_jm_kvp``; the
raw side writes and reads the same table with SQL of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dblayer.core import Database
from dblayer.stores.jobman import WorkerSqliteDAO

from .runner import Backend

PREFIX = "bench_jm_"
TABLE = PREFIX + "job"
# The worker job table's columns, in the DAO's order.
COLUMNS = (
    "created",
    "modified",
    "key",
    "status",
    "batchable",
    "batch_meta",
    "is_batch",
    "parent_batch_key",
    "engine_key",
    "engine_meta",
)
JSON_COLUMNS = ("batch_meta", "engine_meta")
STATUSES = ("PENDING", "RUNNING", "EXECUTED", "FAILED")


def open_dao(url: str) -> WorkerSqliteDAO:
    """A worker DAO on ``url`` with the bench tables (not created here)."""
    return WorkerSqliteDAO(db_uri=url, table_prefix=PREFIX, initialize=False)


def drop_tables(db: Database, dao: WorkerSqliteDAO) -> None:
    """Drop the DAO's tables if they exist (not ``dao.flush()``: on SQLite it deletes the file)."""
    with db.transaction() as conn:
        for orm in dao.orms.values():
            orm.table.drop(conn, checkfirst=True)


@contextmanager
def dao_tables(db: Database, url: str) -> Iterator[WorkerSqliteDAO]:
    """A worker DAO whose tables are fresh (leftovers dropped) and dropped again afterwards."""
    dao = open_dao(url)
    try:
        drop_tables(db, dao)
        dao.initialize()
        yield dao
    finally:
        try:
            drop_tables(db, dao)
        finally:
            dao.close()


def sample_jobs(n: int, *, status: str | None = None, start: int = 1) -> list[dict[str, Any]]:
    """``n`` worker jobs with keys ``job-<i>``; every one ``status`` if given, else mixed."""
    return [
        {
            "key": f"job-{i}",
            "status": status or STATUSES[i % len(STATUSES)],
            "batchable": i % 2,
            "batch_meta": {"n": i, "subjobs": [f"sub-{i}-a", f"sub-{i}-b"], "ok": True},
            "engine_key": f"engine-{i % 8}",
        }
        for i in range(start, start + n)
    ]


def quote(backend: Backend, name: str) -> str:
    """A column name quoted for the backend (``key`` is reserved on MariaDB)."""
    return f"`{name}`" if backend.name == "mariadb" else f'"{name}"'


def column_list(backend: Backend) -> str:
    """Every job column, quoted, comma-separated."""
    return ", ".join(quote(backend, c) for c in COLUMNS)


def insert_sql(backend: Backend, *, replace: bool) -> str:
    """INSERT of one job row; with ``replace`` an upsert on the key (as the DAO's)."""
    sql = f"INSERT INTO {TABLE} ({column_list(backend)}) VALUES ({backend.marks(len(COLUMNS))})"
    if not replace:
        return sql
    others = [quote(backend, c) for c in COLUMNS if c != "key"]
    if backend.name == "mariadb":
        return sql + " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in others)
    return (
        sql
        + f" ON CONFLICT ({quote(backend, 'key')}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in others)
    )


def raw_params(jobs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The parameter tuples a hand-written layer builds: timestamps set, JSON fields dumped."""
    dumps, now = json.dumps, time.time
    params = []
    for job in jobs:
        get = job.get
        created = get("created")
        batch_meta, engine_meta = get("batch_meta"), get("engine_meta")
        params.append(
            (
                now() if created is None else created,
                now(),
                get("key"),
                get("status"),
                get("batchable"),
                None if batch_meta is None else dumps(batch_meta),
                get("is_batch"),
                get("parent_batch_key"),
                get("engine_key"),
                None if engine_meta is None else dumps(engine_meta),
            )
        )
    return params


def raw_dicts(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Job rows fetched in COLUMNS order as dicts, JSON fields decoded (as the DAO returns them)."""
    loads = json.loads
    out = []
    for row in rows:
        job = dict(zip(COLUMNS, row, strict=True))
        for name in JSON_COLUMNS:
            value = job[name]
            if value is not None and not isinstance(value, (dict, list)):
                job[name] = loads(value)
        out.append(job)
    return out

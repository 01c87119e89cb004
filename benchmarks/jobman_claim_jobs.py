"""jobman_claim_jobs: worker processes claim PENDING jobs with WorkerSqliteDAO.claim_jobs.

Claims are leased (the claiming worker, the lease's end on the database's clock and the
status claimed from are written with the status), on both sides. The raw side does what
the DAO does for a query without ``order_by``: on SQLite and PostgreSQL one ``UPDATE ...
WHERE key IN (SELECT ... LIMIT n) RETURNING`` (the select ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, in ``BEGIN IMMEDIATE`` on SQLite); on MariaDB ``SELECT ... FOR UPDATE SKIP
LOCKED``, ``UPDATE`` and ``SELECT`` of the rows.

As in the claims case, each worker is a spawned process with its own DAO and its own
driver connection, all released at once; the time runs from the first worker's start
to the last one's finish. Batch size 1 claims fewer jobs (JOBS_B1): one transaction
per job is slow on the servers. The parent checks that no job went to two workers and
that every job was claimed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from .jobman_common import TABLE, column_list, dao_tables, open_dao, quote, raw_dicts, sample_jobs
from .runner import Backend, Context, Result, raw_connect, raw_transaction
from .workers import time_sides

JOBS = 10_000
JOBS_B1 = 2_000
BATCHES = (1, 100)
WORKER_COUNTS = (1, 2, 4)
TIMEOUT = 600.0


def _query(batch: int, status: str) -> dict[str, Any]:
    return {"filters": [{"field": "status", "op": "=", "arg": status}], "limit": batch}


def claim_ours(dao: Any, batch: int, status: str = "PENDING") -> list[str]:
    """Claim through the DAO until none is left; the keys this worker got."""
    got: list[str] = []
    query = _query(batch, status)
    while jobs := dao.claim_jobs(query):
        got.extend(job["key"] for job in jobs)
    return got


# The database's clock in seconds since the epoch, as the DAO's lease uses it.
CLOCK = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS DOUBLE PRECISION)",
    "mariadb": "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) / 1e6)",
}
RAW_WORKER = "bench-raw"
LEASE_SECONDS = 300.0


def claim_raw(backend: Backend, conn: Any, batch: int, status: str = "PENDING") -> list[str]:
    """The DAO's algorithm by hand (see above), its lease included: the
    status claimed from, the worker and the lease's end; the keys this worker got."""
    m, key, st = backend.mark, quote(backend, "key"), quote(backend, "status")
    pick = f"SELECT {key} FROM {TABLE} WHERE {st} = {m} AND ({st} IS NULL OR {st} <> {m}) LIMIT {m}"
    modified = quote(backend, "modified")
    # The saved status first: MariaDB assigns left to right.
    sets = (
        f"claimed_from = {st}, {st} = {m}, {modified} = {m}, claimed_by = {m}, "
        f"claim_expires = {CLOCK[backend.name]} + {m}"
    )
    got: list[str] = []
    while True:
        claimed = ("CLAIMED", time.time(), RAW_WORKER, LEASE_SECONDS)
        if backend.name != "mariadb":
            lock = " FOR UPDATE SKIP LOCKED" if backend.name == "postgresql" else ""
            with raw_transaction(backend, conn, immediate=True) as cur:
                cur.execute(
                    f"UPDATE {TABLE} SET {sets} WHERE {key} IN ({pick}{lock}) "
                    f"RETURNING {column_list(backend)}",
                    (*claimed, status, "CLAIMED", batch),
                )
                rows = raw_dicts(cur.fetchall())
        else:
            with raw_transaction(backend, conn) as cur:
                cur.execute(pick + " FOR UPDATE SKIP LOCKED", (status, "CLAIMED", batch))
                keys = [row[0] for row in cur.fetchall()]
                rows = []
                if keys:
                    marks = backend.marks(len(keys))
                    cur.execute(
                        f"UPDATE {TABLE} SET {sets} WHERE {key} IN ({marks})", (*claimed, *keys)
                    )
                    cur.execute(
                        f"SELECT {column_list(backend)} FROM {TABLE} WHERE {key} IN ({marks})",
                        keys,
                    )
                    rows = raw_dicts(cur.fetchall())
        if not rows:
            return got
        got.extend(row["key"] for row in rows)


@contextmanager
def _sides(backend: Backend, name: str) -> Iterator[dict[str, Callable[[int], list[str]]]]:
    """A worker's two sides, each warmed up by a claim that matches nothing."""
    dao = open_dao(backend.url)
    conn = raw_connect(backend)
    try:
        claim_ours(dao, 100, status="WARMUP")
        claim_raw(backend, conn, 100, status="WARMUP")
        yield {
            "ours": lambda batch: claim_ours(dao, batch),
            "raw": lambda batch: claim_raw(backend, conn, batch),
        }
    finally:
        conn.close()
        dao.close()


def _check(db: Any, table: sa.Table, jobs: int, got: dict[str, list[str]]) -> dict[str, int]:
    """Jobs handed to two workers, and jobs left unclaimed."""
    keys = [k for ks in got.values() for k in ks]
    with db.transaction(readonly=True) as conn:
        claimed = conn.execute(
            sa.select(sa.func.count()).select_from(table).where(table.c.status == "CLAIMED")
        ).scalar_one()
    return {"double_claims": len(keys) - len(set(keys)), "unclaimed": jobs - claimed}


def run(ctx: Context) -> None:
    """Time claim_jobs by 1, 2 and 4 processes in batches of 1 and 100, DAO against raw."""
    db, backend = ctx.db, ctx.backend
    with dao_tables(db, backend.url) as dao:
        table = dao.orms["job"].table
        for batch in BATCHES:
            jobs = sample_jobs(ctx.n(JOBS_B1 if batch == 1 else JOBS), status="PENDING")

            def reset(jobs: list[dict[str, Any]] = jobs) -> None:
                with db.transaction() as conn:
                    conn.execute(sa.delete(table))
                dao.save_jobs(jobs, replace=False)

            for workers in WORKER_COUNTS:
                best, problems = time_sides(
                    _sides,
                    backend,
                    workers,
                    ctx.reps,
                    reset,
                    lambda got: _check(db, table, len(jobs), got),  # noqa: B023 - called at once
                    batch,
                )
                scaled = (
                    f"; {len(jobs):,} jobs (B=1 runs {JOBS_B1:,} at scale 1)" if batch == 1 else ""
                )
                note = (
                    f"B={batch} workers {workers}{scaled}; double claims "
                    f"{problems['double_claims']}, unclaimed {problems['unclaimed']}"
                )
                ctx.report(
                    Result(
                        f"jobman_claim b{batch} x{workers}",
                        backend.name,
                        best["ours"],
                        best["raw"],
                        len(jobs),
                        "jobs",
                        note=note,
                        extra=dict(problems, workers=workers, batch=batch),
                    )
                )

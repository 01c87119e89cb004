"""jobman_query_jobs: many small WorkerSqliteDAO.query_jobs calls (status filter, limit 20)."""

from __future__ import annotations

from typing import Any

from .jobman_common import TABLE, column_list, dao_tables, quote, raw_dicts, sample_jobs
from .runner import Context, Result, analyze, measure, raw_transaction

JOBS = 100_000
QUERIES = 2_000
LIMIT = 20
TARGET = 1.5
QUERY = {"filters": [{"field": "status", "op": "=", "arg": "PENDING"}], "limit": LIMIT}


def run(ctx: Context) -> None:
    """Time ``query_jobs`` (one unit of work per call) against the same SQL on the driver."""
    db, backend = ctx.db, ctx.backend
    calls = ctx.n(QUERIES)
    sql = (
        f"SELECT {column_list(backend)} FROM {TABLE} "
        f"WHERE {quote(backend, 'status')} = {backend.mark} LIMIT {LIMIT}"
    )
    raw_conn = ctx.raw()

    def raw_query() -> list[dict[str, Any]]:
        # One transaction per call, as each DAO call is its own unit of work.
        with raw_transaction(backend, raw_conn) as cur:
            cur.execute(sql, ("PENDING",))
            return raw_dicts(cur.fetchall())

    try:
        with dao_tables(db, backend.url) as dao:
            dao.save_jobs(sample_jobs(ctx.n(JOBS)), replace=False)
            analyze(db, dao.orms["job"].table)

            def ours(n: int) -> None:
                for _ in range(n):
                    dao.query_jobs(QUERY)

            def raw(n: int) -> None:
                for _ in range(n):
                    raw_query()

            ours_s, raw_s = measure(
                ctx,
                lambda: ours(calls),
                lambda: raw(calls),
                warm_ours=lambda: ours(max(1, calls // 10)),
                warm_raw=lambda: raw(max(1, calls // 10)),
            )
            got, expected = dao.query_jobs(QUERY), raw_query()
    finally:
        raw_conn.close()
    if len(got) != len(expected) or any(job["status"] != "PENDING" for job in got + expected):
        raise AssertionError(f"query_jobs returned {got[:2]}..., raw {expected[:2]}...")
    ctx.report(Result("jobman_query_jobs", backend.name, ours_s, raw_s, calls, "queries", TARGET))

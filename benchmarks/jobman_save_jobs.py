"""jobman_save_jobs: WorkerSqliteDAO.save_jobs of many jobs in one call (insert and upsert)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .jobman_common import TABLE, dao_tables, insert_sql, raw_params, sample_jobs
from .runner import Context, Result, empty_table, measure, raw_transaction

JOBS = 100_000
TARGET = 1.5


def run(ctx: Context) -> None:
    """Time ``save_jobs`` (replace=False, then replace=True) against the driver's executemany."""
    db, backend = ctx.db, ctx.backend
    jobs = sample_jobs(ctx.n(JOBS))
    warm = jobs[: max(1, len(jobs) // 100)]
    raw_conn = ctx.raw()
    try:
        with dao_tables(db, backend.url) as dao:
            table = dao.orms["job"].table

            def reset() -> None:
                # TRUNCATE on the servers: DELETE's dead rows would slow whichever side runs
                # later (an upsert checks its keys against them).
                empty_table(db, table)

            def count() -> int:
                with db.transaction(readonly=True) as conn:
                    return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

            for replace in (False, True):
                sql = insert_sql(backend, replace=replace)

                def ours(batch: list[dict[str, Any]], replace: bool = replace) -> None:
                    dao.save_jobs(batch, replace=replace)

                def raw(batch: list[dict[str, Any]], sql: str = sql) -> None:
                    # Timestamps, JSON text and the tuples are part of the work.
                    params = raw_params(batch)
                    with raw_transaction(backend, raw_conn) as cur:
                        cur.executemany(sql, params)

                ours_s, raw_s = measure(
                    ctx,
                    lambda ours=ours: ours(jobs),
                    lambda raw=raw: raw(jobs),
                    reset=reset,
                    warm_ours=lambda ours=ours: ours(warm),
                    warm_raw=lambda raw=raw: raw(warm),
                )
                reset()
                ours(jobs)
                if replace:
                    ours(jobs)  # every key exists now: a real overwrite
                written = count()
                if written != len(jobs):
                    raise AssertionError(f"{TABLE}: {written} jobs stored, expected {len(jobs)}")
                name = "jobman_save_jobs" + (" upsert" if replace else "")
                note = "replace=True into an empty table" if replace else "replace=False"
                ctx.report(
                    Result(name, backend.name, ours_s, raw_s, len(jobs), "jobs", TARGET, note=note)
                )
    finally:
        raw_conn.close()

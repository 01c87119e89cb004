"""filtered_query: a dict query (filter, order, limit 20) built per call, run on a held connection."""

from __future__ import annotations

import sqlalchemy as sa

from dblayer.core import new_metadata
from dblayer.core.query import fetch_query

from .runner import STATUSES, Context, Result, load, measure, raw_transaction, sample_rows, tables

TABLE_ROWS = 100_000
RUNS = 2_000
TARGET = 1.5

metadata = new_metadata()
table = sa.Table(
    "bench_query",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100)),
    sa.Column("status", sa.String(20)),
    sa.Column("score", sa.Integer),
)
# Matches WHERE status = ? ORDER BY score DESC, id: one index range read in order on every backend.
sa.Index("ix_bench_query_status_score", table.c.status, table.c.score.desc(), table.c.id)


def run(ctx: Context) -> None:
    """Time ``fetch_query`` with a query dict built per call against the same SQL text through the driver."""
    db, backend = ctx.db, ctx.backend
    params = [(STATUSES[i % len(STATUSES)], (i * 37) % 990) for i in range(ctx.n(RUNS))]
    warm_params = params[: max(1, len(params) // 10)]
    mark = backend.mark
    sql = (
        f"SELECT id, name, status, score FROM bench_query WHERE status = {mark} AND score >= {mark} "
        "ORDER BY score DESC, id LIMIT 20"
    )
    raw_conn = ctx.raw()
    fetched = {"ours": 0, "raw": 0}

    def ours(batch: list[tuple[str, int]]) -> None:
        total = 0
        with db.transaction(readonly=True) as conn:
            for status, low in batch:
                query = {
                    "filters": [
                        {"field": "status", "op": "=", "arg": status},
                        {"field": "score", "op": ">=", "arg": low},
                    ],
                    "order_by": [{"field": "score", "direction": "DESC"}, {"field": "id"}],
                    "limit": 20,
                }
                total += len(fetch_query(conn, table, query))
        fetched["ours"] = total

    def raw(batch: list[tuple[str, int]]) -> None:
        total = 0
        with raw_transaction(backend, raw_conn) as cur:
            for status, low in batch:
                cur.execute(sql, (status, low))
                # Rows as dicts, as fetch_query returns them (the fastest hand-written way).
                rows = [
                    {"id": i, "name": n, "status": s, "score": c} for i, n, s, c in cur.fetchall()
                ]
                total += len(rows)
        fetched["raw"] = total

    try:
        with tables(db, metadata):
            load(db, table, sample_rows(ctx.n(TABLE_ROWS)))
            ours_s, raw_s = measure(
                ctx,
                lambda: ours(params),
                lambda: raw(params),
                warm_ours=lambda: ours(warm_params),
                warm_raw=lambda: raw(warm_params),
            )
    finally:
        raw_conn.close()
    if fetched["ours"] != fetched["raw"]:
        raise AssertionError(f"filtered_query fetched {fetched}: the two sides disagree")
    ctx.report(
        Result("filtered_query", backend.name, ours_s, raw_s, len(params), "queries", TARGET)
    )

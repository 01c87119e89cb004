"""point_get: lookups by primary key with a PreparedQuery, on one held connection."""

from __future__ import annotations

import random

import sqlalchemy as sa

from dblayer.core import PreparedQuery, new_metadata

from .runner import Context, Result, load, measure, raw_transaction, sample_rows, tables

TABLE_ROWS = 100_000
LOOKUPS = 20_000
TARGET = 2.0

metadata = new_metadata()
table = sa.Table(
    "bench_point",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100)),
    sa.Column("status", sa.String(20)),
    sa.Column("score", sa.Integer),
)


def run(ctx: Context) -> None:
    """Time held-connection lookups through PreparedQuery against cursor.execute of the same SQL."""
    db, backend = ctx.db, ctx.backend
    size = ctx.n(TABLE_ROWS)
    picker = random.Random(42)
    keys = [picker.randint(1, size) for _ in range(ctx.n(LOOKUPS))]
    warm_keys = keys[: max(1, len(keys) // 10)]
    query = PreparedQuery(sa.select(table).where(table.c.id == sa.bindparam("id")))
    sql = f"SELECT id, name, status, score FROM bench_point WHERE id = {backend.mark}"
    raw_conn = ctx.raw()
    found = {"ours": 0, "raw": 0}

    def ours(batch: list[int]) -> None:
        hits = 0
        with db.transaction(readonly=True) as conn:
            for key in batch:
                row = query.first(conn, id=key)
                hits += row is not None
        found["ours"] = hits

    def raw(batch: list[int]) -> None:
        hits = 0
        with raw_transaction(backend, raw_conn) as cur:
            for key in batch:
                cur.execute(sql, (key,))
                row = cur.fetchone()
                if row is not None:  # a dict, as PreparedQuery.first returns it
                    i, n, s, c = row
                    row = {"id": i, "name": n, "status": s, "score": c}
                hits += row is not None
        found["raw"] = hits

    try:
        with tables(db, metadata):
            load(db, table, sample_rows(size))
            ours_s, raw_s = measure(
                ctx,
                lambda: ours(keys),
                lambda: raw(keys),
                warm_ours=lambda: ours(warm_keys),
                warm_raw=lambda: raw(warm_keys),
            )
    finally:
        raw_conn.close()
    if found["ours"] != len(keys) or found["raw"] != len(keys):
        raise AssertionError(f"point_get found {found}, expected {len(keys)} each")
    ctx.report(Result("point_get", backend.name, ours_s, raw_s, len(keys), "lookups", TARGET))

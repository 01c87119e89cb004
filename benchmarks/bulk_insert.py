"""bulk_insert: rows with a JSON column written in one transaction with insert_many."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from dblayer.core import JSON, insert_many, new_metadata

from .runner import Context, Result, empty_table, measure, raw_transaction, sample_rows, tables

ROWS = 100_000
TARGET = 1.3

metadata = new_metadata()
table = sa.Table(
    "bench_bulk",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100)),
    sa.Column("status", sa.String(20)),
    sa.Column("score", sa.Integer),
    sa.Column("payload", JSON()),
)
COLUMNS = ("id", "name", "status", "score", "payload")


def run(ctx: Context) -> None:
    """Time ``insert_many`` against the driver's executemany on the same rows."""
    db, backend = ctx.db, ctx.backend
    rows = sample_rows(ctx.n(ROWS), payload=True)
    warm_rows = rows[: max(1, len(rows) // 100)]
    sql = f"INSERT INTO bench_bulk ({', '.join(COLUMNS)}) VALUES ({backend.marks(len(COLUMNS))})"
    raw_conn = ctx.raw()

    def ours(batch: list[dict[str, Any]]) -> None:
        with db.transaction() as conn:
            insert_many(conn, table, batch)

    def raw(batch: list[dict[str, Any]]) -> None:
        # Turning the dicts into tuples and the payload into JSON text is part of the work.
        params = [
            (r["id"], r["name"], r["status"], r["score"], json.dumps(r["payload"])) for r in batch
        ]
        with raw_transaction(backend, raw_conn) as cur:
            cur.executemany(sql, params)

    def written() -> int:
        with db.transaction(readonly=True) as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

    def reset() -> None:
        empty_table(db, table)

    try:
        with tables(db, metadata):
            ours_s, raw_s = measure(
                ctx,
                lambda: ours(rows),
                lambda: raw(rows),
                reset=reset,
                warm_ours=lambda: ours(warm_rows),
                warm_raw=lambda: raw(warm_rows),
            )
            reset()
            ours(rows)
            count = written()
    finally:
        raw_conn.close()
    if count != len(rows):
        raise AssertionError(f"bulk_insert wrote {count} rows, expected {len(rows)}")
    ctx.report(Result("bulk_insert", backend.name, ours_s, raw_s, len(rows), "rows", TARGET))

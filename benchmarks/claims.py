"""claims: worker processes claim PENDING rows 100 at a time until none is left.

Each worker is a separate process (multiprocessing "spawn") holding its own
Database and its own driver connection. Every worker is released at once (a
barrier); the time is from the first worker's start to the last one's finish, as
each measured it (perf_counter is the system-wide monotonic clock). The parent checks that
no row was handed to two workers and that every row was claimed exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from dblayer.core import Database, claim, new_metadata

from .runner import (
    Backend,
    Context,
    Result,
    empty_table,
    load,
    raw_connect,
    raw_transaction,
    tables,
)
from .workers import time_sides

ROWS = 10_000
BATCH = 100
WORKER_COUNTS = (1, 2, 4)
TIMEOUT = 600.0

metadata = new_metadata()
table = sa.Table(
    "bench_claim",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("worker", sa.String(50)),
    sa.Column("score", sa.Integer),
    sa.Index("ix_bench_claim_status_id", "status", "id"),
)


def claim_ours(db: Database, name: str, status: str = "PENDING") -> list[int]:
    """Claim batches through dblayer until none is left; the ids this worker got."""
    got: list[int] = []
    while True:
        rows = claim(
            db,
            table,
            {"status": "CLAIMED", "worker": name},
            where=[table.c.status == status],
            order_by=[table.c.id],
            limit=BATCH,
        )
        if not rows:
            return got
        got.extend(row["id"] for row in rows)


def claim_raw(backend: Backend, conn: Any, name: str, status: str = "PENDING") -> list[int]:
    """The same algorithm written against the driver; the ids this worker got."""
    mark = backend.mark
    pick = f"SELECT id FROM bench_claim WHERE status = {mark} ORDER BY id LIMIT {mark}"
    got: list[int] = []
    while True:
        if backend.name == "postgresql":
            with raw_transaction(backend, conn) as cur:
                cur.execute(
                    f"UPDATE bench_claim SET status = %s, worker = %s WHERE id IN ({pick} "
                    "FOR UPDATE SKIP LOCKED) RETURNING id, status, worker, score",
                    ("CLAIMED", name, status, BATCH),
                )
                rows = cur.fetchall()
        else:
            # MariaDB skips rows other workers hold; SQLite's BEGIN IMMEDIATE locks the database.
            lock = " FOR UPDATE SKIP LOCKED" if backend.name == "mariadb" else ""
            with raw_transaction(backend, conn, immediate=True) as cur:
                cur.execute(pick + lock, (status, BATCH))
                ids = [row[0] for row in cur.fetchall()]
                rows = []
                if ids:
                    marks = backend.marks(len(ids))
                    cur.execute(
                        f"UPDATE bench_claim SET status = {mark}, worker = {mark} WHERE id IN ({marks})",
                        ("CLAIMED", name, *ids),
                    )
                    cur.execute(
                        f"SELECT id, status, worker, score FROM bench_claim WHERE id IN ({marks})",
                        ids,
                    )
                    rows = cur.fetchall()
        if not rows:
            return got
        got.extend(row[0] for row in rows)


@contextmanager
def _sides(backend: Backend, name: str) -> Iterator[dict[str, Callable[[], list[int]]]]:
    """A worker's two sides, each warmed up by a claim that matches nothing."""
    with Database(backend.url) as db:
        conn = raw_connect(backend)
        try:
            claim_ours(db, name, status="WARMUP")
            claim_raw(backend, conn, name, status="WARMUP")
            yield {
                "ours": lambda: claim_ours(db, name),
                "raw": lambda: claim_raw(backend, conn, name),
            }
        finally:
            conn.close()


def _check(db: Database, rows: int, got: dict[str, list[int]]) -> dict[str, int]:
    """Double claims, rows never claimed and rows whose worker column disagrees with the reports."""
    all_ids = [i for ids in got.values() for i in ids]
    owner = {i: name for name, ids in got.items() for i in ids}
    with db.transaction(readonly=True) as conn:
        stored = dict(
            conn.execute(
                sa.select(table.c.id, table.c.worker).where(table.c.status == "CLAIMED")
            ).all()
        )
    return {
        "double_claims": len(all_ids) - len(set(all_ids)),
        "unclaimed": rows - len(stored),
        "mismatched": sum(1 for i, name in stored.items() if owner.get(i) != name),
    }


def run(ctx: Context) -> None:
    """Time claims with 1, 2 and 4 worker processes, dblayer against the raw driver."""
    db, backend = ctx.db, ctx.backend
    rows = [
        {"id": i, "status": "PENDING", "worker": None, "score": i % 100}
        for i in range(1, ctx.n(ROWS) + 1)
    ]

    def reset() -> None:
        empty_table(db, table)
        load(db, table, rows)

    with tables(db, metadata):
        for workers in WORKER_COUNTS:
            best, problems = time_sides(
                _sides, backend, workers, ctx.reps, reset, lambda got: _check(db, len(rows), got)
            )
            note = (
                f"workers {workers}; double claims {problems['double_claims']}, "
                f"unclaimed {problems['unclaimed']}, mismatched {problems['mismatched']}"
            )
            ctx.report(
                Result(
                    f"claims x{workers}",
                    backend.name,
                    best["ours"],
                    best["raw"],
                    len(rows),
                    "rows",
                    note=note,
                    extra=dict(problems, workers=workers),
                )
            )

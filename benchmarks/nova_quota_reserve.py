"""nova_quota_reserve: quota_reserve + reservation_commit cycles by 1 and 4 processes.

A cycle is what nova's compute API does around every new server: reserve
``instances`` 1, ``cores`` 2 and ``ram`` 512 of a project's quota (one transaction),
then commit the three reservations (another). Each worker is a user of the same
project, so every reservation locks the project's usage rows and the workers take
turns on them. Ours is ``nova.quota_reserve(ctx, None, quotas, quotas, deltas, expire,
0, 0)`` + ``nova.reservation_commit(ctx, uuids)``; raw is the same locking work written
against the driver, two transactions per cycle:

- reserve: BEGIN (IMMEDIATE on SQLite); PostgreSQL: ``pg_advisory_xact_lock`` on the
  project; the project's live usage rows ``SELECT ... FOR UPDATE`` (PostgreSQL: FOR NO
  KEY UPDATE; SQLite: the database lock); the limits checked against the user's rows
  and the project's sums; ``INSERT`` of the three reservations (executemany); ``UPDATE``
  of the three usage rows (executemany); COMMIT;
- commit: the live reservations by uuid ``SELECT ... FOR UPDATE`` (their project and user
  checked on the rows);
  ``UPDATE`` of their usage rows (``reserved - delta``, ``in_use + delta``, executemany);
  their soft delete (one ``UPDATE``); COMMIT.

The time runs from the first worker's start to the last one's finish. After every run
the parent checks each user's usage rows: ``in_use`` must be the cycles committed times
the delta and nothing may stay reserved (mismatches are counted in the note).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from dblayer.core.types import utcnow

from .nova_common import PROJECT, Space, analyze, nova_space, tables
from .runner import Backend, Context, Result, raw_connect, raw_transaction
from .workers import time_sides

CYCLES = 2_000  # in all, shared among the workers
WORKER_COUNTS = (1, 4)
TARGET = 1.5
DELTAS = {"instances": 1, "cores": 2, "ram": 512}
LIMITS = {"instances": 10**9, "cores": 10**9, "ram": 2 * 10**9}
WARMUP_CYCLES = 20


def _user(name: str) -> str:
    return f"bench-user-{name}"


def _expire() -> dt.datetime:
    return utcnow() + dt.timedelta(days=1)


def ours_cycles(name: str, cycles: int) -> int:
    """``cycles`` reserve + commit cycles through dblayer as the worker's user."""
    import dblayer.stores.nova as nova
    from dblayer.stores.nova.context import RequestContext

    ctx = RequestContext(_user(name), PROJECT)
    for _ in range(cycles):
        reservations = nova.quota_reserve(ctx, None, LIMITS, LIMITS, DELTAS, _expire(), 0, 0)
        nova.reservation_commit(ctx, reservations)
    return cycles


class RawQuota:
    """A careful hand-written quota_reserve + reservation_commit on a bare driver connection."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.conn = raw_connect(backend)
        m = backend.mark
        lock = {"postgresql": " FOR NO KEY UPDATE", "mariadb": " FOR UPDATE"}.get(backend.name, "")
        self.lock_usages = (
            "SELECT id, user_id, resource, in_use, reserved, until_refresh, updated_at "
            f"FROM quota_usages WHERE project_id = {m} AND deleted = 0 ORDER BY id{lock}"
        )
        self.insert_reservation = (
            "INSERT INTO reservations (uuid, usage_id, project_id, user_id, resource, delta, "
            f"expire, created_at, deleted) VALUES ({backend.marks(9)})"
        )
        self.write_usage = (
            f"UPDATE quota_usages SET in_use = {m}, reserved = {m}, until_refresh = {m}, "
            f"updated_at = {m} WHERE id = {m}"
        )
        row_lock = "" if backend.name == "sqlite" else " FOR UPDATE"
        # By uuid only (project and user checked on the rows): a project's soft-deleted
        # reservations pile up under the project_id index, which SQLite would pick.
        self.lock_reservations = (
            "SELECT id, usage_id, delta, project_id, user_id FROM reservations "
            f"WHERE uuid IN ({backend.marks(3)}) AND deleted = 0 ORDER BY id{row_lock}"
        )
        self.move_usage = (
            f"UPDATE quota_usages SET reserved = reserved + {m}, in_use = in_use + {m}, "
            f"updated_at = {m} WHERE id = {m} AND deleted = 0"
        )
        self.delete_reservations = (
            f"UPDATE reservations SET deleted = id, deleted_at = {m} "
            f"WHERE id IN ({backend.marks(3)}) AND deleted = 0"
        )

    def _time(self, value: dt.datetime) -> Any:
        if self.backend.name == "sqlite":
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    def reserve(self, user: str, deltas: dict[str, int]) -> list[str]:
        """One reservation transaction; the reservation uuids (OverQuota: ValueError)."""
        name = self.backend.name
        with raw_transaction(self.backend, self.conn, immediate=True) as cur:
            if name == "postgresql":
                digest = hashlib.blake2b(
                    f"nova.quota_usages:{PROJECT}".encode(), digest_size=8
                ).digest()
                cur.execute(
                    "SELECT pg_advisory_xact_lock(%s)",
                    (int.from_bytes(digest, "big", signed=True),),
                )
            cur.execute(self.lock_usages, (PROJECT,))
            rows = cur.fetchall()
            mine: dict[str, list[Any]] = {}
            project: dict[str, int] = {}
            for row in rows:
                project[row[2]] = project.get(row[2], 0) + row[3] + row[4]
                if row[1] == user and row[2] not in mine:
                    mine[row[2]] = list(row)
            missing = [r for r in deltas if r not in mine]
            if missing:
                raise RuntimeError(f"usage rows missing for {user}: {missing}")
            over = [
                r
                for r, d in deltas.items()
                if d >= 0
                and (LIMITS[r] < d + mine[r][3] + mine[r][4] or LIMITS[r] < d + project.get(r, 0))
            ]
            if over:
                raise ValueError(f"over quota: {over}")
            now = utcnow()
            expire = self._time(_expire())
            created = self._time(now)
            uuids = [str(uuid.uuid4()) for _ in deltas]
            cur.executemany(
                self.insert_reservation,
                [
                    (u, mine[r][0], PROJECT, user, r, d, expire, created, 0)
                    for u, (r, d) in zip(uuids, deltas.items(), strict=True)
                ],
            )
            writes = []
            for r, d in deltas.items():
                row = mine[r]
                if d > 0:
                    row[4] += d
                writes.append((row[3], row[4], row[5], created, row[0]))
            cur.executemany(self.write_usage, sorted(writes, key=lambda w: w[-1]))
        return uuids

    def commit(self, user: str, uuids: list[str]) -> None:
        """One commit transaction."""
        with raw_transaction(self.backend, self.conn, immediate=True) as cur:
            cur.execute(self.lock_reservations, sorted(uuids))
            rows = [r for r in cur.fetchall() if r[3] == PROJECT and r[4] == user]
            moves: dict[int, list[int]] = {}
            for _id, usage_id, delta, _project, _user in rows:
                move = moves.setdefault(usage_id, [0, 0])
                if delta >= 0:
                    move[0] -= delta
                move[1] += delta
            now = self._time(utcnow())
            cur.executemany(
                self.move_usage,
                [(r, u, now, usage_id) for usage_id, (r, u) in sorted(moves.items())],
            )
            cur.execute(self.delete_reservations, (now, *[row[0] for row in rows]))

    def cycles(self, name: str, cycles: int) -> int:
        """``cycles`` reserve + commit cycles as the worker's user."""
        user = _user(name)
        for _ in range(cycles):
            self.commit(user, self.reserve(user, DELTAS))
        return cycles


@contextmanager
def _sides(backend: Backend, name: str) -> Iterator[dict[str, Callable[..., Any]]]:
    """A worker's two sides, each warmed up by a few cycles (which also make ours' usage
    rows: the raw side works on the same rows)."""
    from dblayer.stores.nova import configure

    db = configure(backend.url, create_tables=False)
    raw = RawQuota(backend)
    try:
        ours_cycles(name, WARMUP_CYCLES)
        raw.cycles(name, WARMUP_CYCLES)
        yield {"ours": lambda n: ours_cycles(name, n), "raw": lambda n: raw.cycles(name, n)}
    finally:
        raw.conn.close()
        db.dispose()


def _reset(space: Space) -> None:
    """Usage back to nothing, reservations gone (untimed)."""
    t = tables()
    with space.db.transaction() as conn:
        conn.execute(sa.delete(t["reservations"]))
        conn.execute(sa.update(t["quota_usages"]).values(in_use=0, reserved=0))
    analyze(space.db, "reservations", "quota_usages")


def _check(space: Space, per_worker: int, got: dict[str, int]) -> dict[str, int]:
    """Usage rows that do not hold what the workers committed, or still hold reservations."""
    usages = tables()["quota_usages"]
    with space.db.transaction(readonly=True) as conn:
        rows = conn.execute(
            sa.select(usages.c.user_id, usages.c.resource, usages.c.in_use, usages.c.reserved)
        ).all()
    expected = {
        (_user(name), resource): cycles * delta
        for name, cycles in got.items()
        for resource, delta in DELTAS.items()
    }
    seen = {(r.user_id, r.resource): (r.in_use, r.reserved) for r in rows}
    mismatched = sum(1 for key, in_use in expected.items() if seen.get(key) != (in_use, 0))
    mismatched += sum(1 for cycles in got.values() if cycles != per_worker)
    return {"mismatched": mismatched}


def run(ctx: Context) -> None:
    """Time quota_reserve + reservation_commit cycles with 1 and 4 processes against raw."""
    total = ctx.n(CYCLES)
    with nova_space(ctx) as space:
        for workers in WORKER_COUNTS:
            per_worker = max(1, total // workers)
            best, problems = time_sides(
                _sides,
                space.backend,
                workers,
                ctx.reps,
                lambda: _reset(space),
                lambda got, n=per_worker: _check(space, n, got),
                per_worker,
            )
            ctx.report(
                Result(
                    f"nova_quota_reserve x{workers}",
                    ctx.backend.name,
                    best["ours"],
                    best["raw"],
                    per_worker * workers,
                    "cycles",
                    TARGET,
                    note=f"workers {workers}; mismatched usages {problems['mismatched']}",
                    extra=dict(problems, workers=workers),
                )
            )

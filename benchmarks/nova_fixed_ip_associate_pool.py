"""nova_fixed_ip_associate_pool: 1 and 4 processes take fixed IPs from one pool until none is left.

Each call is one transaction that hands one free address of the network to one
instance (a distinct instance per call), as nova's network manager does for every
new server. Ours is ``nova.fixed_ip_associate_pool(admin, network_id, instance_uuid)``
until NoMoreFixedIps; raw is the same locking work written against the driver, one
transaction per call:

- PostgreSQL: ``UPDATE fixed_ips SET ... WHERE id = (SELECT id ... ORDER BY id LIMIT 1
  FOR UPDATE SKIP LOCKED) RETURNING <columns>``;
- MariaDB (no UPDATE ... RETURNING): ``SELECT <columns> ... ORDER BY id LIMIT 1 FOR
  UPDATE SKIP LOCKED``, then ``UPDATE`` of that row by id;
- SQLite: ``BEGIN IMMEDIATE`` (the writer holds the database), then the same ``UPDATE ...
  WHERE id = (SELECT id ... ORDER BY id LIMIT 1) RETURNING <columns>``.

Both sides return the row as a Python object (ours: nova's model object; raw: a dict).
Each worker is a spawned process with its own connection; the time runs from the first
worker's start to the last one's finish. After every run the parent checks that no
address went to two callers, that every address was handed out, and that each row names
the instance its caller reported.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from dblayer.core import insert_many
from dblayer.core.types import utcnow

from .nova_common import Shape, Space, analyze, nova_space, tables
from .runner import Backend, Context, Result, raw_connect, raw_transaction
from .workers import time_sides

POOL = 2_000
WORKER_COUNTS = (1, 4)
NETWORK = 1
TARGET = 1.5


def instance_uuid(worker: int, i: int) -> str:
    """The instance the ``i``-th call of worker ``worker`` allocates for (rows made up front)."""
    return str(uuid.UUID(int=((worker + 1) << 64) | i))


def _worker_index(name: str) -> int:
    return int(name.lstrip("w"))


def ours_allocate(name: str, network_id: int = NETWORK) -> list[tuple[str, str]]:
    """Allocate through dblayer until NoMoreFixedIps; the (address, instance) pairs got."""
    from dblayer.stores.nova import exception, fixed_ip_associate_pool, get_admin_context

    admin = get_admin_context()
    worker = _worker_index(name)
    got: list[tuple[str, str]] = []
    while True:
        owner = instance_uuid(worker, len(got))
        try:
            row = fixed_ip_associate_pool(admin, network_id, owner)
        except exception.NoMoreFixedIps:
            return got
        got.append((row.address, row.instance_uuid))


class RawPool:
    """A careful hand-written fixed_ip_associate_pool on a bare driver connection."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.conn = raw_connect(backend)
        # Booleans (and SQLite's timestamps) converted by hand, as nova_common's shapes do.
        self.shape = Shape(backend, tables()["fixed_ips"], lambda name: name)
        columns = ", ".join(self.shape.names)
        m = backend.mark
        pick = (
            "SELECT id FROM fixed_ips WHERE deleted = 0 "
            f"AND (network_id = {m} OR network_id IS NULL) AND reserved = {self._false} "
            "AND instance_uuid IS NULL AND host IS NULL ORDER BY id LIMIT 1"
        )
        assign = (
            f"UPDATE fixed_ips SET network_id = COALESCE(network_id, {m}), "
            f"instance_uuid = {m}, updated_at = {m} WHERE id "
        )
        if backend.name == "mariadb":
            # No UPDATE ... RETURNING: lock the row with all its columns, then update it by id.
            self.pick = f"{pick.replace('SELECT id', f'SELECT {columns}')} FOR UPDATE SKIP LOCKED"
            self.assign = f"{assign}= {m}"
        else:
            # SQLite's writer holds the database from BEGIN IMMEDIATE: no row lock to take.
            lock = " FOR UPDATE SKIP LOCKED" if backend.name == "postgresql" else ""
            self.allocate_sql = f"{assign}= ({pick}{lock}) RETURNING {columns}"

    @property
    def _false(self) -> str:
        return "false" if self.backend.name == "postgresql" else "0"

    def _now(self) -> Any:
        now = utcnow()
        return now.strftime("%Y-%m-%d %H:%M:%S.%f") if self.backend.name == "sqlite" else now

    def allocate_one(self, network_id: int, owner: str) -> dict[str, Any] | None:
        """One call: its own transaction; the row handed out, or None when none is left."""
        name = self.backend.name
        with raw_transaction(self.backend, self.conn, immediate=True) as cur:
            if name != "mariadb":
                cur.execute(self.allocate_sql, (network_id, owner, self._now(), network_id))
                values = cur.fetchone()
            else:
                cur.execute(self.pick, (network_id,))
                values = cur.fetchone()
                if values is None:
                    return None
                now = self._now()
                cur.execute(self.assign, (network_id, owner, now, values[0]))
                row = self.shape.dict(values)
                row.update(instance_uuid=owner, updated_at=now)
                if row["network_id"] is None:
                    row["network_id"] = network_id
                return row
        return None if values is None else self.shape.dict(values)

    def allocate(self, name: str, network_id: int = NETWORK) -> list[tuple[str, str]]:
        """Allocate until none is left; the (address, instance) pairs got."""
        worker = _worker_index(name)
        got: list[tuple[str, str]] = []
        while True:
            row = self.allocate_one(network_id, instance_uuid(worker, len(got)))
            if row is None:
                return got
            got.append((row["address"], row["instance_uuid"]))


@contextmanager
def _sides(backend: Backend, name: str) -> Iterator[dict[str, Callable[[], Any]]]:
    """A worker's two sides, each warmed up on a network that has no addresses."""
    from dblayer.stores.nova import configure

    db = configure(backend.url, create_tables=False)
    raw = RawPool(backend)
    try:
        ours_allocate(name, network_id=NETWORK + 1)
        raw.allocate(name, network_id=NETWORK + 1)
        yield {"ours": lambda: ours_allocate(name), "raw": lambda: raw.allocate(name)}
    finally:
        raw.conn.close()
        db.dispose()


def _load(space: Space, pool: int, workers: int) -> list[str]:
    """``pool`` free addresses of network NETWORK, and the instances the workers allocate for."""
    t = tables()
    now = utcnow()
    addresses = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, pool + 1)]
    with space.db.transaction() as conn:
        insert_many(
            conn,
            t["networks"],
            [
                {
                    "id": NETWORK,
                    "label": "bench",
                    "cidr": "10.0.0.0/8",
                    "created_at": now,
                    "deleted": 0,
                }
            ],
        )
        insert_many(
            conn,
            t["instances"],
            [
                {
                    "uuid": instance_uuid(w, i),
                    "project_id": "bench-project",
                    "user_id": "bench-user",
                    "created_at": now,
                    "deleted": 0,
                }
                for w in range(workers)
                for i in range(pool)
            ],
        )
        insert_many(
            conn,
            t["fixed_ips"],
            [
                {
                    "address": a,
                    "network_id": NETWORK,
                    "allocated": False,
                    "leased": False,
                    "reserved": False,
                    "created_at": now,
                    "deleted": 0,
                }
                for a in addresses
            ],
        )
    analyze(space.db, "fixed_ips", "instances")
    return addresses


def _reset(space: Space) -> None:
    """Every address free again (untimed)."""
    fixed = tables()["fixed_ips"]
    with space.db.transaction() as conn:
        conn.execute(sa.update(fixed).values(instance_uuid=None, host=None, updated_at=None))


def _check(
    space: Space, addresses: list[str], got: dict[str, list[tuple[str, str]]]
) -> dict[str, int]:
    """Addresses handed out twice, never handed out, or whose row names another instance."""
    handed = [a for pairs in got.values() for a, _ in pairs]
    owner = {a: inst for pairs in got.values() for a, inst in pairs}
    fixed = tables()["fixed_ips"]
    with space.db.transaction(readonly=True) as conn:
        stored = dict(conn.execute(sa.select(fixed.c.address, fixed.c.instance_uuid)).all())
    return {
        "double_claims": len(handed) - len(set(handed)),
        "unclaimed": sum(1 for a in addresses if stored.get(a) is None),
        "mismatched": sum(
            1 for a, inst in stored.items() if inst is not None and owner.get(a) != inst
        ),
    }


def run(ctx: Context) -> None:
    """Time fixed_ip_associate_pool with 1 and 4 processes, dblayer against the raw driver."""
    pool = ctx.n(POOL)
    with nova_space(ctx) as space:
        addresses = _load(space, pool, max(WORKER_COUNTS))
        for workers in WORKER_COUNTS:
            best, problems = time_sides(
                _sides,
                space.backend,
                workers,
                ctx.reps,
                lambda: _reset(space),
                lambda got: _check(space, addresses, got),
            )
            note = (
                f"workers {workers}; double claims {problems['double_claims']}, "
                f"unclaimed {problems['unclaimed']}, mismatched {problems['mismatched']}"
            )
            ctx.report(
                Result(
                    f"nova_fixed_ip_associate_pool x{workers}",
                    ctx.backend.name,
                    best["ours"],
                    best["raw"],
                    pool,
                    "IPs",
                    TARGET,
                    note=note,
                    extra=dict(problems, workers=workers),
                )
            )

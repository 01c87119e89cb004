"""Races between processes (SQLite file, PostgreSQL, MariaDB) over nova's network allocation:

- 4 processes take fixed IPs from a pool of 1,000 with fixed_ip_associate_pool until
  none is left: every address goes to exactly one instance, the one its caller named,
  and every process ends with NoMoreFixedIps;
- then the same 4 associate new projects with free networks until none is left (each
  ends with NoMoreNetworks): no network goes to two projects;
- then all 4 race network_set_host on every network: one host is set per network, and
  every caller learns that one.

One set of processes runs the three races in turn (spawning costs seconds).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import insert_many
from dblayer.core.types import utcnow
from dblayer.stores.nova import exception, models
from tests.concurrency import run_processes

POOL = 1_000
PROCESSES = 4
NETWORK = 1
NETWORKS = 24


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def _instance(worker: int, i: int) -> str:
    """The instance the ``i``-th allocation of ``worker`` is for (made up front)."""
    return str(uuid.UUID(int=((worker + 1) << 64) | i))


def _race(_db: Any, worker: int) -> dict[str, Any]:
    """Take fixed IPs until none is left; then networks for new projects until none is
    left; then try to set this worker's host on every network."""
    admin = nova.get_admin_context()
    ips: list[tuple[str, str]] = []
    while True:
        try:
            row = nova.fixed_ip_associate_pool(admin, NETWORK, _instance(worker, len(ips)))
        except exception.NovaException as e:
            ips_end = type(e).__name__
            break
        ips.append((row.address, row.instance_uuid))
    networks: list[tuple[str, int]] = []
    while True:
        project = f"project-{worker}-{len(networks)}"
        try:
            networks.append((project, nova.network_associate(admin, project).id))
        except exception.NovaException as e:
            networks_end = type(e).__name__
            break
    hosts = [nova.network_set_host(admin, n, f"host-{worker}") for n in _network_ids()]
    return {
        "ips": ips,
        "ips_end": ips_end,
        "networks": networks,
        "networks_end": networks_end,
        "hosts": hosts,
    }


def _network_ids() -> list[int]:
    """Every network: the pool's (of no project, so up for association too) and NETWORKS more."""
    return list(range(NETWORK, NETWORK + NETWORKS + 1))


def _load(db: Any, addresses: list[str]) -> None:
    now = utcnow()
    with db.transaction() as conn:
        insert_many(
            conn,
            models.Network.__table__,
            [
                {"id": n, "label": f"net-{n}", "created_at": now, "deleted": 0}
                for n in _network_ids()
            ],
        )
        insert_many(
            conn,
            models.Instance.__table__,
            [
                {"uuid": _instance(w, i), "project_id": "p", "created_at": now, "deleted": 0}
                for w in range(PROCESSES)
                for i in range(POOL)
            ],
        )
        insert_many(
            conn,
            models.FixedIp.__table__,
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


def test_allocations_never_hand_one_thing_to_two_callers(nova_url):
    db = nova.get_database()
    addresses = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(POOL)]
    _load(db, addresses)
    results = run_processes(partial(_nova_on, nova_url), _race, [(w,) for w in range(PROCESSES)])

    # Fixed IPs: no address twice, none left over, each to the instance its caller named,
    # and every process ended with NoMoreFixedIps.
    assert [r["ips_end"] for r in results] == ["NoMoreFixedIps"] * PROCESSES
    handed = [pair for r in results for pair in r["ips"]]
    assert sorted(a for a, _ in handed) == sorted(addresses)
    owner = dict(handed)
    fixed_ips, networks = models.FixedIp.__table__, models.Network.__table__
    with db.transaction() as conn:
        stored = dict(conn.execute(sa.select(fixed_ips.c.address, fixed_ips.c.instance_uuid)).all())
        rows = conn.execute(sa.select(networks.c.id, networks.c.project_id, networks.c.host)).all()
    assert stored == owner
    assert len(set(owner.values())) == POOL

    # Networks: each to one project (the one whose caller got it), all of them taken.
    assert [r["networks_end"] for r in results] == ["NoMoreNetworks"] * PROCESSES
    taken = [pair for r in results for pair in r["networks"]]
    assert sorted(n for _, n in taken) == _network_ids()
    assert {r.id: r.project_id for r in rows} == {n: p for p, n in taken}

    # Hosts: every caller of network_set_host learnt the one host that was stored.
    hosts = {r.id: r.host for r in rows}
    assert all(h is not None and h.startswith("host-") for h in hosts.values())
    for r in results:
        assert r["hosts"] == [hosts[n] for n in _network_ids()]

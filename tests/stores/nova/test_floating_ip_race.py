"""4 processes allocate floating IPs from one pool of 1,000 until it is exhausted
(SQLite file, PostgreSQL, MariaDB): every address goes to exactly one allocation, each
row holds the project of the process that got it, and every process ends with
NoMoreFloatingIps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import dblayer.stores.nova as nova
from dblayer.stores.nova import RequestContext, exception, models
from tests.concurrency import run_processes
from tests.stores.nova.conftest import table_rows

POOL = 1000
PROCESSES = 4


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def _allocate_until_none_left(_db: Any, index: int) -> tuple[list[str], str]:
    """Allocate for this child's project until the pool is empty; return the addresses
    and the name of the error that ended the loop."""
    project = f"project{index}"
    ctx = RequestContext(f"user{index}", project)
    got: list[str] = []
    while True:
        try:
            got.append(nova.floating_ip_allocate_address(ctx, project, "public"))
        except exception.NoMoreFloatingIps as e:
            return got, type(e).__name__


def test_every_address_is_allocated_once(nova_url):
    admin = nova.get_admin_context()
    ips = [{"address": f"172.16.{i // 256}.{i % 256}", "pool": "public"} for i in range(POOL)]
    nova.floating_ip_bulk_create(admin, ips)
    # An address of another pool is never handed out.
    nova.floating_ip_create(admin, {"address": "172.17.0.1", "pool": "private"})

    results = run_processes(
        partial(_nova_on, nova_url),
        _allocate_until_none_left,
        [(i,) for i in range(PROCESSES)],
    )

    assert [ended for _, ended in results] == ["NoMoreFloatingIps"] * PROCESSES
    handed_out = Counter(address for got, _ in results for address in got)
    assert sorted(handed_out) == sorted(ip["address"] for ip in ips)
    assert set(handed_out.values()) == {1}
    owner = {address: f"project{i}" for i, (got, _) in enumerate(results) for address in got}
    stored = table_rows(nova.get_database(), models.FloatingIp)
    for row in stored:
        if row["pool"] == "public":
            assert row["project_id"] == owner[row["address"]]
        else:
            assert row["project_id"] is None

"""nova_compute_node_statistics: nova's cloud-wide resource sums against hand-written SQL.

10,000 hosts, each with a compute service (every tenth one disabled) and a live compute
node, every tenth host also a deleted node (so 11,000 node rows, 9,000 of them counted).
Both sides compute the twelve figures 200 times, one transaction per call: one
aggregate query (COUNT and SUMs over the live nodes JOIN their services WHERE
``disabled`` is false), NULL sums as 0, the result a dict of ints.
"""

from __future__ import annotations

from typing import Any

from .nova_common import TARGET, Space, nova_space
from .nova_service_get_by_compute_host import load_hosts
from .runner import Context, Result, measure, raw_connect, raw_transaction

HOSTS = 10_000
CALLS = 200
FIELDS = (
    "vcpus",
    "memory_mb",
    "local_gb",
    "vcpus_used",
    "memory_mb_used",
    "local_gb_used",
    "free_ram_mb",
    "free_disk_gb",
    "current_workload",
    "running_vms",
    "disk_available_least",
)


class RawStatistics:
    """A careful hand-written compute_node_statistics on a bare driver connection."""

    def __init__(self, space: Space) -> None:
        self.backend = space.backend
        self.conn = raw_connect(space.backend)
        false = "false" if space.backend.name == "postgresql" else "0"
        sums = ", ".join(f"SUM(cn.{name})" for name in FIELDS)
        self.query = (
            f"SELECT COUNT(cn.id), {sums} FROM compute_nodes cn "
            "JOIN services s ON s.id = cn.service_id "
            f"WHERE cn.deleted = 0 AND s.disabled = {false}"
        )
        self.names = ("count", *FIELDS)

    def get(self) -> dict[str, int]:
        """One call: its own transaction (a read: plain BEGIN on SQLite)."""
        with raw_transaction(self.backend, self.conn) as cur:
            cur.execute(self.query)
            row = cur.fetchone()
        return {name: int(value or 0) for name, value in zip(self.names, row, strict=True)}


def run(ctx: Context) -> None:
    """Time compute_node_statistics against one hand-written aggregate per call."""
    from dblayer.stores.nova import compute_node_statistics, get_admin_context

    size = ctx.n(HOSTS)
    calls = ctx.n(CALLS)
    with nova_space(ctx) as space:
        load_hosts(space.db, size, disabled_every=10)
        admin = get_admin_context()
        raw = RawStatistics(space)
        results: dict[str, Any] = {}

        def ours_side(n: int) -> None:
            for _ in range(n):
                results["ours"] = compute_node_statistics(admin)

        def raw_side(n: int) -> None:
            for _ in range(n):
                results["raw"] = raw.get()

        try:
            ours_s, raw_s = measure(
                ctx,
                lambda: ours_side(calls),
                lambda: raw_side(calls),
                warm_ours=lambda: ours_side(max(1, calls // 10)),
                warm_raw=lambda: raw_side(max(1, calls // 10)),
            )
        finally:
            raw.conn.close()
    counted = size - len(range(0, size, 10))
    if results["ours"] != results["raw"] or results["ours"]["count"] != counted:
        raise AssertionError(
            f"nova_compute_node_statistics: ours {results['ours']} raw {results['raw']}, "
            f"expected {counted} nodes counted"
        )
    ctx.report(
        Result(
            "nova_compute_node_statistics",
            ctx.backend.name,
            ours_s,
            raw_s,
            calls,
            "calls",
            TARGET,
            note=f"{size:,} hosts, {counted:,} nodes counted",
        )
    )

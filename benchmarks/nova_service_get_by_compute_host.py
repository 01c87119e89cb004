"""nova_service_get_by_compute_host: the compute service of a host with its compute nodes,
against hand-written SQL.

1,000 hosts each run a live ``nova-compute`` service (topic ``compute``) with one live
compute node, plus a ``nova-network`` service (topic ``network``); every tenth host also
has a deleted compute node. Both sides look up 10,000 random hosts, one transaction per
call: the service LEFT JOIN its live compute nodes by host and topic. The raw side builds
a dict with a list of node dicts; ours returns nova's Service object with its
``compute_node`` list of ComputeNode objects.

nova's models declare no index on ``compute_nodes.service_id`` (MariaDB makes one for the
foreign key; PostgreSQL and SQLite do not): while the model has none, the case adds it,
untimed and for both sides, so that the join reads an index rather than scanning every
node per lookup.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from dblayer.core import Database, insert_many

from .nova_common import BASE_TIME, TARGET, Space, analyze, nova_space, tables
from .runner import Context, Result, measure, raw_connect, raw_transaction

HOSTS = 1_000
LOOKUPS = 10_000
COMPUTE_TOPIC = "compute"


def node_row(node_id: int, service_id: int, host: str, *, deleted: bool = False) -> dict[str, Any]:
    """A compute node row as a hypervisor reports it."""
    return {
        "id": node_id,
        "service_id": service_id,
        "vcpus": 16 + node_id % 16,
        "memory_mb": 65536,
        "local_gb": 500 + node_id % 100,
        "vcpus_used": node_id % 16,
        "memory_mb_used": 1024 * (node_id % 32),
        "local_gb_used": node_id % 200,
        "hypervisor_type": "QEMU",
        "hypervisor_version": 2011000,
        "hypervisor_hostname": f"{host}.example.org",
        "free_ram_mb": None if node_id % 7 == 0 else 65536 - 1024 * (node_id % 32),
        "free_disk_gb": 500 - node_id % 200,
        "current_workload": node_id % 3,
        "running_vms": node_id % 20,
        "cpu_info": '{"arch": "x86_64", "model": "Haswell", "topology": {"cores": 8}}',
        "disk_available_least": 400,
        "host_ip": f"10.{node_id // 65536 % 256}.{node_id // 256 % 256}.{node_id % 256}",
        "supported_instances": '[["x86_64", "qemu", "hvm"]]',
        "stats": '{"num_instances": "3"}',
        "created_at": BASE_TIME + dt.timedelta(seconds=node_id),
        "deleted": node_id if deleted else 0,
        "deleted_at": BASE_TIME if deleted else None,
    }


def ensure_service_index(db: Database) -> bool:
    """Index compute_nodes.service_id unless the model (or the foreign key, on MariaDB)
    already does; True when the case added one."""
    nodes = tables()["compute_nodes"]
    if any(list(i.columns)[0].name == "service_id" for i in nodes.indexes):
        return False
    if db.backend == "mysql":
        return False  # InnoDB indexes every foreign key
    with db.transaction() as conn:
        conn.exec_driver_sql(
            "CREATE INDEX bench_compute_nodes_service_id ON compute_nodes (service_id)"
        )
    return True


def load_hosts(
    db: Database, hosts: int, *, disabled_every: int = 0, extra_nodes: bool = True
) -> list[str]:
    """``hosts`` hosts: a compute service each (disabled on every ``disabled_every``-th
    host) with one live node, a network service, and on every tenth host a deleted node
    (when ``extra_nodes``). Loaded in bulk (untimed); returns the host names."""
    t = tables()
    names = [f"compute-{i:05d}" for i in range(hosts)]
    services, nodes = [], []
    node_id = 0
    for i, host in enumerate(names):
        created = BASE_TIME + dt.timedelta(seconds=i)
        compute_id, network_id = 2 * i + 1, 2 * i + 2
        disabled = bool(disabled_every) and i % disabled_every == 0
        for sid, binary, topic in (
            (compute_id, "nova-compute", COMPUTE_TOPIC),
            (network_id, "nova-network", "network"),
        ):
            services.append(
                {
                    "id": sid,
                    "host": host,
                    "binary": binary,
                    "topic": topic,
                    "report_count": i,
                    "disabled": disabled and topic == COMPUTE_TOPIC,
                    "disabled_reason": "maintenance" if disabled else None,
                    "created_at": created,
                    "deleted": 0,
                }
            )
        node_id += 1
        nodes.append(node_row(node_id, compute_id, host))
        if extra_nodes and i % 10 == 0:
            node_id += 1
            nodes.append(node_row(node_id, compute_id, host, deleted=True))
    chunk = 20_000
    with db.transaction() as conn:
        for start in range(0, len(services), chunk):
            insert_many(conn, t["services"], services[start : start + chunk])
        for start in range(0, len(nodes), chunk):
            insert_many(conn, t["compute_nodes"], nodes[start : start + chunk])
    analyze(db, "services", "compute_nodes")
    return names


class RawLookup:
    """A careful hand-written service_get_by_compute_host on a bare driver connection."""

    def __init__(self, space: Space) -> None:
        sql = space.sql
        m = sql.mark
        self.backend = space.backend
        self.conn = raw_connect(space.backend)
        self.service, self.node = sql.shapes["services"], sql.shapes["compute_nodes"]
        self.inet = space.backend.name == "postgresql"  # psycopg gives ipaddress objects
        self.query = (
            f"SELECT {self.service.columns('s')}, {self.node.columns('cn')} FROM services s "
            "LEFT OUTER JOIN compute_nodes cn ON cn.service_id = s.id AND cn.deleted = 0 "
            f"WHERE s.host = {m} AND s.topic = {m} AND s.deleted = 0 ORDER BY s.id, cn.id"
        )

    def fetch(self, cur: Any, host: str) -> dict[str, Any] | None:
        """The service as a dict with ``compute_node``, a list of node dicts; or None."""
        cur.execute(self.query, (host, COMPUTE_TOPIC))
        rows = cur.fetchall()
        if not rows:
            return None
        width, node_id = self.service.width, self.service.width + self.node.id_at
        first_id = rows[0][self.service.id_at]
        service = self.service.dict(rows[0][:width])
        found = []
        for row in rows:
            if row[self.service.id_at] != first_id or row[node_id] is None:
                continue
            node = self.node.dict(row[width:])
            if self.inet and node["host_ip"] is not None:
                node["host_ip"] = str(node["host_ip"])
            found.append(node)
        service["compute_node"] = found
        return service

    def get(self, host: str) -> dict[str, Any] | None:
        """One call: its own transaction (a read: plain BEGIN on SQLite)."""
        with raw_transaction(self.backend, self.conn) as cur:
            return self.fetch(cur, host)


def same_service(ours: Any, raw: dict[str, Any]) -> bool:
    """Whether our Service object and the raw dict hold the same values and nodes."""
    if any(ours[k] != v for k, v in raw.items() if k != "compute_node"):
        return False
    ours_nodes, raw_nodes = ours["compute_node"], raw["compute_node"]
    if len(ours_nodes) != len(raw_nodes):
        return False
    return all(
        n.service is ours and all(n[k] == v for k, v in r.items())
        for n, r in zip(ours_nodes, raw_nodes, strict=True)
    )


def run(ctx: Context) -> None:
    """Time service_get_by_compute_host against one hand-written join per call."""
    from dblayer.stores.nova import get_admin_context, service_get_by_compute_host

    size = ctx.n(HOSTS)
    with nova_space(ctx) as space:
        hosts = load_hosts(space.db, size)
        indexed = ensure_service_index(space.db)
        picker = random.Random(42)
        keys = [hosts[picker.randrange(size)] for _ in range(ctx.n(LOOKUPS))]
        warm = keys[: max(1, len(keys) // 10)]
        admin = get_admin_context()
        raw = RawLookup(space)
        found = {"ours": 0, "raw": 0}

        def ours_side(batch: list[str]) -> None:
            nodes = 0
            for host in batch:
                nodes += len(service_get_by_compute_host(admin, host).compute_node)
            found["ours"] = nodes

        def raw_side(batch: list[str]) -> None:
            nodes = 0
            for host in batch:
                nodes += len(raw.get(host)["compute_node"])  # type: ignore[index]
            found["raw"] = nodes

        try:
            ours_s, raw_s = measure(
                ctx,
                lambda: ours_side(keys),
                lambda: raw_side(keys),
                warm_ours=lambda: ours_side(warm),
                warm_raw=lambda: raw_side(warm),
            )
            mismatched = [
                h
                for h in keys[:50]
                if not same_service(service_get_by_compute_host(admin, h), raw.get(h))  # type: ignore[arg-type]
            ]
        finally:
            raw.conn.close()
    if found["ours"] != len(keys) or found["raw"] != len(keys) or mismatched:
        raise AssertionError(
            f"nova_service_get_by_compute_host found {found} nodes for {len(keys)} lookups; "
            f"differing: {mismatched[:3]}"
        )
    note = f"{size:,} hosts" + (", index on compute_nodes.service_id added" if indexed else "")
    ctx.report(
        Result(
            "nova_service_get_by_compute_host",
            ctx.backend.name,
            ours_s,
            raw_s,
            len(keys),
            "gets",
            TARGET,
            note=note,
        )
    )

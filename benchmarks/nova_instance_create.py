"""nova_instance_create: ``instance_create`` as nova's compute API calls it, against hand SQL.

Each call writes one instance with an info cache, 2 metadata and 3 system metadata rows,
the association with the project's 'default' security group and the EC2 id mapping,
in one transaction. The 'default' group is created once up front; both sides look it
up on every call. The raw side sends, per call: BEGIN (IMMEDIATE on SQLite, as dblayer
does for writes), the group lookup (with its rules, as nova returns the group), the
instance INSERT and the info cache INSERT (each reading its id back), one multi-row
INSERT each for metadata and system metadata reading their ids back (RETURNING; SQLite:
last_insert_rowid(), its rows being numbered consecutively), the association and
mapping INSERTs, COMMIT; with the same uuid4 and timestamp work, and returns the
instance as a dict with its children, ids included (what instance_create returns).
"""

from __future__ import annotations

import uuid
from typing import Any

from dblayer.core.types import utcnow

from .nova_common import (
    CREATED_TABLES,
    PROJECT,
    TARGET,
    USER,
    Space,
    analyze,
    create_default_group,
    empty_created,
    nova_space,
    user_context,
)
from .runner import Context, Result, measure, raw_connect, raw_transaction

CREATES = 10_000
# Keys of the values that are relationships, not instance columns.
CHILDREN = ("metadata", "system_metadata", "security_groups", "info_cache")


def instance_values(i: int) -> dict[str, Any]:
    """The values nova's compute API hands to instance_create for a new server (new uuid)."""
    return {
        "uuid": str(uuid.uuid4()),
        "project_id": PROJECT,
        "user_id": USER,
        "display_name": f"server-{i}",
        "host": f"compute-{i % 50}",
        "vm_state": "building",
        "memory_mb": 2048,
        "vcpus": 2,
        "metadata": {"role": "web", "tier": "front"},
        "system_metadata": {
            "image_os_type": "linux",
            "image_min_ram": "512",
            "instance_type_name": "m1.small",
        },
        "security_groups": ["default"],
        "info_cache": {"network_info": "[]"},
    }


class RawCreate:
    """A careful hand-written instance_create on a bare driver connection."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.backend = space.backend
        self.sql = space.sql
        self.conn = raw_connect(space.backend)
        q, m = self.sql.quote, self.sql.mark
        self.group = self.sql.shapes["security_groups"]
        self.rule = self.sql.shapes["security_group_rules"]
        # The group comes back with its rules, as nova's instance_create returns it.
        self.find_group = (
            f"SELECT {self.group.columns('g')}, {self.rule.columns('r')} FROM security_groups g "
            "LEFT OUTER JOIN security_group_rules r ON r.parent_group_id = g.id AND r.deleted = 0 "
            f"WHERE g.project_id = {m} AND g.name = {m} AND g.deleted = 0 ORDER BY g.id, r.id"
        )
        self.child_columns = f"(created_at, deleted, instance_uuid, {q('key')}, value)"
        # The multi-row INSERT of n children per table, built once per n.
        self._insert_children: dict[tuple[str, int], str] = {}
        self.returning = space.backend.name != "sqlite"
        self.insert_cache = (
            "INSERT INTO instance_info_caches (created_at, deleted, instance_uuid, network_info) "
            f"VALUES ({self.sql.marks(4)})"
        )
        if space.backend.name == "postgresql":
            self.insert_cache += " RETURNING id"
        self.insert_assoc = (
            "INSERT INTO security_group_instance_association "
            f"(created_at, deleted, security_group_id, instance_uuid) VALUES ({self.sql.marks(4)})"
        )
        self.insert_mapping = (
            "INSERT INTO instance_id_mappings (created_at, deleted, uuid) "
            f"VALUES ({self.sql.marks(3)})"
        )
        # The instance INSERT per set of given columns, built once (as a layer would cache it).
        self._insert_instance: dict[tuple[str, ...], str] = {}

    def instance_sql(self, keys: tuple[str, ...]) -> str:
        """INSERT INTO instances for the given columns plus the ones nova defaults."""
        sql = self._insert_instance.get(keys)
        if sql is None:
            q = self.sql.quote
            names = (
                *keys,
                "created_at",
                "deleted",
                "shutdown_terminate",
                "disable_terminate",
                "cleaned",
            )
            sql = (
                f"INSERT INTO instances ({', '.join(q(n) for n in names)}) "
                f"VALUES ({self.sql.marks(len(names))})"
            )
            if self.backend.name == "postgresql":
                sql += " RETURNING id"
            self._insert_instance[keys] = sql
        return sql

    def insert_children(
        self, cur: Any, table: str, uid: str, now: Any, pairs: dict[str, Any]
    ) -> dict[str, int]:
        """One multi-row INSERT of the (key, value) rows of ``table``; {key: its new id}."""
        if not pairs:
            return {}
        n = len(pairs)
        sql = self._insert_children.get((table, n))
        if sql is None:
            rows = ", ".join([f"({self.sql.marks(5)})"] * n)
            sql = f"INSERT INTO {table} {self.child_columns} VALUES {rows}"
            if self.returning:
                sql += f" RETURNING id, {self.sql.quote('key')}"
            self._insert_children[(table, n)] = sql
        cur.execute(sql, [x for k, v in pairs.items() for x in (now, 0, uid, k, v)])
        if self.returning:
            return {key: ident for ident, key in cur.fetchall()}
        cur.execute("SELECT last_insert_rowid()")
        last = cur.fetchone()[0]
        return dict(zip(pairs, range(last - n + 1, last + 1), strict=True))

    def create(self, values: dict[str, Any]) -> dict[str, Any]:
        """One call in its own transaction; the new instance as a dict with its children."""
        values = dict(values)
        children = {k: values.pop(k) for k in CHILDREN if k in values}
        if not values.get("uuid"):
            values["uuid"] = str(uuid.uuid4())
        uid = values["uuid"]
        created = utcnow()
        now = self.sql.time(created)
        keys = tuple(values)
        with raw_transaction(self.backend, self.conn, immediate=True) as cur:
            cur.execute(self.find_group, (PROJECT, "default"))
            rows = cur.fetchall()
            if not rows:
                raise LookupError("the project's default security group is missing")
            width, rule_id = self.group.width, self.rule.id_at
            group = self.group.dict(rows[0][:width])
            group["rules"] = [
                self.rule.dict(r[width:]) for r in rows if r[width + rule_id] is not None
            ]
            names = children.get("security_groups") or []
            if any(n != "default" for n in names):
                raise NotImplementedError("the benchmark only asks for the default group")
            cur.execute(self.instance_sql(keys), (*values.values(), now, 0, False, False, 0))
            instance_id = cur.fetchone()[0] if self.backend.name == "postgresql" else cur.lastrowid
            network_info = (children.get("info_cache") or {}).get("network_info")
            cur.execute(self.insert_cache, (now, 0, uid, network_info))
            cache_id = cur.fetchone()[0] if self.backend.name == "postgresql" else cur.lastrowid
            metadata = children.get("metadata") or {}
            system_metadata = children.get("system_metadata") or {}
            meta_ids = self.insert_children(cur, "instance_metadata", uid, now, metadata)
            sysmeta_ids = self.insert_children(
                cur, "instance_system_metadata", uid, now, system_metadata
            )
            if names:
                cur.execute(self.insert_assoc, (now, 0, group["id"], uid))
            cur.execute(self.insert_mapping, (now, 0, uid))
        values.update(id=instance_id, created_at=created, deleted=0)
        values["info_cache"] = {"id": cache_id, "instance_uuid": uid, "network_info": network_info}
        values["metadata"] = [
            {"id": meta_ids[k], "key": k, "value": v} for k, v in metadata.items()
        ]
        values["system_metadata"] = [
            {"id": sysmeta_ids[k], "key": k, "value": v} for k, v in system_metadata.items()
        ]
        values["security_groups"] = [group] if names else []
        return values


def counts(space: Space) -> dict[str, int]:
    """Rows in each table a create writes."""
    with space.db.transaction() as conn:
        return {
            name: conn.exec_driver_sql(f"SELECT COUNT(*) FROM {name}").scalar_one()
            for name in CREATED_TABLES
        }


def run(ctx: Context) -> None:
    """Time instance_create against the same rows written by hand, one transaction per call."""
    from dblayer.stores.nova import instance_create

    n = ctx.n(CREATES)
    warm_n = max(1, n // 10)
    with nova_space(ctx) as space:
        create_default_group(space.db)
        analyze(space.db, "security_groups")
        uctx = user_context()
        raw = RawCreate(space)

        def ours_side(count: int) -> None:
            for i in range(count):
                instance_create(uctx, instance_values(i))

        def raw_side(count: int) -> None:
            for i in range(count):
                raw.create(instance_values(i))

        try:
            ours_s, raw_s = measure(
                ctx,
                lambda: ours_side(n),
                lambda: raw_side(n),
                reset=lambda: empty_created(space.db),
                warm_ours=lambda: ours_side(warm_n),
                warm_raw=lambda: raw_side(warm_n),
            )
            # Both sides leave the same rows behind.
            check = min(n, 20)
            wanted = {
                "instance_id_mappings": check,
                "security_group_instance_association": check,
                "instance_system_metadata": 3 * check,
                "instance_metadata": 2 * check,
                "instance_info_caches": check,
                "instances": check,
            }
            empty_created(space.db)
            ours_side(check)
            ours_rows = counts(space)
            empty_created(space.db)
            raw_side(check)
            raw_rows = counts(space)
        finally:
            raw.conn.close()
    if ours_rows != wanted or raw_rows != wanted:
        raise AssertionError(
            f"nova_instance_create wrote {ours_rows} / {raw_rows}, wanted {wanted}"
        )
    ctx.report(
        Result("nova_instance_create", ctx.backend.name, ours_s, raw_s, n, "creates", TARGET)
    )

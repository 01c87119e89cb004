"""nova_instance_get: ``instance_get_by_uuid`` with nova's default joins against hand-written SQL.

Both sides read the same instance, one transaction per call: the instance with its
info cache, its security groups with their rules, its metadata and system metadata.
The raw side runs four queries per call (instance LEFT JOIN info cache; groups JOIN
association LEFT JOIN rules; metadata; system metadata) and builds dicts and lists of
dicts; ours returns nova's model object with the same relationships loaded.
"""

from __future__ import annotations

import functools
import os
import random
from typing import Any

import sqlalchemy as sa

from dblayer.core import Database, live
from dblayer.core.driver import cursor_execute, result_processor

from .nova_common import (
    PROJECT,
    TARGET,
    Space,
    load_instances,
    nova_space,
    tables,
    user_context,
)
from .runner import Context, Result, measure, raw_connect, raw_transaction

INSTANCES = 10_000
LOOKUPS = 20_000


class RawGet:
    """A careful hand-written instance_get_by_uuid on a bare driver connection."""

    def __init__(self, space: Space) -> None:
        sql = space.sql
        m = sql.mark
        self.backend = space.backend
        self.conn = raw_connect(space.backend)
        s = sql.shapes
        self.instance, self.cache = s["instances"], s["instance_info_caches"]
        self.group, self.rule = s["security_groups"], s["security_group_rules"]
        self.meta, self.sysmeta = s["instance_metadata"], s["instance_system_metadata"]
        self.get_instance = (
            f"SELECT {self.instance.columns('i')}, {self.cache.columns('c')} FROM instances i "
            "LEFT OUTER JOIN instance_info_caches c ON c.instance_uuid = i.uuid "
            f"WHERE i.uuid = {m} AND i.deleted = 0 AND i.project_id = {m}"
        )
        self.get_groups = (
            f"SELECT {self.group.columns('g')}, {self.rule.columns('r')} "
            "FROM security_group_instance_association a "
            "JOIN security_groups g ON g.id = a.security_group_id AND g.deleted = 0 "
            "LEFT OUTER JOIN security_group_rules r ON r.parent_group_id = g.id AND r.deleted = 0 "
            f"WHERE a.instance_uuid = {m} AND a.deleted = 0 ORDER BY g.id, r.id"
        )
        self.get_meta = (
            f"SELECT {self.meta.columns('m')} FROM instance_metadata m "
            f"WHERE m.instance_uuid = {m} AND m.deleted = 0"
        )
        self.get_sysmeta = (
            f"SELECT {self.sysmeta.columns('m')} FROM instance_system_metadata m "
            f"WHERE m.instance_uuid = {m} AND m.deleted = 0"
        )

    def fetch(self, cur: Any, uuid: str) -> dict[str, Any] | None:
        """The instance as a dict (relationships as dicts / lists of dicts), or None."""
        cur.execute(self.get_instance, (uuid, PROJECT))
        row = cur.fetchone()
        if row is None:
            return None
        width = self.instance.width
        instance = self.instance.dict(row[:width])
        cache = row[width:]
        instance["info_cache"] = (
            self.cache.dict(cache) if cache[self.cache.id_at] is not None else None
        )
        cur.execute(self.get_groups, (uuid,))
        groups: dict[int, dict[str, Any]] = {}
        width, group_id, rule_id = self.group.width, self.group.id_at, self.rule.id_at
        for row in cur.fetchall():
            group = groups.get(row[group_id])
            if group is None:
                group = groups[row[group_id]] = self.group.dict(row[:width])
                group["rules"] = []
            if row[width + rule_id] is not None:
                group["rules"].append(self.rule.dict(row[width:]))
        instance["security_groups"] = list(groups.values())
        cur.execute(self.get_meta, (uuid,))
        instance["metadata"] = [self.meta.dict(r) for r in cur.fetchall()]
        cur.execute(self.get_sysmeta, (uuid,))
        instance["system_metadata"] = [self.sysmeta.dict(r) for r in cur.fetchall()]
        return instance

    def get(self, uuid: str) -> dict[str, Any] | None:
        """One call: its own transaction (a read: plain BEGIN on SQLite)."""
        with raw_transaction(self.backend, self.conn) as cur:
            return self.fetch(cur, uuid)


# -- PROTOTYPE, not timed as "ours" ------------------------------------------------------------
#
# What instance_get_by_uuid could cost with the suggestions of the benchmark report applied:
# a read-only Core unit (no ORM Session; plain BEGIN on SQLite), the four statements compiled
# once per dialect and run on the driver cursor (no per-statement SQLAlchemy work), result
# conversions only where a column type has one (the CIDR one cached), and the row tuples made
# into detached model objects holding the same values as the API's (relationships as plain
# lists: not the instrumented collections a Session would want back). Timed against raw only
# when DBLAYER_BENCH_NOVA_PROTOTYPE=1.


class _Compiled:
    """One SELECT compiled for a dialect: its SQL, parameter order and result conversions."""

    def __init__(self, stmt: sa.Select[Any], dialect: Any) -> None:
        from dblayer.stores.nova.types import CIDR  # not at import: the store may be mid-edit

        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        binds = compiled.binds
        self.defaults = {n: p.value for n, p in binds.items() if not p.required}
        self.order = tuple(compiled.positiontup) if compiled.positional else None
        convert = []
        for i, column in enumerate(stmt.selected_columns):
            fn = result_processor(column.type, dialect)
            if fn is not None:
                if isinstance(column.type, CIDR):
                    fn = functools.lru_cache(maxsize=4096)(fn)
                convert.append((i, fn))
        self.convert = tuple(convert)

    def rows(self, conn: Any, params: dict[str, Any]) -> list[Any]:
        """Every row for ``params``, as tuples (lists where a value was converted)."""
        params = {**self.defaults, **params}
        args: Any = params if self.order is None else [params[n] for n in self.order]
        cursor = cursor_execute(conn, self.sql, args)
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        if not self.convert:
            return rows
        out = []
        for row in rows:
            row = list(row)
            for i, fn in self.convert:
                if row[i] is not None:
                    row[i] = fn(row[i])
            out.append(row)
        return out


class _Objects:
    """Detached model objects straight from row slices (how the API's RowObjects does it)."""

    def __init__(self, model: Any) -> None:
        mapper = sa.inspect(model)
        self.keys = tuple(mapper.get_property_by_column(c).key for c in model.__table__.columns)
        self.width = len(self.keys)
        self.id_at = self.keys.index("id")
        self.empty = tuple((r.key, [] if r.uselist else None) for r in mapper.relationships)
        self.identity = mapper.identity_key_from_primary_key((0,))[0]
        self.new = mapper.class_manager.new_instance

    def make(self, values: Any, **related: Any) -> Any:
        obj = self.new()
        attrs = obj.__dict__
        for key, empty in self.empty:
            attrs[key] = [] if empty is not None else None
        attrs.update(zip(self.keys, values, strict=False))
        attrs.update(related)
        obj._sa_instance_state.key = (self.identity, (values[self.id_at],), None)
        return obj


class PrototypeGet:
    """PROTOTYPE of a faster instance_get_by_uuid (default joins, user context)."""

    def __init__(self, db: Database) -> None:
        from dblayer.stores.nova import models as m

        t = tables()
        instances, caches = t["instances"], t["instance_info_caches"]
        links, groups, rules = (
            t["security_group_instance_association"],
            t["security_groups"],
            t["security_group_rules"],
        )
        self.db = db
        self.instance, self.cache = _Objects(m.Instance), _Objects(m.InstanceInfoCache)
        self.group, self.rule = _Objects(m.SecurityGroup), _Objects(m.SecurityGroupIngressRule)
        self.meta = _Objects(m.InstanceMetadata)
        self.sysmeta = _Objects(m.InstanceSystemMetadata)
        uuid = sa.bindparam("uuid")
        statements = {
            "instance": sa.select(*instances.columns, *caches.columns)
            .select_from(instances.outerjoin(caches, caches.c.instance_uuid == instances.c.uuid))
            .where(
                instances.c.uuid == uuid,
                live(instances),
                instances.c.project_id == sa.bindparam("project_id"),
            ),
            "groups": sa.select(*groups.columns, *rules.columns)
            .select_from(
                links.join(
                    groups,
                    sa.and_(groups.c.id == links.c.security_group_id, live(links), live(groups)),
                ).outerjoin(rules, sa.and_(rules.c.parent_group_id == groups.c.id, live(rules)))
            )
            .where(links.c.instance_uuid == uuid)
            .order_by(groups.c.id, rules.c.id),
            **{
                name: sa.select(*table.columns)
                .where(table.c.instance_uuid == uuid, live(table))
                .order_by(table.c.id)
                for name, table in (
                    ("metadata", t["instance_metadata"]),
                    ("system_metadata", t["instance_system_metadata"]),
                )
            },
        }
        dialect = db.engine.dialect
        self.q = {name: _Compiled(stmt, dialect) for name, stmt in statements.items()}

    def get(self, context: Any, uuid: str) -> Any:
        """The instance with its default joins, as model objects; None when not found."""
        with self.db.transaction(readonly=True) as conn:
            found = self.q["instance"].rows(conn, {"uuid": uuid, "project_id": context.project_id})
            if not found:
                return None
            by_uuid = {"uuid": uuid}
            group_rows = self.q["groups"].rows(conn, by_uuid)
            meta_rows = self.q["metadata"].rows(conn, by_uuid)
            sysmeta_rows = self.q["system_metadata"].rows(conn, by_uuid)
        row, width = found[0], self.instance.width
        cache = row[width:]
        groups: dict[Any, Any] = {}
        gwidth = self.group.width
        for r in group_rows:
            group = groups.get(r[self.group.id_at])
            if group is None:
                group = groups[r[self.group.id_at]] = self.group.make(r[:gwidth])
            if r[gwidth + self.rule.id_at] is not None:
                group.rules.append(self.rule.make(r[gwidth:]))
        return self.instance.make(
            row[:width],
            info_cache=self.cache.make(cache) if cache[self.cache.id_at] is not None else None,
            security_groups=list(groups.values()),
            metadata=[self.meta.make(r) for r in meta_rows],
            system_metadata=[self.sysmeta.make(r) for r in sysmeta_rows],
        )


def same_instance(ours: Any, raw: dict[str, Any]) -> bool:
    """Whether our model object and the raw dict hold the same values and children."""
    if any(ours[k] != v for k, v in raw.items() if not isinstance(v, list | dict)):
        return False
    cache = ours["info_cache"]
    if (cache is None) != (raw["info_cache"] is None):
        return False
    if cache is not None and any(cache[k] != v for k, v in raw["info_cache"].items()):
        return False
    for key in ("metadata", "system_metadata"):
        if sorted((m.key, m.value) for m in ours[key]) != sorted(
            (m["key"], m["value"]) for m in raw[key]
        ):
            return False
    ours_groups = [(g.id, sorted(r.id for r in g.rules)) for g in ours["security_groups"]]
    raw_groups = [(g["id"], sorted(r["id"] for r in g["rules"])) for g in raw["security_groups"]]
    return ours_groups == raw_groups


def run(ctx: Context) -> None:
    """Time instance_get_by_uuid against four hand-written queries per call."""
    from dblayer.stores.nova import instance_get_by_uuid

    size = ctx.n(INSTANCES)
    with nova_space(ctx) as space:
        uuids = load_instances(space.db, size)
        picker = random.Random(42)
        keys = [uuids[picker.randrange(size)] for _ in range(ctx.n(LOOKUPS))]
        warm = keys[: max(1, len(keys) // 10)]
        uctx = user_context()
        raw = RawGet(space)
        found = {"ours": 0, "raw": 0}

        def ours_side(batch: list[str]) -> None:
            hits = 0
            for key in batch:
                hits += instance_get_by_uuid(uctx, key) is not None
            found["ours"] = hits

        def raw_side(batch: list[str]) -> None:
            hits = 0
            for key in batch:
                hits += raw.get(key) is not None
            found["raw"] = hits

        try:
            ours_s, raw_s = measure(
                ctx,
                lambda: ours_side(keys),
                lambda: raw_side(keys),
                warm_ours=lambda: ours_side(warm),
                warm_raw=lambda: raw_side(warm),
            )
            mismatched = [
                k for k in keys[:50] if not same_instance(instance_get_by_uuid(uctx, k), raw.get(k))
            ]
            if os.environ.get("DBLAYER_BENCH_NOVA_PROTOTYPE") == "1":
                prototype(ctx, space, uctx, keys, warm, raw_side)
        finally:
            raw.conn.close()
    if found["ours"] != len(keys) or found["raw"] != len(keys) or mismatched:
        raise AssertionError(
            f"nova_instance_get found {found} of {len(keys)}; differing: {mismatched[:3]}"
        )
    ctx.report(
        Result(
            "nova_instance_get",
            ctx.backend.name,
            ours_s,
            raw_s,
            len(keys),
            "gets",
            TARGET,
            note=f"{size:,} instances",
        )
    )


def prototype(
    ctx: Context, space: Space, uctx: Any, keys: list[str], warm: list[str], raw_side: Any
) -> None:
    """Time the PROTOTYPE against raw (printed only; not a result of the case)."""
    proto = PrototypeGet(space.db)
    # It returns what the API returns.
    from dblayer.stores.nova import instance_get_by_uuid

    raw = RawGet(space)
    try:
        differing = [k for k in keys[:50] if not same_instance(proto.get(uctx, k), raw.get(k))]
        twins = [
            k for k in keys[:50] if dict(proto.get(uctx, k)) != dict(instance_get_by_uuid(uctx, k))
        ]
    finally:
        raw.conn.close()
    if differing or twins:
        raise AssertionError(f"prototype differs from raw {differing[:3]} / ours {twins[:3]}")

    def proto_side(batch: list[str]) -> None:
        for key in batch:
            proto.get(uctx, key)

    proto_s, raw_s = measure(
        ctx,
        lambda: proto_side(keys),
        lambda: raw_side(keys),
        warm_ours=lambda: proto_side(warm),
        warm_raw=lambda: raw_side(warm),
    )
    print(
        f"  PROTOTYPE nova_instance_get {ctx.backend.name}: prototype {proto_s:.4f}s "
        f"raw {raw_s:.4f}s ratio {proto_s / raw_s:.2f} (not the API)",
        flush=True,
    )

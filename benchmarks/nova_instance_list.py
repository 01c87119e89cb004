"""nova_instance_list: paging with ``instance_get_all_by_filters`` against hand-written SQL.

Filters ``{'project_id': PROJECT, 'deleted': False}``, ``sort_key='created_at'``,
``sort_dir='desc'``, ``limit=100``, the marker being the last uuid of the page before:
the first PAGES pages (200 at scale 1, 20,000 of the 100,000 instances), one transaction
per page. The raw side per page: the marker's (created_at, id) looked up by uuid
(project-scoped, live); the same keyset query (nova's live / not-soft-deleted filter,
ORDER BY created_at DESC, id DESC LIMIT 100), the page then LEFT JOINed to its info
caches; IN-queries for the security groups, metadata and system metadata of the page.
Each instance is a dict (with ``name``) holding its info cache dict and lists of dicts.

nova's schema has no index on (project_id, created_at): every page sorts the project's
live instances on both sides, which is database time, not library time.
"""

from __future__ import annotations

from typing import Any

from .nova_common import PROJECT, TARGET, Space, load_instances, nova_space, user_context
from .runner import Context, Result, measure, raw_connect, raw_transaction

INSTANCES = 100_000
PAGES = 200
PAGE = 100
FILTERS = {"project_id": PROJECT, "deleted": False}


class RawList:
    """A careful hand-written instance_get_all_by_filters for this filter set."""

    def __init__(self, space: Space) -> None:
        sql = space.sql
        m = sql.mark
        s = sql.shapes
        self.backend = space.backend
        self.sql = sql
        self.conn = raw_connect(space.backend)
        self.instance, self.cache = s["instances"], s["instance_info_caches"]
        self.group = s["security_groups"]
        self.meta, self.sysmeta = s["instance_metadata"], s["instance_system_metadata"]
        self.find_marker = (
            "SELECT created_at, id FROM instances "
            f"WHERE uuid = {m} AND deleted = 0 AND project_id = {m}"
        )
        # The page is cut (ORDER BY ... LIMIT) before the info caches are joined: joining
        # first would make the database join every instance of the project to sort them.
        head = (
            f"SELECT {self.instance.columns('i')} FROM instances i "
            "WHERE i.deleted = 0 AND (i.vm_state != 'soft-delete' OR i.vm_state IS NULL) "
            f"AND i.project_id = {m} "
        )
        order = "ORDER BY i.created_at DESC, i.id DESC"
        keyset = f"AND (i.created_at < {m} OR (i.created_at = {m} AND i.id < {m})) "

        def joined(page: str) -> str:
            return (
                f"SELECT {self.instance.columns('i')}, {self.cache.columns('c')} "
                f"FROM ({page}) i "
                f"LEFT OUTER JOIN instance_info_caches c ON c.instance_uuid = i.uuid {order}"
            )

        self.first_page = joined(f"{head}{order} LIMIT {PAGE}")
        self.next_page = joined(f"{head}{keyset}{order} LIMIT {PAGE}")
        self.groups_of = (
            f"SELECT a.instance_uuid, {self.group.columns('g')} "
            "FROM security_group_instance_association a "
            "JOIN security_groups g ON g.id = a.security_group_id AND g.deleted = 0 "
            "WHERE a.deleted = 0 AND a.instance_uuid IN ({})"
        )
        self.meta_of = (
            f"SELECT {self.meta.columns('m')} FROM instance_metadata m "
            "WHERE m.deleted = 0 AND m.instance_uuid IN ({})"
        )
        self.sysmeta_of = (
            f"SELECT {self.sysmeta.columns('m')} FROM instance_system_metadata m "
            "WHERE m.deleted = 0 AND m.instance_uuid IN ({})"
        )

    def page(self, marker: str | None) -> list[dict[str, Any]]:
        """One page after ``marker`` (a uuid), in its own transaction."""
        with raw_transaction(self.backend, self.conn) as cur:
            if marker is None:
                cur.execute(self.first_page, (PROJECT,))
            else:
                cur.execute(self.find_marker, (marker, PROJECT))
                found = cur.fetchone()
                if found is None:
                    raise LookupError(f"marker {marker} not found")
                created, ident = found
                cur.execute(self.next_page, (PROJECT, created, created, ident))
            width = self.instance.width
            out: list[dict[str, Any]] = []
            by_uuid: dict[str, dict[str, Any]] = {}
            for row in cur.fetchall():
                instance = self.instance.dict(row[:width])
                instance["name"] = f"instance-{instance['id']:08x}"
                cache = row[width:]
                instance["info_cache"] = (
                    self.cache.dict(cache) if cache[self.cache.id_at] is not None else None
                )
                instance["security_groups"] = []
                instance["metadata"] = []
                instance["system_metadata"] = []
                out.append(instance)
                by_uuid[instance["uuid"]] = instance
            if not out:
                return out
            uuids = list(by_uuid)
            marks = self.sql.marks(len(uuids))
            cur.execute(self.groups_of.format(marks), uuids)
            groups: dict[Any, dict[str, Any]] = {}
            group_id = 1 + self.group.id_at
            for row in cur.fetchall():
                group = groups.get(row[group_id])
                if group is None:
                    group = groups[row[group_id]] = self.group.dict(row[1:])
                by_uuid[row[0]]["security_groups"].append(group)
            for sql, shape, key in (
                (self.meta_of, self.meta, "metadata"),
                (self.sysmeta_of, self.sysmeta, "system_metadata"),
            ):
                cur.execute(sql.format(marks), uuids)
                for row in cur.fetchall():
                    item = shape.dict(row)
                    by_uuid[item["instance_uuid"]][key].append(item)
            return out


def run(ctx: Context) -> None:
    """Time PAGES pages of instance_get_all_by_filters against the hand-written pages."""
    from dblayer.stores.nova import instance_get_all_by_filters

    size = ctx.n(INSTANCES)
    pages = min(ctx.n(PAGES), -(-size // PAGE))
    uctx = user_context()
    seen: dict[str, list[str]] = {"ours": [], "raw": []}

    def ours_side(count: int) -> None:
        marker = None
        got: list[str] = []
        for _ in range(count):
            rows = instance_get_all_by_filters(
                uctx, FILTERS, sort_key="created_at", sort_dir="desc", limit=PAGE, marker=marker
            )
            if not rows:
                break
            marker = rows[-1]["uuid"]
            got.append(marker)
        seen["ours"] = got

    with nova_space(ctx) as space:
        load_instances(space.db, size)
        raw = RawList(space)

        def raw_side(count: int) -> None:
            marker = None
            got: list[str] = []
            for _ in range(count):
                rows = raw.page(marker)
                if not rows:
                    break
                marker = rows[-1]["uuid"]
                got.append(marker)
            seen["raw"] = got

        warm = max(1, pages // 10)
        try:
            ours_s, raw_s = measure(
                ctx,
                lambda: ours_side(pages),
                lambda: raw_side(pages),
                warm_ours=lambda: ours_side(warm),
                warm_raw=lambda: raw_side(warm),
            )
            ours_first = instance_get_all_by_filters(
                uctx, FILTERS, sort_key="created_at", sort_dir="desc", limit=PAGE
            )
            raw_first = raw.page(None)
        finally:
            raw.conn.close()
    same_first = [r["uuid"] for r in ours_first] == [r["uuid"] for r in raw_first] and all(
        len(o["metadata"]) == len(r["metadata"]) == 2
        and len(o["system_metadata"]) == len(r["system_metadata"]) == 3
        and len(o["security_groups"]) == len(r["security_groups"]) == 1
        for o, r in zip(ours_first, raw_first, strict=True)
    )
    if seen["ours"] != seen["raw"] or len(seen["ours"]) != pages or not same_first:
        raise AssertionError(
            f"nova_instance_list: pages differ ({len(seen['ours'])} / {len(seen['raw'])} "
            f"of {pages}, first page same: {same_first})"
        )
    ctx.report(
        Result(
            "nova_instance_list",
            ctx.backend.name,
            ours_s,
            raw_s,
            pages,
            "pages",
            TARGET,
            note=f"{pages * PAGE:,} of {size:,} instances, {PAGE}/page",
        )
    )

"""Marker paging of instance_get_all_by_filters over 1,000 instances, on every backend.

Walking the pages (97 rows each) by marker returns every instance exactly once and in
order [sort_key, created_at, id], in both directions, for nullable sort keys with NULLs
and ties too (NULL sorts as the smallest value, unlike nova, whose paging lost them).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from dblayer.core import Database
from dblayer.stores import nova
from dblayer.stores.nova import exception
from dblayer.stores.nova.models import Instance, InstanceMetadata

COUNT = 1000
PAGE = 97
BASE = dt.datetime(2014, 7, 23, 10, 0, 0)
KEYS = ("id", "uuid", "project_id", "display_name", "host", "launched_at", "created_at", "progress")


def _row(i: int) -> dict:
    return {
        "uuid": str(uuid.uuid4()),
        "project_id": "project1" if i % 3 else "project2",
        "user_id": "user1",
        # Ties everywhere, and NULLs in every nullable sort key.
        "display_name": None if i % 11 == 0 else f"server-{i % 37:02d}",
        "host": None if i % 5 == 0 else f"host-{i % 7}",
        "launched_at": None if i % 4 == 0 else BASE + dt.timedelta(minutes=i % 13, microseconds=7),
        "created_at": BASE + dt.timedelta(seconds=i % 50, microseconds=i % 3),
        "progress": None if i % 6 == 0 else i % 9,
        "vm_state": "active",
    }


@pytest.fixture
def thousand(nova_db: Database) -> list[dict]:
    """1,000 instances inserted in one bulk INSERT; their rows as stored (ids included)."""
    table = Instance.__table__
    with nova_db.transaction() as conn:
        conn.execute(sa.insert(table), [_row(i) for i in range(COUNT)])
        # A metadata row for some, to see the default fill survive paging.
        uuids = conn.execute(sa.select(table.c.uuid).where(table.c.id % 10 == 0)).scalars()
        conn.execute(
            sa.insert(InstanceMetadata.__table__),
            [{"instance_uuid": u, "key": "k", "value": u} for u in uuids],
        )
        rows = conn.execute(sa.select(*(table.c[k] for k in KEYS))).mappings()
        return [dict(r) for r in rows]


def _expected(rows: list[dict], key: str, descending: bool) -> list[str]:
    """The uuids in order [key, created_at, id], NULL the smallest value."""

    def order(r: dict) -> tuple:
        value = r[key]
        return ((value is not None, value), r["created_at"], r["id"])

    return [r["uuid"] for r in sorted(rows, key=order, reverse=descending)]


def _walk(context, filters: dict, key: str, direction: str, **kwargs) -> list[dict]:
    """Every page by marker until a short page; the rows in the order they came."""
    seen: list[dict] = []
    marker = None
    while True:
        page = nova.instance_get_all_by_filters(
            context, filters, sort_key=key, sort_dir=direction, limit=PAGE, marker=marker, **kwargs
        )
        assert len(page) <= PAGE
        seen.extend(page)
        if len(page) < PAGE:
            return seen
        marker = page[-1]["uuid"]


@pytest.mark.parametrize("key", ["display_name", "host", "launched_at", "progress", "created_at"])
def test_pages_return_every_instance_once_and_in_order(thousand, admin, key):
    for direction in ("asc", "desc"):
        walked = [r["uuid"] for r in _walk(admin, {}, key, direction, columns_to_join=[])]
        expected = _expected(thousand, key, direction == "desc")
        assert len(walked) == len(set(walked)) == COUNT
        assert walked == expected


def test_default_order_pages_with_the_default_joins(thousand, admin):
    walked = _walk(admin, {}, "created_at", "desc")
    assert [r["uuid"] for r in walked] == _expected(thousand, "created_at", True)
    with_metadata = [r for r in walked if r["metadata"]]
    assert len(with_metadata) == COUNT // 10
    assert all(r["metadata"][0]["value"] == r["uuid"] for r in with_metadata)
    assert all(r["system_metadata"] == [] and r["info_cache"] is None for r in walked)


def test_a_user_pages_through_its_projects_filtered_instances(thousand, ctx):
    hosts = ["host-1", "host-2", None]
    walked = [r["uuid"] for r in _walk(ctx, {"host": hosts}, "host", "asc")]
    mine = [r for r in thousand if r["project_id"] == "project1" and r["host"] in hosts]
    assert len(walked) == len(set(walked)) == len(mine)
    assert walked == _expected(mine, "host", False)


def test_an_unknown_marker_is_marker_not_found(thousand, admin, ctx):
    missing = str(uuid.uuid4())
    with pytest.raises(exception.MarkerNotFound) as caught:
        nova.instance_get_all_by_filters(admin, {}, limit=PAGE, marker=missing)
    assert missing in str(caught.value)
    # Another project's instance is no marker for a user.
    theirs = next(r["uuid"] for r in thousand if r["project_id"] == "project2")
    with pytest.raises(exception.MarkerNotFound):
        nova.instance_get_all_by_filters(ctx, {}, limit=PAGE, marker=theirs)

"""archive_deleted_rows / archive_deleted_rows_for_table: soft-deleted rows move to the
shadow tables with identical values, children before parents; live rows stay."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import InvalidQuery
from dblayer.stores.nova import exception, models
from dblayer.stores.nova.api.archive import archive_deleted_rows_before

OWNED = (
    "instance_metadata",
    "instance_system_metadata",
    "instance_info_caches",
    "instance_faults",
    "instance_actions",
    "instance_actions_events",
)


def _instance(ctx, name: str) -> str:
    instance = nova.instance_create(
        ctx,
        {
            "display_name": name,
            "host": "h1",
            "metadata": {"m1": "a", "m2": "b"},
            "system_metadata": {"s1": "x"},
            "info_cache": {"network_info": "[]"},
        },
    )
    nova.instance_fault_create(ctx, {"instance_uuid": instance.uuid, "code": 500, "message": "m"})
    nova.action_start(
        ctx,
        {
            "instance_uuid": instance.uuid,
            "request_id": f"req-{name}",
            "action": "create",
            "start_time": dt.datetime(2014, 7, 1),
        },
    )
    nova.action_event_start(
        ctx,
        {
            "instance_uuid": instance.uuid,
            "request_id": f"req-{name}",
            "event": "spawn",
            "start_time": dt.datetime(2014, 7, 1),
        },
    )
    return instance.uuid


def _rows(db, table_name: str) -> dict[int, dict]:
    table = models.BASE.metadata.tables[table_name]
    with db.transaction() as conn:
        return {r._mapping["id"]: dict(r._mapping) for r in conn.execute(sa.select(table))}


def _by_instance(db, table_name: str, instance_uuid: str) -> list[dict]:
    if table_name.endswith("instance_actions_events"):
        prefix = table_name[: -len("instance_actions_events")]
        actions = {a["id"] for a in _by_instance(db, prefix + "instance_actions", instance_uuid)}
        return [r for r in _rows(db, table_name).values() if r["action_id"] in actions]
    key = "uuid" if table_name.endswith("instances") else "instance_uuid"
    return [r for r in _rows(db, table_name).values() if r[key] == instance_uuid]


def _shadow_by_instance(db, table_name: str, instance_uuid: str) -> list[dict]:
    return _by_instance(db, "shadow_" + table_name, instance_uuid)


def test_deleted_instances_and_what_they_own_move_with_identical_values(nova_db, ctx, admin):
    keep = _instance(ctx, "keep")
    gone = _instance(ctx, "gone")
    nova.instance_destroy(ctx, gone)
    before = {name: _by_instance(nova_db, name, gone) for name in (*OWNED, "instances")}
    live_before = {name: _by_instance(nova_db, name, keep) for name in (*OWNED, "instances")}
    assert all(before[name] for name in before)

    moved = nova.archive_deleted_rows(admin, max_rows=1000)

    assert moved == sum(len(rows) for rows in before.values())
    for name, rows in before.items():
        shadow = _shadow_by_instance(nova_db, name, gone)
        by_id = {r["id"]: r for r in shadow}
        for row in rows:
            expected = dict(row)
            if name != "instances" and expected["deleted"] == 0:
                # Owned rows still live under the deleted instance were retired first.
                assert by_id[row["id"]]["deleted"] == row["id"]
                assert by_id[row["id"]]["deleted_at"] is not None
                expected["deleted"] = row["id"]
                expected["deleted_at"] = by_id[row["id"]]["deleted_at"]
            assert by_id[row["id"]] == expected
        assert _by_instance(nova_db, name, gone) == []
    for name, rows in live_before.items():
        assert _by_instance(nova_db, name, keep) == rows
        assert _shadow_by_instance(nova_db, name, keep) == []
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_get_by_uuid(ctx.elevated(read_deleted="yes"), gone)
    assert nova.instance_get_by_uuid(ctx, keep).display_name == "keep"
    assert nova.archive_deleted_rows(admin, max_rows=1000) == 0


def test_max_rows_bounds_the_total(nova_db, ctx, admin):
    for n in range(3):
        nova.instance_destroy(ctx, _instance(ctx, f"i{n}"))
    total = sum(len(_rows(nova_db, name)) for name in (*OWNED, "instances"))
    moved = nova.archive_deleted_rows(admin, max_rows=5)
    assert moved == 5
    left = sum(len(_rows(nova_db, name)) for name in (*OWNED, "instances"))
    assert left == total - 5
    assert nova.archive_deleted_rows(admin) == total - 5  # None: no limit
    assert sum(len(_rows(nova_db, name)) for name in (*OWNED, "instances")) == 0


def test_archive_one_table(nova_db, ctx, admin):
    instance_uuid = _instance(ctx, "one")
    nova.instance_metadata_delete(ctx, instance_uuid, "m1")
    assert nova.archive_deleted_rows_for_table(admin, "instance_metadata") == 1
    assert [r["key"] for r in _shadow_by_instance(nova_db, "instance_metadata", instance_uuid)] == [
        "m1"
    ]
    assert nova.instance_metadata_get(ctx, instance_uuid) == {"m2": "b"}
    # A deleted instance whose owned rows are still live: they are retired and archived first,
    # so the instance can move too.
    nova.instance_destroy(ctx, instance_uuid)
    assert nova.archive_deleted_rows_for_table(admin, "instances") == 0
    nova.archive_deleted_rows(admin)
    assert _by_instance(nova_db, "instances", instance_uuid) == []


def test_archive_rejects_bad_arguments_and_users(nova_db, ctx, admin):
    with pytest.raises(exception.AdminRequired):
        nova.archive_deleted_rows(ctx, 10)
    with pytest.raises(exception.AdminRequired):
        nova.archive_deleted_rows_for_table(ctx, "instances", 10)
    with pytest.raises(InvalidQuery, match="unknown table"):
        nova.archive_deleted_rows_for_table(admin, "instances; DROP TABLE x", 10)
    for bad in (-1, "10", 1.5, True):
        with pytest.raises(InvalidQuery, match="max_rows"):
            nova.archive_deleted_rows(admin, bad)


def test_tables_without_deleted_rows_archive_nothing(nova_db, ctx, admin):
    _instance(ctx, "alive")
    assert nova.archive_deleted_rows(admin, 100) == 0
    assert nova.archive_deleted_rows_for_table(admin, "dns_domains", 100) == 0
    assert nova.archive_deleted_rows_for_table(admin, "volumes", 100) == 0
    assert uuid.UUID(nova.instance_get_all(ctx)[0]["uuid"])


CHILDREN_FIRST = (
    "instance_actions_events",
    "instance_actions",
    "instance_faults",
    "instance_metadata",
    "instance_system_metadata",
    "instance_info_caches",
    "instances",
)


def test_before_moves_only_what_was_deleted_earlier(nova_db, ctx, admin):
    old, new = _instance(ctx, "old"), _instance(ctx, "new")
    nova.instance_destroy(ctx, old)
    nova.instance_destroy(ctx, new)
    long_ago = dt.datetime(2020, 1, 1, 12, 0, 0, 5)
    # "old" was destroyed long ago, with the rows destroyed along with it.
    for name in (*OWNED, "instances"):
        table = models.BASE.metadata.tables[name]
        ids = [r["id"] for r in _by_instance(nova_db, name, old) if r["deleted"]]
        with nova_db.transaction() as conn:
            conn.execute(sa.update(table).where(table.c.id.in_(ids)).values(deleted_at=long_ago))
    old_rows = {name: _by_instance(nova_db, name, old) for name in CHILDREN_FIRST}
    new_rows = {name: _by_instance(nova_db, name, new) for name in CHILDREN_FIRST}
    cutoff = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)

    moved = sum(archive_deleted_rows_before(admin, name, cutoff) for name in CHILDREN_FIRST)

    assert moved == sum(len(rows) for rows in old_rows.values())
    for name in CHILDREN_FIRST:
        assert _by_instance(nova_db, name, old) == []
        shadow = _shadow_by_instance(nova_db, name, old)
        assert sorted(r["id"] for r in shadow) == sorted(r["id"] for r in old_rows[name])
        # The rows still live under "old" died with it: deleted when it was.
        assert {r["deleted_at"] for r in shadow} == {long_ago}
        assert _shadow_by_instance(nova_db, name, new) == []
        assert {r["id"] for r in _by_instance(nova_db, name, new)} == {
            r["id"] for r in new_rows[name]
        }
    assert sum(archive_deleted_rows_before(admin, n, cutoff) for n in CHILDREN_FIRST) == 0
    assert nova.archive_deleted_rows(admin) == sum(len(rows) for rows in new_rows.values())
    assert all(_by_instance(nova_db, name, new) == [] for name in CHILDREN_FIRST)


def test_before_rejects_bad_arguments_and_users(nova_db, ctx, admin):
    gone = _instance(ctx, "gone")
    nova.instance_destroy(ctx, gone)
    with pytest.raises(exception.AdminRequired):
        archive_deleted_rows_before(ctx, "instances", dt.datetime(2030, 1, 1))
    for bad in ("2030-01-01", dt.date(2030, 1, 1), 0):
        with pytest.raises(InvalidQuery, match="before"):
            archive_deleted_rows_before(admin, "instance_metadata", bad)
    with pytest.raises(InvalidQuery, match="unknown table"):
        archive_deleted_rows_before(admin, "nope", None)
    assert _shadow_by_instance(nova_db, "instance_metadata", gone) == []

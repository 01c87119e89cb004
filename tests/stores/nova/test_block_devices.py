"""Block device mappings (nova notes §3.16, §2.21): legacy conversion, update_or_create's
swap rule, reads, soft deletes, on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, models
from dblayer.stores.nova.api import block_device_format as fmt
from dblayer.stores.nova.context import RequestContext
from tests.concurrency import run_processes
from tests.stores.nova.conftest import make_instance, table_rows

BDM = models.BlockDeviceMapping


def rows(db: Database) -> list[dict]:
    """Every row (deleted ones too), as dicts, by id."""
    return table_rows(db, BDM)


def live_ids(db: Database) -> list[int]:
    return [r["id"] for r in rows(db) if r["deleted"] == 0]


def volume(inst: str, device: str = "/dev/vdb", volume_id: str = "vol-1", **more) -> dict:
    """New-format values of a volume attached to ``inst``."""
    return {
        "instance_uuid": inst,
        "device_name": device,
        "source_type": "volume",
        "destination_type": "volume",
        "volume_id": volume_id,
        **more,
    }


# -- the legacy format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        (
            {"virtual_name": "swap", "device_name": "sdb", "volume_size": 1},
            {
                "source_type": "blank",
                "destination_type": "local",
                "guest_format": "swap",
                "delete_on_termination": True,
                "device_name": "/dev/sdb",
                "volume_size": 1,
            },
        ),
        (
            {"virtual_name": "ephemeral0", "device_name": "/dev/sdc"},
            {
                "source_type": "blank",
                "destination_type": "local",
                "guest_format": fmt.DEFAULT_EPHEMERAL_FORMAT,
                "delete_on_termination": True,
                "device_name": "/dev/sdc",
            },
        ),
        (
            {
                "snapshot_id": "snap-1",
                "volume_size": "10",
                "device_name": "vda",
                "delete_on_termination": "yes",
            },
            {
                "source_type": "snapshot",
                "destination_type": "volume",
                "snapshot_id": "snap-1",
                "volume_size": 10,
                "delete_on_termination": True,
                "device_name": "/dev/vda",
            },
        ),
        (
            {
                "volume_id": "vol-1",
                "device_name": "vdb",
                "connection_info": "{}",
                "delete_on_termination": "0",
            },
            {
                "source_type": "volume",
                "destination_type": "volume",
                "volume_id": "vol-1",
                "connection_info": "{}",
                "delete_on_termination": False,
            },
        ),
        (
            {"no_device": True, "device_name": "vdd"},
            {"no_device": True, "source_type": None, "device_name": "/dev/vdd"},
        ),
    ],
)
def test_create_converts_the_legacy_format(nova_db, ctx, legacy, expected):
    inst = make_instance(nova_db)
    bdm = nova.block_device_mapping_create(ctx, {"instance_uuid": inst, **legacy})
    [stored] = rows(nova_db)
    for key, value in expected.items():
        assert bdm[key] == value, key
        assert stored[key] == value, key
    assert stored["instance_uuid"] == inst
    # What a legacy mapping cannot say is left to the column defaults.
    assert stored["boot_index"] is None and stored["image_id"] is None


def test_the_conversion_drops_legacy_only_keys_and_leaves_non_computable_fields_out():
    new = fmt.from_legacy({"virtual_name": "swap", "device_name": "sdb", "what": 1})
    assert "virtual_name" not in new and "what" not in new
    assert new["guest_format"] == "swap"
    assert not {"boot_index", "disk_bus", "device_type"} & new.keys()
    assert new["image_id"] is None and new["snapshot_id"] is None
    assert "guest_format" not in fmt.from_legacy({"volume_id": "v"})


@pytest.mark.parametrize(
    "legacy",
    [
        {"virtual_name": "ami", "device_name": "sda"},  # says nothing nova can convert
        {"device_name": "vdb"},
        {"volume_id": "v", "device_name": "vd b"},
        {"volume_id": "v", "device_name": ""},
        {"volume_id": "v", "device_name": 5},
        {"volume_id": "v", "volume_size": "big"},
        {"volume_id": "v", "volume_size": -1},
        {"volume_id": "v", "virtual_name": 7},
    ],
)
def test_unconvertible_legacy_values_are_invalid_bdm_format(nova_db, ctx, legacy):
    inst = make_instance(nova_db)
    values = {"instance_uuid": inst, **legacy}
    with pytest.raises(exception.InvalidBDMFormat):
        nova.block_device_mapping_create(ctx, values)
    if not fmt.is_safe_for_update(values):  # a safe subset goes to the update unconverted
        with pytest.raises(exception.InvalidBDMFormat):
            nova.block_device_mapping_update_or_create(ctx, values)
    assert rows(nova_db) == []


def test_an_empty_volume_size_is_dropped_and_the_callers_dict_kept(nova_db, ctx):
    inst = make_instance(nova_db)
    values = {"instance_uuid": inst, "volume_id": "v", "device_name": "vdb", "volume_size": ""}
    original = dict(values)
    nova.block_device_mapping_create(ctx, values)
    assert values == original
    assert rows(nova_db)[0]["volume_size"] is None


def test_create_in_the_new_format_stores_values_as_given(nova_db, ctx):
    inst = make_instance(nova_db)
    bdm = nova.block_device_mapping_create(
        ctx, volume(inst, "vdb", boot_index=0, disk_bus="virtio"), legacy=False
    )
    [stored] = rows(nova_db)
    assert stored["id"] == bdm.id and stored["device_name"] == "vdb"  # no /dev/ added
    assert (stored["boot_index"], stored["disk_bus"]) == (0, "virtio")
    assert stored["delete_on_termination"] is False  # the column default


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"virtual_name": "swap"}, InvalidQuery),  # a legacy key given as new format
        ({"boot_index": "first"}, InvalidValue),
        ({"volume_id": "v" * 37}, InvalidValue),
        ({"no_device": "maybe"}, InvalidValue),
    ],
)
def test_create_rejects_bad_new_format_values(nova_db, ctx, values, error):
    inst = make_instance(nova_db)
    with pytest.raises(error):
        nova.block_device_mapping_create(ctx, {"instance_uuid": inst, **values}, legacy=False)
    assert rows(nova_db) == []


def test_create_for_an_unknown_instance_is_instance_not_found(nova_db, ctx):
    with pytest.raises(exception.InstanceNotFound):
        nova.block_device_mapping_create(ctx, volume(str(uuid.uuid4())), legacy=False)
    assert rows(nova_db) == []


def test_user_calls_refuse_an_incomplete_context(nova_db, ctx):
    inst = make_instance(nova_db)
    bdm = nova.block_device_mapping_create(ctx, volume(inst), legacy=False)
    before = rows(nova_db)
    nobody = RequestContext("user1", None)
    calls = [
        lambda: nova.block_device_mapping_create(nobody, volume(inst), legacy=False),
        lambda: nova.block_device_mapping_update(nobody, bdm.id, {"volume_size": 3}),
        lambda: nova.block_device_mapping_get_all_by_instance(nobody, inst),
        lambda: nova.block_device_mapping_get_by_volume_id(nobody, "vol-1"),
        lambda: nova.block_device_mapping_destroy(nobody, bdm.id),
        lambda: nova.block_device_mapping_destroy_by_instance_and_device(nobody, inst, "/dev/vdb"),
        lambda: nova.block_device_mapping_destroy_by_instance_and_volume(nobody, inst, "vol-1"),
    ]
    for call in calls:
        with pytest.raises(exception.Forbidden):
            call()
    assert rows(nova_db) == before


# -- update ----------------------------------------------------------------------------------


def test_update_with_a_safe_subset_leaves_the_other_fields(nova_db, ctx):
    inst = make_instance(nova_db)
    bdm = nova.block_device_mapping_create(ctx, volume(inst, boot_index=0), legacy=False)
    updated = nova.block_device_mapping_update(ctx, bdm.id, {"connection_info": '{"a": 1}'})
    assert updated.id == bdm.id and updated.connection_info == '{"a": 1}'
    [stored] = rows(nova_db)
    assert stored["volume_id"] == "vol-1" and stored["boot_index"] == 0
    assert stored["connection_info"] == '{"a": 1}' and stored["updated_at"] is not None


def test_update_with_legacy_values_converts_them(nova_db, ctx):
    inst = make_instance(nova_db)
    bdm = nova.block_device_mapping_create(ctx, volume(inst, boot_index=1), legacy=False)
    nova.block_device_mapping_update(ctx, bdm.id, {"virtual_name": "swap", "device_name": "vdz"})
    [stored] = rows(nova_db)
    assert (stored["source_type"], stored["destination_type"], stored["guest_format"]) == (
        "blank",
        "local",
        "swap",
    )
    # The converted dict sets the new-format fields to None, except the non-computable ones.
    assert stored["volume_id"] is None and stored["device_name"] == "/dev/vdz"
    assert stored["boot_index"] == 1


def test_update_of_a_missing_or_deleted_mapping_is_none_and_changes_nothing(nova_db, ctx):
    inst = make_instance(nova_db)
    bdm = nova.block_device_mapping_create(ctx, volume(inst), legacy=False)
    assert nova.block_device_mapping_update(ctx, bdm.id + 100, {"volume_size": 5}) is None
    nova.block_device_mapping_destroy(ctx, bdm.id)
    before = rows(nova_db)
    assert nova.block_device_mapping_update(ctx, bdm.id, {"volume_size": 5}) is None
    assert rows(nova_db) == before
    ctx.read_deleted = "yes"
    assert nova.block_device_mapping_update(ctx, bdm.id, {"volume_size": 5}).volume_size == 5


def test_update_rejects_bad_values_and_changes_nothing(nova_db, ctx):
    inst = make_instance(nova_db)
    bdm = nova.block_device_mapping_create(ctx, volume(inst), legacy=False)
    before = rows(nova_db)
    with pytest.raises(InvalidQuery):
        nova.block_device_mapping_update(ctx, bdm.id, {"virtual_name": "swap"}, legacy=False)
    with pytest.raises(exception.InvalidBDMFormat):
        nova.block_device_mapping_update(ctx, bdm.id, {"virtual_name": "ami"})
    with pytest.raises(InvalidValue):
        nova.block_device_mapping_update(ctx, bdm.id, {"volume_size": "ten"}, legacy=False)
    with pytest.raises(exception.InstanceNotFound):
        nova.block_device_mapping_update(ctx, bdm.id, {"instance_uuid": str(uuid.uuid4())})
    with pytest.raises(InvalidValue):
        nova.block_device_mapping_update(ctx, "1", {"volume_size": 1})
    assert rows(nova_db) == before


# -- update_or_create ------------------------------------------------------------------------


def test_update_or_create_updates_the_mapping_of_the_device(nova_db, ctx):
    inst = make_instance(nova_db)
    first = nova.block_device_mapping_update_or_create(ctx, volume(inst), legacy=False)
    again = nova.block_device_mapping_update_or_create(
        ctx, volume(inst, volume_id="vol-2"), legacy=False
    )
    assert again.id == first.id and again.volume_id == "vol-2"
    other = nova.block_device_mapping_update_or_create(ctx, volume(inst, "/dev/vdc"), legacy=False)
    assert other.id != first.id
    assert [(r["device_name"], r["volume_id"]) for r in rows(nova_db)] == [
        ("/dev/vdb", "vol-2"),
        ("/dev/vdc", "vol-1"),
    ]


def test_update_or_create_converts_legacy_values_first(nova_db, ctx):
    inst = make_instance(nova_db)
    created = nova.block_device_mapping_update_or_create(
        ctx, {"instance_uuid": inst, "device_name": "vdb", "virtual_name": "swap"}
    )
    assert created.device_name == "/dev/vdb" and created.guest_format == "swap"
    # 'vdb' becomes '/dev/vdb' again, so the same device finds the same row.
    again = nova.block_device_mapping_update_or_create(
        ctx, {"instance_uuid": inst, "device_name": "vdb", "virtual_name": "ephemeral0"}
    )
    assert again.id == created.id and again.guest_format == fmt.DEFAULT_EPHEMERAL_FORMAT
    # Keys that mean the same in both formats are used as they are (no /dev/ added).
    safe = nova.block_device_mapping_update_or_create(
        ctx, {"instance_uuid": inst, "device_name": "vdc", "volume_id": "vol-1"}
    )
    assert safe.device_name == "vdc" and safe.source_type is None
    assert [r["device_name"] for r in rows(nova_db)] == ["/dev/vdb", "vdc"]


def test_an_empty_device_name_always_creates(nova_db, ctx):
    inst = make_instance(nova_db)
    for _ in range(2):
        nova.block_device_mapping_update_or_create(ctx, volume(inst, ""), legacy=False)
    assert len(live_ids(nova_db)) == 2


def test_a_new_swap_replaces_the_instance_other_swaps(nova_db, ctx):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    swap = {"virtual_name": "swap"}
    old = nova.block_device_mapping_create(
        ctx, {"instance_uuid": inst, "device_name": "sdb", **swap}
    )
    keep = nova.block_device_mapping_create(ctx, volume(inst, "/dev/sdd"), legacy=False)
    theirs = nova.block_device_mapping_create(
        ctx, {"instance_uuid": other, "device_name": "sdb", **swap}
    )
    new = nova.block_device_mapping_update_or_create(
        ctx, {"instance_uuid": inst, "device_name": "sdc", **swap}
    )
    assert set(live_ids(nova_db)) == {keep.id, theirs.id, new.id}
    deleted = [r for r in rows(nova_db) if r["id"] == old.id][0]
    assert deleted["deleted"] == old.id and deleted["deleted_at"] is not None


def test_update_or_create_rejected_changes_nothing(nova_db, ctx):
    inst = make_instance(nova_db)
    nova.block_device_mapping_create(ctx, volume(inst), legacy=False)
    before = rows(nova_db)
    with pytest.raises(InvalidQuery, match="device_name"):
        nova.block_device_mapping_update_or_create(
            ctx, {"instance_uuid": inst, "volume_id": "v"}, legacy=False
        )
    with pytest.raises(InvalidQuery, match="instance_uuid"):
        nova.block_device_mapping_update_or_create(ctx, {"device_name": "/dev/x"}, legacy=False)
    with pytest.raises(exception.InstanceNotFound):
        nova.block_device_mapping_update_or_create(ctx, volume(str(uuid.uuid4())), legacy=False)
    assert rows(nova_db) == before


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def _attach(_db: Any, inst: str, devices: list[str], volume_id: str) -> int:
    """update_or_create a volume on each device, then a swap disk; return how many calls."""
    ctx = RequestContext("user1", "project1")
    for device in devices:
        nova.block_device_mapping_update_or_create(
            ctx, {"instance_uuid": inst, "device_name": device, "volume_id": volume_id}
        )
    nova.block_device_mapping_update_or_create(
        ctx, {"instance_uuid": inst, "device_name": f"swap-{volume_id}", "virtual_name": "swap"}
    )
    return len(devices) + 1


def test_racing_update_or_create_calls_leave_one_row_per_device_and_one_swap(nova_url):
    db = nova.get_database()
    inst = make_instance(db)
    devices = [f"vd{c}" for c in "bcdefg"]
    done = run_processes(
        partial(_nova_on, nova_url), _attach, [(inst, devices, "vol-a"), (inst, devices, "vol-b")]
    )
    assert done == [7, 7]
    live = [r for r in rows(db) if r["deleted"] == 0]
    volumes = sorted(r["device_name"] for r in live if r["source_type"] != "blank")
    assert volumes == sorted(devices)  # each device updated in turn, never inserted twice
    assert len([r for r in live if fmt.is_swap(r)]) == 1


def test_update_or_create_makes_no_access_check(nova_db):
    inst = make_instance(nova_db)
    bdm = nova.block_device_mapping_update_or_create(
        RequestContext(None, None), volume(inst), legacy=False
    )
    assert live_ids(nova_db) == [bdm.id]


# -- reads -----------------------------------------------------------------------------------


def test_get_all_by_instance(nova_db, ctx):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    a = nova.block_device_mapping_create(ctx, volume(inst, "/dev/vdb"), legacy=False)
    b = nova.block_device_mapping_create(ctx, volume(inst, "/dev/vdc"), legacy=False)
    nova.block_device_mapping_create(ctx, volume(other), legacy=False)
    got = nova.block_device_mapping_get_all_by_instance(ctx, inst)
    assert [x.id for x in got] == [a.id, b.id]
    assert got[0]["volume_id"] == "vol-1" and dict(got[0])["device_name"] == "/dev/vdb"
    nova.block_device_mapping_destroy(ctx, a.id)
    assert [x.id for x in nova.block_device_mapping_get_all_by_instance(ctx, inst, True)] == [b.id]
    ctx.read_deleted = "yes"
    assert len(nova.block_device_mapping_get_all_by_instance(ctx, inst, use_slave=True)) == 2
    assert nova.block_device_mapping_get_all_by_instance(ctx, str(uuid.uuid4())) == []


def test_get_by_volume_id(nova_db, ctx):
    inst = make_instance(nova_db, hostname="vm1")
    bdm = nova.block_device_mapping_create(ctx, volume(inst, volume_id="vol-9"), legacy=False)
    got = nova.block_device_mapping_get_by_volume_id(ctx, "vol-9")
    assert got.id == bdm.id and got.instance is None  # not joined: never lazy-loads
    joined = nova.block_device_mapping_get_by_volume_id(ctx, "vol-9", ["instance"])
    assert joined.instance.uuid == inst and joined.instance.hostname == "vm1"
    assert nova.block_device_mapping_get_by_volume_id(ctx, "vol-0") is None
    nova.block_device_mapping_destroy(ctx, bdm.id)
    assert nova.block_device_mapping_get_by_volume_id(ctx, "vol-9") is None
    ctx.read_deleted = "yes"
    assert nova.block_device_mapping_get_by_volume_id(ctx, "vol-9").id == bdm.id
    with pytest.raises(InvalidQuery, match="allowed: instance"):
        nova.block_device_mapping_get_by_volume_id(ctx, "vol-9", ["metadata"])
    with pytest.raises(InvalidQuery):
        nova.block_device_mapping_get_by_volume_id(ctx, "vol-9", "instance")


# -- destroys --------------------------------------------------------------------------------


def test_destroy_soft_deletes_one_mapping(nova_db, ctx):
    inst = make_instance(nova_db)
    a = nova.block_device_mapping_create(ctx, volume(inst, "/dev/vdb"), legacy=False)
    b = nova.block_device_mapping_create(ctx, volume(inst, "/dev/vdc"), legacy=False)
    assert nova.block_device_mapping_destroy(ctx, a.id) is None
    assert live_ids(nova_db) == [b.id]
    gone = rows(nova_db)[0]
    assert gone["deleted"] == a.id and gone["deleted_at"] is not None
    nova.block_device_mapping_destroy(ctx, a.id)  # again, and a missing id: no error
    nova.block_device_mapping_destroy(ctx, 12345)
    assert rows(nova_db)[0] == gone


def test_destroy_by_instance_and_device(nova_db, ctx):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    a = nova.block_device_mapping_create(ctx, volume(inst, "/dev/vdb"), legacy=False)
    b = nova.block_device_mapping_create(ctx, volume(inst, "/dev/vdc"), legacy=False)
    c = nova.block_device_mapping_create(ctx, volume(other, "/dev/vdb"), legacy=False)
    nova.block_device_mapping_destroy_by_instance_and_device(ctx, inst, "/dev/vdb")
    assert live_ids(nova_db) == [b.id, c.id]
    nova.block_device_mapping_destroy_by_instance_and_device(ctx, inst, "/dev/nope")
    assert live_ids(nova_db) == [b.id, c.id]
    assert a.id not in live_ids(nova_db)


def test_destroy_by_instance_and_volume(nova_db, ctx):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    a = nova.block_device_mapping_create(ctx, volume(inst, "/dev/vdb", "v1"), legacy=False)
    b = nova.block_device_mapping_create(ctx, volume(inst, "/dev/vdc", "v2"), legacy=False)
    c = nova.block_device_mapping_create(ctx, volume(other, "/dev/vdb", "v1"), legacy=False)
    nova.block_device_mapping_destroy_by_instance_and_volume(ctx, inst, "v1")
    assert live_ids(nova_db) == [b.id, c.id]
    nova.block_device_mapping_destroy_by_instance_and_volume(ctx, inst, "v-none")
    assert a.id not in live_ids(nova_db) and len(live_ids(nova_db)) == 2
    with pytest.raises(InvalidValue):
        nova.block_device_mapping_destroy_by_instance_and_volume(ctx, inst, 7)

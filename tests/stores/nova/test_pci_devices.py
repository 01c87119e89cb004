"""PCI devices (nova notes §2.21 "PCI devices", §3.20): the upsert keyed by node and
address (safe when callers race), the lookups and their errors, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, get_admin_context, models
from tests.concurrency import run_processes
from tests.stores.nova.conftest import make_instance, table_rows
from tests.stores.nova.test_compute_nodes import make_node, make_service

PD = models.PciDevice


def rows(db: Database) -> list[dict]:
    return table_rows(db, PD)


def device(node_id: int, address: str = "0000:04:10.0", **more) -> dict:
    """The values of a new device (every required column given)."""
    return {
        "compute_node_id": node_id,
        "address": address,
        "vendor_id": "8086",
        "product_id": "1520",
        "dev_type": "type-VF",
        "dev_id": f"pci_{address}",
        "label": "label_8086_1520",
        "status": "available",
        **more,
    }


@pytest.fixture
def node(nova_db, admin):
    """A compute node's id."""
    return make_node(admin, make_service(admin).id).id


def add(admin, node_id: int, address: str = "0000:04:10.0", **more):
    return nova.pci_device_update(admin, node_id, address, device(node_id, address, **more))


# -- the upsert ------------------------------------------------------------------------------


def test_update_creates_then_updates_the_live_device(nova_db, admin, node):
    created = add(admin, node)
    assert created.id and created.compute_node_id == node and created.status == "available"
    assert created["vendor_id"] == "8086" and created.deleted == 0
    inst = make_instance(nova_db)
    got = nova.pci_device_update(
        admin, node, "0000:04:10.0", {"status": "allocated", "instance_uuid": inst}
    )
    assert got.id == created.id and got.status == "allocated" and got.instance_uuid == inst
    [stored] = rows(nova_db)
    assert stored["status"] == "allocated" and stored["updated_at"] is not None
    # A deleted device is not updated: a new row is made.
    nova.pci_device_destroy(admin, node, "0000:04:10.0")
    again = add(admin, node)
    assert again.id != created.id and again.status == "available"
    assert [r["deleted"] for r in rows(nova_db)] == [created.id, 0]


def test_a_new_device_takes_only_the_values(nova_db, admin, node):
    # As in nova: the key of a new row comes from the values, not the arguments.
    got = nova.pci_device_update(admin, node, "0000:00:01.0", device(node, "0000:00:02.0"))
    assert got.address == "0000:00:02.0"
    with pytest.raises(InvalidValue, match="compute_node_id, address"):
        nova.pci_device_update(admin, node, "0000:00:03.0", {"vendor_id": "8086"})
    values = device(node, "0000:00:04.0")
    del values["label"]
    with pytest.raises(InvalidValue, match="label"):
        nova.pci_device_update(admin, node, "0000:00:04.0", values)
    assert [r["address"] for r in rows(nova_db)] == ["0000:00:02.0"]


def test_update_rejects_bad_values_and_changes_nothing(nova_db, admin, node):
    add(admin, node)
    add(admin, node, "0000:04:10.1")
    before = rows(nova_db)
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.pci_device_update(admin, node, "0000:04:10.0", {"bogus": 1})
    with pytest.raises(InvalidValue):
        nova.pci_device_update(admin, node, "0000:04:10.0", {"vendor_id": "80861"})  # 4 chars
    with pytest.raises(InvalidQuery):
        nova.pci_device_update(admin, node, "0000:04:10.0", None)
    with pytest.raises(exception.ComputeHostNotFound):
        add(admin, node + 1)
    with pytest.raises(exception.ComputeHostNotFound):
        nova.pci_device_update(admin, node, "0000:04:10.0", {"compute_node_id": node + 1})
    # Moving a device onto another live device's address: nova's DBDuplicateEntry.
    with pytest.raises(exception.DBDuplicateEntry):
        nova.pci_device_update(admin, node, "0000:04:10.0", {"address": "0000:04:10.1"})
    assert rows(nova_db) == before


def _upsert(_db: Any, node_id: int, status: str) -> int:
    """Create-or-update the same device five times; return the last row's id."""
    admin = get_admin_context()
    last = None
    for i in range(5):
        last = nova.pci_device_update(
            admin,
            node_id,
            "0000:81:00.1",
            device(node_id, "0000:81:00.1", status=status, dev_id=f"{status}-{i}"),
        )
    return last.id


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def test_racing_upserts_leave_one_live_device(nova_url):
    admin = get_admin_context()
    node_id = make_node(admin, make_service(admin).id).id
    ids = run_processes(
        partial(_nova_on, nova_url), _upsert, [(node_id, f"s{i}") for i in range(4)]
    )
    stored = rows(nova.get_database())
    assert len(stored) == 1 and set(ids) == {stored[0]["id"]}
    assert stored[0]["deleted"] == 0 and stored[0]["dev_id"].endswith("-4")


# -- reads -----------------------------------------------------------------------------------


def test_get_by_addr_and_by_id(nova_db, admin, node):
    dev = add(admin, node)
    assert nova.pci_device_get_by_addr(admin, node, "0000:04:10.0").id == dev.id
    assert nova.pci_device_get_by_id(admin, dev.id).address == "0000:04:10.0"
    with pytest.raises(exception.PciDeviceNotFound) as err:
        nova.pci_device_get_by_addr(admin, node, "0000:04:10.7")
    assert err.value.code == 500 and "0000:04:10.7" in str(err.value)
    with pytest.raises(exception.PciDeviceNotFound):
        nova.pci_device_get_by_addr(admin, node + 1, "0000:04:10.0")
    with pytest.raises(exception.PciDeviceNotFoundById) as err:
        nova.pci_device_get_by_id(admin, dev.id + 1)
    assert err.value.code == 404
    nova.pci_device_destroy(admin, node, "0000:04:10.0")
    with pytest.raises(exception.PciDeviceNotFound):
        nova.pci_device_get_by_addr(admin, node, "0000:04:10.0")
    with pytest.raises(exception.PciDeviceNotFoundById):
        nova.pci_device_get_by_id(admin, dev.id)
    deleted_ok = get_admin_context(read_deleted="yes")
    assert nova.pci_device_get_by_addr(deleted_ok, node, "0000:04:10.0").deleted == dev.id
    assert nova.pci_device_get_by_id(deleted_ok, dev.id).id == dev.id


def test_get_all_by_node(nova_db, admin, node):
    other = make_node(admin, make_service(admin, "host2").id).id
    a, b = add(admin, node), add(admin, node, "0000:04:10.1")
    add(admin, other)
    assert [d.id for d in nova.pci_device_get_all_by_node(admin, node)] == [a.id, b.id]
    nova.pci_device_destroy(admin, node, b.address)
    assert [d.id for d in nova.pci_device_get_all_by_node(admin, node)] == [a.id]
    only = get_admin_context(read_deleted="only")
    assert [d.id for d in nova.pci_device_get_all_by_node(only, node)] == [b.id]
    assert nova.pci_device_get_all_by_node(admin, other + 1) == []


def test_get_all_by_instance_uuid_returns_allocated_devices(nova_db, admin, ctx, node):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    a = add(admin, node, "0000:04:10.0", status="allocated", instance_uuid=inst)
    add(admin, node, "0000:04:10.1", status="claimed", instance_uuid=inst)
    add(admin, node, "0000:04:10.2", status="allocated", instance_uuid=other)
    b = add(admin, node, "0000:04:10.3", status="allocated", instance_uuid=inst)
    for context in (admin, ctx):  # any user context may ask
        assert [d.id for d in nova.pci_device_get_all_by_instance_uuid(context, inst)] == [
            a.id,
            b.id,
        ]
    nova.pci_device_destroy(admin, node, b.address)
    assert [d.id for d in nova.pci_device_get_all_by_instance_uuid(ctx, inst)] == [a.id]
    deleted_ok = get_admin_context(read_deleted="yes")
    assert len(nova.pci_device_get_all_by_instance_uuid(deleted_ok, inst)) == 2
    assert nova.pci_device_get_all_by_instance_uuid(ctx, "no-such-instance") == []


# -- destroy ---------------------------------------------------------------------------------


def test_destroy_soft_deletes_or_raises(nova_db, admin, node):
    dev, kept = add(admin, node), add(admin, node, "0000:04:10.1")
    assert nova.pci_device_destroy(admin, node, dev.address) is None
    stored = {r["id"]: r for r in rows(nova_db)}
    assert stored[dev.id]["deleted"] == dev.id and stored[dev.id]["deleted_at"] is not None
    assert stored[kept.id]["deleted"] == 0
    with pytest.raises(exception.PciDeviceNotFound):
        nova.pci_device_destroy(admin, node, dev.address)
    with pytest.raises(exception.PciDeviceNotFound):
        nova.pci_device_destroy(admin, node + 1, kept.address)


# -- access ----------------------------------------------------------------------------------


def test_admin_only_calls_refuse_users_and_change_nothing(nova_db, admin, ctx, node):
    dev = add(admin, node)
    before = rows(nova_db)
    calls = [
        lambda: nova.pci_device_destroy(ctx, node, dev.address),
        lambda: nova.pci_device_get_all_by_node(ctx, node),
        lambda: nova.pci_device_get_by_addr(ctx, node, dev.address),
        lambda: nova.pci_device_get_by_id(ctx, dev.id),
        lambda: nova.pci_device_update(ctx, node, dev.address, {"status": "allocated"}),
    ]
    for call in calls:
        with pytest.raises(exception.AdminRequired):
            call()
    with pytest.raises(exception.Forbidden):
        nova.pci_device_get_all_by_instance_uuid(nova.RequestContext(None, None), "x")
    assert rows(nova_db) == before

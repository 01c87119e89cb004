"""Virtual interfaces (nova notes §3.14) on every backend: creation, live lookups, the
instance visibility check, deletion by instance."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import RequestContext, exception, models
from tests.stores.nova.conftest import make_instance, table_rows

V = models.VirtualInterface


def soft_delete(db: Database, row_id: int) -> None:
    table = V.__table__
    with db.transaction() as conn:
        conn.execute(sa.update(table).where(table.c.id == row_id).values(deleted=row_id))


def vif(context, instance_uuid, address, network_id=1, **values):
    values = {
        "address": address,
        "instance_uuid": instance_uuid,
        "network_id": network_id,
        "uuid": str(uuid.uuid4()),
        **values,
    }
    return nova.virtual_interface_create(context, values)


def test_create_and_its_refusals(nova_db, admin, ctx):
    inst = make_instance(nova_db)
    got = vif(ctx, inst, "aa:bb:cc:00:00:01")
    assert got.id and got.address == "aa:bb:cc:00:00:01" and got["instance_uuid"] == inst
    assert got.created_at is not None and got.deleted == 0
    before = table_rows(nova_db, V)
    # A live VIF has the address; an instance that does not exist: nova's one error.
    with pytest.raises(exception.VirtualInterfaceCreateException):
        vif(admin, inst, "aa:bb:cc:00:00:01")
    with pytest.raises(exception.VirtualInterfaceCreateException):
        vif(admin, str(uuid.uuid4()), "aa:bb:cc:00:00:02")
    with pytest.raises(InvalidQuery, match="bogus"):
        vif(admin, inst, "aa:bb:cc:00:00:02", bogus=1)
    with pytest.raises(InvalidValue):
        vif(admin, inst, "aa:bb:cc:00:00:02", network_id="one")
    with pytest.raises(InvalidQuery):
        nova.virtual_interface_create(admin, None)
    with pytest.raises(exception.Forbidden):
        vif(RequestContext(None, None), inst, "aa:bb:cc:00:00:02")
    assert table_rows(nova_db, V) == before
    soft_delete(nova_db, got.id)
    assert vif(admin, inst, "aa:bb:cc:00:00:01").id != got.id


def test_lookups_see_live_rows_or_return_none(nova_db, admin, ctx):
    inst = make_instance(nova_db)
    a = vif(admin, inst, "aa:bb:cc:00:00:01", network_id=1)
    b = vif(admin, inst, "aa:bb:cc:00:00:02", network_id=2)
    gone = vif(admin, inst, "aa:bb:cc:00:00:03", network_id=3)
    soft_delete(nova_db, gone.id)
    assert nova.virtual_interface_get(ctx, a.id).address == a.address
    assert nova.virtual_interface_get(ctx, gone.id) is None
    # Live rows even when the context asks for deleted ones too (nova forced 'no').
    assert nova.virtual_interface_get(nova.get_admin_context("yes"), gone.id) is None
    assert [v.id for v in nova.virtual_interface_get_all(ctx)] == [a.id, b.id]
    assert nova.virtual_interface_get_by_address(ctx, "aa:bb:cc:00:00:02").id == b.id
    assert nova.virtual_interface_get_by_address(ctx, "aa:bb:cc:00:00:03") is None
    with pytest.raises(exception.InvalidIpAddressError):
        nova.virtual_interface_get_by_address(ctx, 5)
    assert nova.virtual_interface_get_by_uuid(ctx, b.uuid).id == b.id
    assert nova.virtual_interface_get_by_uuid(ctx, gone.uuid) is None
    got = nova.virtual_interface_get_by_instance_and_network(ctx, inst, 2)
    assert got.id == b.id
    assert nova.virtual_interface_get_by_instance_and_network(ctx, inst, 3) is None
    with pytest.raises(InvalidValue):
        nova.virtual_interface_get(ctx, "one")
    with pytest.raises(exception.Forbidden):
        nova.virtual_interface_get_all(RequestContext("user1", None))


def test_get_by_instance_checks_the_instance_is_visible(nova_db, admin, ctx, other_ctx):
    inst = make_instance(nova_db)
    theirs = make_instance(nova_db, project_id="project2")
    a = vif(admin, inst, "aa:bb:cc:00:00:01")
    b = vif(admin, inst, "aa:bb:cc:00:00:02")
    vif(admin, theirs, "aa:bb:cc:00:00:03")
    assert [v.id for v in nova.virtual_interface_get_by_instance(ctx, inst)] == [a.id, b.id]
    assert [v.id for v in nova.virtual_interface_get_by_instance(admin, inst, use_slave=True)] == [
        a.id,
        b.id,
    ]
    with pytest.raises(exception.InstanceNotFound):
        nova.virtual_interface_get_by_instance(ctx, theirs)
    with pytest.raises(exception.InstanceNotFound):
        nova.virtual_interface_get_by_instance(ctx, str(uuid.uuid4()))
    with pytest.raises(exception.InstanceNotFound):
        nova.virtual_interface_get_by_instance(ctx, 42)
    assert len(nova.virtual_interface_get_by_instance(other_ctx, theirs)) == 1
    soft_delete(nova_db, a.id)
    assert [v.id for v in nova.virtual_interface_get_by_instance(ctx, inst)] == [b.id]


def test_delete_by_instance_soft_deletes_its_rows(nova_db, admin, ctx):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    vif(admin, inst, "aa:bb:cc:00:00:01")
    vif(admin, inst, "aa:bb:cc:00:00:02")
    kept = vif(admin, other, "aa:bb:cc:00:00:03")
    assert nova.virtual_interface_delete_by_instance(ctx, inst) is None
    stored = table_rows(nova_db, V)
    assert [r["id"] for r in stored if r["deleted"] == 0] == [kept.id]
    assert all(r["deleted"] == r["id"] and r["deleted_at"] for r in stored if r["id"] != kept.id)
    # Nothing to delete is no error.
    nova.virtual_interface_delete_by_instance(ctx, str(uuid.uuid4()))
    assert nova.virtual_interface_get_all(admin)[0].id == kept.id

"""Fixed IPs (nova notes §2.19, §3.11) on every backend: creation, allocation, lookups with
their project authorisation and read_deleted, and release."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.core.types import utcnow
from dblayer.stores.nova import RequestContext, exception, models
from tests.stores.nova.conftest import make_instance, table_rows

F = models.FixedIp


def rows(db: Database) -> list[dict]:
    return table_rows(db, F)


def soft_delete(db: Database, model, row_id: int) -> None:
    table = model.__table__
    with db.transaction() as conn:
        conn.execute(sa.update(table).where(table.c.id == row_id).values(deleted=row_id))


def set_columns(db: Database, model, row_id: int, **values) -> None:
    table = model.__table__
    with db.transaction() as conn:
        conn.execute(sa.update(table).where(table.c.id == row_id).values(**values))


def delete_instance(db: Database, instance_uuid: str) -> None:
    table = models.Instance.__table__
    with db.transaction() as conn:
        conn.execute(
            sa.update(table).where(table.c.uuid == instance_uuid).values(deleted=table.c.id)
        )


def network(admin, **values):
    return nova.network_create_safe(admin, {"label": "net", **values})


def ip(admin, address, **values):
    return nova.fixed_ip_create(admin, {"address": address, **values})


# -- creating --------------------------------------------------------------------------------


def test_create_stores_the_row_and_refuses_a_live_duplicate(nova_db, admin, ctx):
    inst = make_instance(nova_db)
    got = ip(ctx, "10.0.0.1", network_id=1, instance_uuid=inst, host="h1")
    assert got.id and got.address == "10.0.0.1" and got["instance_uuid"] == inst
    assert got.allocated is False and got.leased is False and got.reserved is False
    assert got.created_at is not None and got.deleted == 0
    # IPv6 is stored compressed, as the column keeps it.
    assert ip(admin, "fd00:0:0:0:0:0:0:1").address == "fd00::1"
    before = rows(nova_db)
    with pytest.raises(exception.FixedIpExists) as err:
        ip(admin, "10.0.0.1")
    assert "10.0.0.1" in str(err.value)
    with pytest.raises(exception.InstanceNotFound):
        ip(admin, "10.0.0.2", instance_uuid=str(uuid.uuid4()))
    with pytest.raises(InvalidQuery, match="bogus"):
        ip(admin, "10.0.0.2", bogus=1)
    with pytest.raises(InvalidValue):
        ip(admin, "10.0.0.2", allocated="yes")
    with pytest.raises(InvalidQuery):
        nova.fixed_ip_create(admin, None)
    with pytest.raises(exception.Forbidden):
        ip(RequestContext("user1", None), "10.0.0.2")
    assert rows(nova_db) == before
    # A deleted row's address may be used again.
    soft_delete(nova_db, F, got.id)
    assert ip(admin, "10.0.0.1").id != got.id


def test_bulk_create_stores_all_or_nothing(nova_db, admin, ctx):
    inst = make_instance(nova_db)
    ips = [{"address": f"10.0.{i // 250}.{i % 250}", "network_id": 7} for i in range(1200)]
    ips[3]["instance_uuid"] = inst
    ips[4]["reserved"] = True
    assert nova.fixed_ip_bulk_create(ctx, ips) is None
    stored = rows(nova_db)
    assert len(stored) == 1200 and {r["network_id"] for r in stored} == {7}
    by_address = {r["address"]: r for r in stored}
    assert by_address["10.0.0.3"]["instance_uuid"] == inst
    assert (
        by_address["10.0.0.4"]["reserved"] is True and by_address["10.0.0.5"]["reserved"] is False
    )
    assert all(r["created_at"] is not None and r["deleted"] == 0 for r in stored)
    before = rows(nova_db)
    # One address already stored: nothing of the batch is kept.
    with pytest.raises(exception.FixedIpExists) as err:
        nova.fixed_ip_bulk_create(admin, [{"address": "10.1.0.1"}, {"address": "10.0.2.7"}])
    assert "10.0.2.7" in str(err.value)
    # The same address twice in the list.
    with pytest.raises(exception.FixedIpExists) as err:
        nova.fixed_ip_bulk_create(admin, [{"address": "10.1.0.1"}, {"address": "10.1.0.1"}])
    assert "10.1.0.1" in str(err.value)
    with pytest.raises(exception.InstanceNotFound):
        nova.fixed_ip_bulk_create(
            admin, [{"address": "10.1.0.1"}, {"address": "10.1.0.2", "instance_uuid": "nope"}]
        )
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.fixed_ip_bulk_create(admin, [{"address": "10.1.0.1"}, {"bogus": 1}])
    with pytest.raises(InvalidQuery):
        nova.fixed_ip_bulk_create(admin, {"address": "10.1.0.1"})
    assert nova.fixed_ip_bulk_create(admin, []) is None
    assert rows(nova_db) == before


# -- allocation ------------------------------------------------------------------------------


def test_associate_takes_the_asked_address(nova_db, admin, ctx):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    net = network(admin)
    floating = ip(admin, "10.0.0.1")  # no network yet: it joins the asked one
    ip(admin, "10.0.0.2", network_id=net.id + 1)
    ip(admin, "10.0.0.3", network_id=net.id, reserved=True)
    got = nova.fixed_ip_associate(admin, "10.0.0.1", inst, network_id=net.id)
    assert got.id == floating.id and got.instance_uuid == inst and got.network_id == net.id
    assert got.updated_at is not None
    before = rows(nova_db)
    with pytest.raises(exception.FixedIpAlreadyInUse) as err:
        nova.fixed_ip_associate(admin, "10.0.0.1", other, network_id=net.id)
    assert "10.0.0.1" in str(err.value) and other in str(err.value)
    with pytest.raises(exception.FixedIpNotFoundForNetwork) as err:
        nova.fixed_ip_associate(admin, "10.0.0.2", inst, network_id=net.id)
    assert str(net.id) in str(err.value)
    with pytest.raises(exception.FixedIpNotFoundForNetwork):
        nova.fixed_ip_associate(admin, "10.0.0.3", inst, network_id=net.id)
    with pytest.raises(exception.InvalidUUID):
        nova.fixed_ip_associate(admin, "10.0.0.2", "not-a-uuid")
    with pytest.raises(exception.InstanceNotFound):
        nova.fixed_ip_associate(admin, "10.0.0.2", str(uuid.uuid4()), network_id=net.id + 1)
    with pytest.raises(exception.AdminRequired):
        nova.fixed_ip_associate(ctx, "10.0.0.2", inst, network_id=net.id + 1)
    assert rows(nova_db) == before
    # reserved=True asks for a reserved address.
    got = nova.fixed_ip_associate(admin, "10.0.0.3", inst, network_id=net.id, reserved=True)
    assert got.instance_uuid == inst and got.reserved is True


def test_associate_pool_hands_out_free_addresses_in_order(nova_db, admin, ctx):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    net = network(admin)
    ip(admin, "10.0.0.1", network_id=net.id, reserved=True)
    ip(admin, "10.0.0.2", network_id=net.id, host="taken")
    ip(admin, "10.0.0.3", network_id=net.id, instance_uuid=other)
    ip(admin, "10.0.0.4", network_id=net.id + 1)
    gone = ip(admin, "10.0.0.5", network_id=net.id)
    soft_delete(nova_db, F, gone.id)
    first = ip(admin, "10.0.0.6", network_id=net.id)
    no_network = ip(admin, "10.0.0.7")
    last = ip(admin, "10.0.0.8", network_id=net.id)
    got = nova.fixed_ip_associate_pool(admin, net.id, inst)
    assert (got.id, got.address, got.instance_uuid, got.host) == (first.id, "10.0.0.6", inst, None)
    assert got.network is None and got.floating_ips == [] and got.updated_at is not None
    # A row of no network joins the network it was taken for (nova's bug fixed).
    got = nova.fixed_ip_associate_pool(admin, net.id, host="h1")
    assert (got.id, got.network_id, got.host, got.instance_uuid) == (
        no_network.id,
        net.id,
        "h1",
        None,
    )
    got = nova.fixed_ip_associate_pool(admin, net.id, inst, "h2")
    assert (got.id, got.instance_uuid, got.host) == (last.id, inst, "h2")
    stored = {r["address"]: r for r in rows(nova_db)}
    assert stored["10.0.0.7"]["network_id"] == net.id and stored["10.0.0.7"]["host"] == "h1"
    assert stored["10.0.0.6"]["instance_uuid"] == inst and stored["10.0.0.8"]["host"] == "h2"
    before = rows(nova_db)
    with pytest.raises(exception.NoMoreFixedIps):
        nova.fixed_ip_associate_pool(admin, net.id, inst)
    with pytest.raises(exception.InvalidUUID):
        nova.fixed_ip_associate_pool(admin, net.id + 1, "not-a-uuid")
    with pytest.raises(exception.InstanceNotFound):
        nova.fixed_ip_associate_pool(admin, net.id + 1, str(uuid.uuid4()))
    with pytest.raises(exception.AdminRequired):
        nova.fixed_ip_associate_pool(ctx, net.id + 1, inst)
    with pytest.raises(InvalidValue):
        nova.fixed_ip_associate_pool(admin, "one", inst)
    assert rows(nova_db) == before
    got = nova.fixed_ip_associate_pool(admin, net.id + 1, inst)
    assert got.address == "10.0.0.4"


def test_associate_pool_without_a_network_takes_rows_of_no_network(nova_db, admin):
    inst = make_instance(nova_db)
    ip(admin, "10.0.0.1", network_id=3)
    ip(admin, "10.0.0.2")
    got = nova.fixed_ip_associate_pool(admin, None, inst)
    assert got.address == "10.0.0.2" and got.network_id is None
    with pytest.raises(exception.NoMoreFixedIps):
        nova.fixed_ip_associate_pool(admin, None, inst)
    # Neither an instance nor a host: the row is returned as it is (as nova).
    assert nova.fixed_ip_associate_pool(admin, 3).address == "10.0.0.1"


# -- changing --------------------------------------------------------------------------------


def test_disassociate_clears_the_instance_and_vif(nova_db, admin, ctx, other_ctx):
    inst = make_instance(nova_db)
    got = ip(admin, "10.0.0.1", instance_uuid=inst, virtual_interface_id=4, host="h1")
    set_columns(nova_db, F, got.id, allocated=True, leased=True)
    with pytest.raises(exception.Forbidden):
        nova.fixed_ip_disassociate(other_ctx, "10.0.0.1")
    with pytest.raises(exception.FixedIpNotFoundForAddress) as err:
        nova.fixed_ip_disassociate(admin, "10.9.9.9")
    assert "10.9.9.9" in str(err.value)
    with pytest.raises(exception.FixedIpInvalid):
        nova.fixed_ip_disassociate(admin, 42)
    assert nova.fixed_ip_disassociate(ctx, "10.0.0.1") is None
    [row] = rows(nova_db)
    assert row["instance_uuid"] is None and row["virtual_interface_id"] is None
    # Only those two: nova left the rest.
    assert row["allocated"] is True and row["leased"] is True and row["host"] == "h1"


def test_disassociate_all_by_timeout(nova_db, admin, ctx):
    old = utcnow() - dt.timedelta(hours=1)
    host_net = network(admin, host="h1")
    multi = network(admin, multi_host=True)
    single = network(admin)
    on_h1 = make_instance(nova_db, host="h1")
    on_h2 = make_instance(nova_db, host="h2")
    cases = {
        "10.0.0.1": dict(network_id=host_net.id, instance_uuid=on_h2),  # network host: yes
        "10.0.0.2": dict(network_id=multi.id, instance_uuid=on_h1),  # multi-host, on h1: yes
        "10.0.0.3": dict(network_id=multi.id, instance_uuid=on_h2),  # multi-host, on h2: no
        "10.0.0.4": dict(network_id=single.id, instance_uuid=on_h1),  # not multi-host: no
        "10.0.0.5": dict(network_id=host_net.id, instance_uuid=on_h1, allocated=True),  # no
        "10.0.0.6": dict(network_id=host_net.id, instance_uuid=on_h1),  # recent: no
        "10.0.0.7": dict(network_id=host_net.id),  # no instance: no
    }
    for address, values in cases.items():
        row = ip(admin, address, **values)
        when = utcnow() if address == "10.0.0.6" else old
        set_columns(nova_db, F, row.id, updated_at=when, leased=True)
    gone = ip(admin, "10.0.0.8", network_id=host_net.id, instance_uuid=on_h1)
    set_columns(nova_db, F, gone.id, updated_at=old, deleted=gone.id, leased=True)
    cutoff = utcnow() - dt.timedelta(minutes=10)
    with pytest.raises(exception.AdminRequired):
        nova.fixed_ip_disassociate_all_by_timeout(ctx, "h1", cutoff)
    assert nova.fixed_ip_disassociate_all_by_timeout(admin, "h1", cutoff) == 2
    stored = {r["address"]: r for r in rows(nova_db)}
    for address in ("10.0.0.1", "10.0.0.2"):
        assert stored[address]["instance_uuid"] is None and stored[address]["leased"] is False
        assert stored[address]["updated_at"] > cutoff
    for address in ("10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.8"):
        assert stored[address]["instance_uuid"] is not None and stored[address]["leased"] is True
    assert nova.fixed_ip_disassociate_all_by_timeout(admin, "h1", cutoff) == 0
    # nova's string form of a time is read too.
    assert nova.fixed_ip_disassociate_all_by_timeout(admin, "h9", "2020-01-01T00:00:00.000000") == 0
    with pytest.raises(InvalidQuery):
        nova.fixed_ip_disassociate_all_by_timeout(admin, "h1", "yesterday")


def test_update_changes_the_row_by_address(nova_db, admin, ctx, other_ctx):
    inst = make_instance(nova_db)
    ip(admin, "10.0.0.1", instance_uuid=inst)
    ip(admin, "10.0.0.2")
    assert nova.fixed_ip_update(ctx, "10.0.0.1", {"allocated": True, "host": "h1"}) is None
    stored = {r["address"]: r for r in rows(nova_db)}
    assert stored["10.0.0.1"]["allocated"] is True and stored["10.0.0.1"]["host"] == "h1"
    assert stored["10.0.0.1"]["updated_at"] is not None
    before = rows(nova_db)
    with pytest.raises(exception.Forbidden):
        nova.fixed_ip_update(other_ctx, "10.0.0.1", {"leased": True})
    with pytest.raises(exception.FixedIpExists) as err:
        nova.fixed_ip_update(admin, "10.0.0.1", {"address": "10.0.0.2"})
    assert "10.0.0.2" in str(err.value)
    with pytest.raises(exception.FixedIpNotFoundForAddress):
        nova.fixed_ip_update(admin, "10.0.0.9", {"leased": True})
    with pytest.raises(exception.InstanceNotFound):
        nova.fixed_ip_update(admin, "10.0.0.2", {"instance_uuid": str(uuid.uuid4())})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.fixed_ip_update(admin, "10.0.0.2", {"bogus": 1})
    assert rows(nova_db) == before
    # Another project's user may change an address no instance holds (as nova).
    nova.fixed_ip_update(other_ctx, "10.0.0.2", {"leased": True})


# -- reading ---------------------------------------------------------------------------------


def test_get_by_id_checks_the_owning_project(nova_db, admin, ctx, other_ctx):
    net = network(admin)
    inst = make_instance(nova_db)
    mine = ip(admin, "10.0.0.1", instance_uuid=inst, network_id=net.id)
    free = ip(admin, "10.0.0.2")
    got = nova.fixed_ip_get(ctx, mine.id)
    assert got.address == "10.0.0.1" and got.network is None
    assert nova.fixed_ip_get(ctx, mine.id, get_network=True).network.id == net.id
    assert nova.fixed_ip_get(other_ctx, free.id).id == free.id
    with pytest.raises(exception.Forbidden):
        nova.fixed_ip_get(other_ctx, mine.id)
    with pytest.raises(exception.FixedIpNotFound) as err:
        nova.fixed_ip_get(admin, 999)
    assert "999" in str(err.value)
    soft_delete(nova_db, F, free.id)
    with pytest.raises(exception.FixedIpNotFound):
        nova.fixed_ip_get(admin, free.id)
    assert nova.fixed_ip_get(nova.get_admin_context("yes"), free.id).deleted == free.id
    # The owner counts even once deleted (nova read it with read_deleted='yes').
    delete_instance(nova_db, inst)
    with pytest.raises(exception.Forbidden):
        nova.fixed_ip_get(other_ctx, mine.id)
    assert nova.fixed_ip_get(ctx, mine.id).id == mine.id
    with pytest.raises(InvalidValue):
        nova.fixed_ip_get(admin, "one")


def test_get_all_includes_deleted_rows(nova_db, admin, ctx):
    with pytest.raises(exception.NoFixedIpsDefined):
        nova.fixed_ip_get_all(admin)
    a, b = ip(admin, "10.0.0.1"), ip(admin, "10.0.0.2")
    soft_delete(nova_db, F, a.id)
    assert [r.id for r in nova.fixed_ip_get_all(admin)] == [a.id, b.id]
    with pytest.raises(exception.AdminRequired):
        nova.fixed_ip_get_all(ctx)


def test_get_by_address(nova_db, admin, ctx, other_ctx):
    net = network(admin)
    inst = make_instance(nova_db)
    mine = ip(admin, "10.0.0.1", instance_uuid=inst, network_id=net.id)
    got = nova.fixed_ip_get_by_address(ctx, "10.0.0.1")
    assert got.id == mine.id and got.instance is None and got.network is None
    got = nova.fixed_ip_get_by_address(ctx, "10.0.0.1", columns_to_join=["instance", "network"])
    assert got.instance.uuid == inst and got.network.id == net.id and got.floating_ips == []
    with pytest.raises(exception.Forbidden):
        nova.fixed_ip_get_by_address(other_ctx, "10.0.0.1")
    with pytest.raises(exception.FixedIpNotFoundForAddress):
        nova.fixed_ip_get_by_address(admin, "10.0.0.2")
    with pytest.raises(exception.FixedIpInvalid):
        nova.fixed_ip_get_by_address(admin, None)
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.fixed_ip_get_by_address(admin, "10.0.0.1", columns_to_join=["bogus"])
    soft_delete(nova_db, F, mine.id)
    with pytest.raises(exception.FixedIpNotFoundForAddress):
        nova.fixed_ip_get_by_address(admin, "10.0.0.1")
    assert nova.fixed_ip_get_by_address(nova.get_admin_context("yes"), "10.0.0.1").id == mine.id


def test_get_by_address_detailed(nova_db, admin, ctx):
    net = network(admin)
    inst = make_instance(nova_db)
    ip(admin, "10.0.0.1", instance_uuid=inst, network_id=net.id)
    ip(admin, "10.0.0.2")
    fixed, network_row, instance = nova.fixed_ip_get_by_address_detailed(admin, "10.0.0.1")
    assert fixed.address == "10.0.0.1" and network_row.id == net.id and instance.uuid == inst
    assert instance.metadata == [] and network_row.fixed_ips == []
    assert nova.fixed_ip_get_by_address_detailed(admin, "10.0.0.2")[1:] == (None, None)
    with pytest.raises(exception.FixedIpNotFoundForAddress):
        nova.fixed_ip_get_by_address_detailed(admin, "10.0.0.3")
    with pytest.raises(exception.FixedIpInvalid):
        nova.fixed_ip_get_by_address_detailed(admin, 7)
    with pytest.raises(exception.AdminRequired):
        nova.fixed_ip_get_by_address_detailed(ctx, "10.0.0.1")


def test_get_by_floating_address_host_and_instance(nova_db, admin, ctx):
    on_h1, on_h2 = make_instance(nova_db, host="h1"), make_instance(nova_db, host="h2")
    gone = make_instance(nova_db, host="h1")
    a = ip(admin, "10.0.0.1", instance_uuid=on_h1, host="other")
    b = ip(admin, "10.0.0.2", instance_uuid=on_h1)
    ip(admin, "10.0.0.3", instance_uuid=on_h2, host="h1")
    ip(admin, "10.0.0.4", instance_uuid=gone)
    with nova_db.session() as session:
        session.add(models.FloatingIp(address="172.16.0.1", fixed_ip_id=b.id))
        session.add(models.FloatingIp(address="172.16.0.2"))
    assert nova.fixed_ip_get_by_floating_address(ctx, "172.16.0.1").id == b.id
    assert nova.fixed_ip_get_by_floating_address(ctx, "172.16.0.2") is None
    assert nova.fixed_ip_get_by_floating_address(ctx, "172.16.0.9") is None

    delete_instance(nova_db, gone)
    got = nova.fixed_ip_get_by_host(admin, "h1")
    # Through the instances' host (a live instance), not the fixed IPs' own.
    assert [r.id for r in got] == [a.id, b.id]
    assert nova.fixed_ip_get_by_host(admin, "h9") == []
    with pytest.raises(exception.AdminRequired):
        nova.fixed_ip_get_by_host(ctx, "h1")

    assert [r.id for r in nova.fixed_ip_get_by_instance(ctx, on_h1)] == [a.id, b.id]
    soft_delete(nova_db, F, a.id)
    assert [r.id for r in nova.fixed_ip_get_by_instance(ctx, on_h1)] == [b.id]
    with pytest.raises(exception.FixedIpNotFoundForInstance) as err:
        nova.fixed_ip_get_by_instance(ctx, str(uuid.UUID(int=5)))
    assert str(uuid.UUID(int=5)) in str(err.value)
    with pytest.raises(exception.InvalidUUID):
        nova.fixed_ip_get_by_instance(ctx, "not-a-uuid")


def test_get_by_network_host_and_by_virtual_interface(nova_db, admin, ctx):
    ip(admin, "10.0.0.1", network_id=1, host="h2", virtual_interface_id=5)
    first = ip(admin, "10.0.0.2", network_id=1, host="h1", virtual_interface_id=5)
    ip(admin, "10.0.0.3", network_id=1, host="h1")
    gone = ip(admin, "10.0.0.4", network_id=2, host="h1", virtual_interface_id=5)
    soft_delete(nova_db, F, gone.id)
    assert nova.fixed_ip_get_by_network_host(ctx, 1, "h1").id == first.id
    with pytest.raises(exception.FixedIpNotFoundForNetworkHost) as err:
        nova.fixed_ip_get_by_network_host(ctx, 2, "h1")
    assert "h1" in str(err.value)
    with pytest.raises(InvalidValue):
        nova.fixed_ip_get_by_network_host(ctx, str(uuid.uuid4()), "h1")
    got = nova.fixed_ips_by_virtual_interface(ctx, 5)
    assert [r.address for r in got] == ["10.0.0.1", "10.0.0.2"]
    assert nova.fixed_ips_by_virtual_interface(ctx, 6) == []
    with pytest.raises(exception.Forbidden):
        nova.fixed_ips_by_virtual_interface(RequestContext(None, "project1"), 5)

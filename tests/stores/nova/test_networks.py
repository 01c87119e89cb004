"""Networks (nova notes §2.19, §3.13) on every backend: creation, lookups with their
project scoping and read_deleted, association with projects and hosts, deletion."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import RequestContext, exception, models
from tests.stores.nova.conftest import make_instance, table_rows

N = models.Network


def soft_delete(db: Database, model, row_id: int) -> None:
    table = model.__table__
    with db.transaction() as conn:
        conn.execute(sa.update(table).where(table.c.id == row_id).values(deleted=row_id))


def net(admin, **values):
    return nova.network_create_safe(admin, {"label": "net", **values})


def test_create_safe_stores_the_network_and_returns_none_for_a_live_vlan(nova_db, admin):
    a = net(admin, vlan=100, cidr="10.0.0.0/24", bridge="br100", multi_host=True, mtu=1500)
    assert a.id and uuid.UUID(a.uuid) and a.vlan == 100 and a["cidr"] == "10.0.0.0/24"
    assert a.multi_host is True and a.injected is False and a.fixed_ips == []
    given = str(uuid.uuid4())
    assert net(admin, vlan=101, uuid=given).uuid == given
    before = table_rows(nova_db, N)
    # The network exists already: nothing raised, nothing stored (the seed's contract).
    assert net(admin, vlan=100, label="again") is None
    assert table_rows(nova_db, N) == before
    # A deleted network's VLAN is free again.
    soft_delete(nova_db, N, a.id)
    assert net(admin, vlan=100).vlan == 100
    # Networks without a VLAN never collide.
    assert net(admin).id != net(admin).id


def test_create_safe_rejects_bad_values_and_non_admins(nova_db, admin, ctx):
    with pytest.raises(InvalidQuery, match="bogus"):
        net(admin, bogus=1)
    with pytest.raises(InvalidValue):
        net(admin, vlan="one hundred")
    with pytest.raises(InvalidValue):
        net(admin, label="x" * 256)
    with pytest.raises(InvalidQuery):
        nova.network_create_safe(admin, None)
    with pytest.raises(exception.AdminRequired):
        net(ctx, vlan=1)
    assert table_rows(nova_db, N) == []


def test_get_is_scoped_to_the_project_or_no_project(nova_db, admin, ctx, other_ctx):
    mine = net(admin, project_id="project1")
    theirs = net(admin, project_id="project2")
    free = net(admin)
    assert nova.network_get(ctx, mine.id).id == mine.id
    assert nova.network_get(ctx, free.id).id == free.id
    with pytest.raises(exception.NetworkNotFound):
        nova.network_get(ctx, theirs.id)
    assert nova.network_get(ctx, theirs.id, project_only=False).id == theirs.id
    with pytest.raises(exception.NetworkNotFound):
        nova.network_get(ctx, free.id, project_only=True)
    assert nova.network_get(admin, theirs.id, project_only=True).id == theirs.id
    assert [n.id for n in nova.network_get_all(ctx)] == [mine.id, free.id]
    assert [n.id for n in nova.network_get_all(other_ctx, project_only=True)] == [theirs.id]
    assert [n.id for n in nova.network_get_all(admin)] == [mine.id, theirs.id, free.id]
    with pytest.raises(exception.NetworkNotFound) as err:
        nova.network_get(admin, 999)
    assert "999" in str(err.value)
    with pytest.raises(InvalidValue):
        nova.network_get(admin, "one")
    with pytest.raises(exception.Forbidden):
        nova.network_get(RequestContext(None, None), mine.id)


def test_get_follows_read_deleted_and_get_all_sees_live_rows(nova_db, admin):
    gone, kept = net(admin), net(admin)
    soft_delete(nova_db, N, gone.id)
    with pytest.raises(exception.NetworkNotFound):
        nova.network_get(admin, gone.id)
    assert nova.network_get(nova.get_admin_context("yes"), gone.id).deleted == gone.id
    assert [n.id for n in nova.network_get_all(nova.get_admin_context("yes"))] == [kept.id]
    soft_delete(nova_db, N, kept.id)
    with pytest.raises(exception.NoNetworksFound):
        nova.network_get_all(admin)


def test_get_all_by_uuids(nova_db, admin, ctx):
    mine = net(admin, project_id="project1")
    theirs = net(admin, project_id="project2")
    gone = net(admin)
    soft_delete(nova_db, N, gone.id)
    got = nova.network_get_all_by_uuids(ctx, [mine.uuid])
    assert [n.id for n in got] == [mine.id]
    got = nova.network_get_all_by_uuids(admin, [theirs.uuid, mine.uuid])
    assert [n.id for n in got] == [mine.id, theirs.id]
    with pytest.raises(exception.NetworkNotFoundForProject) as err:
        nova.network_get_all_by_uuids(ctx, [mine.uuid, theirs.uuid])
    assert theirs.uuid in str(err.value) and "project1" in str(err.value)
    with pytest.raises(exception.NetworkNotFound) as err:
        nova.network_get_all_by_uuids(ctx, [mine.uuid, gone.uuid], project_only=False)
    assert gone.uuid in str(err.value)
    with pytest.raises(exception.NoNetworksFound):
        nova.network_get_all_by_uuids(ctx, [theirs.uuid])
    with pytest.raises(exception.NoNetworksFound):
        nova.network_get_all_by_uuids(admin, [])
    with pytest.raises(InvalidQuery):
        nova.network_get_all_by_uuids(admin, mine.uuid)


def test_get_by_uuid_and_by_cidr_see_live_networks(nova_db, admin, ctx):
    a = net(admin, cidr="10.0.0.0/24", cidr_v6="fd00::/64")
    gone = net(admin, cidr="10.9.0.0/24")
    soft_delete(nova_db, N, gone.id)
    assert nova.network_get_by_uuid(admin, a.uuid).id == a.id
    assert nova.network_get_by_cidr(admin, "10.0.0.0/24").id == a.id
    assert nova.network_get_by_cidr(admin, "fd00::/64").id == a.id
    with pytest.raises(exception.NetworkNotFoundForUUID):
        nova.network_get_by_uuid(nova.get_admin_context("yes"), gone.uuid)
    with pytest.raises(exception.NetworkNotFoundForCidr) as err:
        nova.network_get_by_cidr(admin, "10.9.0.0/24")
    assert "10.9.0.0/24" in str(err.value)
    for call in (
        lambda: nova.network_get_by_uuid(ctx, a.uuid),
        lambda: nova.network_get_by_cidr(ctx, "10.0.0.0/24"),
    ):
        with pytest.raises(exception.AdminRequired):
            call()


def test_associate_hands_a_free_network_to_a_project_once(nova_db, admin, ctx):
    a, b, c = net(admin), net(admin), net(admin, project_id="taken")
    got = nova.network_associate(admin, "p1")
    assert got.id == a.id and got.project_id == "p1"
    # A project with a network gets it back, whatever network_id asks for.
    assert nova.network_associate(admin, "p1", network_id=b.id).id == a.id
    assert nova.network_associate(admin, "taken").id == c.id
    # force: another network, the asked one.
    forced = nova.network_associate(admin, "p1", network_id=b.id, force=True)
    assert forced.id == b.id and forced.project_id == "p1"
    with pytest.raises(exception.NoMoreNetworks):
        nova.network_associate(admin, "p2")
    with pytest.raises(exception.NoMoreNetworks):
        nova.network_associate(admin, "p2", network_id=c.id)
    stored = {r["id"]: r["project_id"] for r in table_rows(nova_db, N)}
    assert stored == {a.id: "p1", b.id: "p1", c.id: "taken"}
    with pytest.raises(exception.AdminRequired):
        nova.network_associate(ctx, "project1")
    with pytest.raises(InvalidValue):
        nova.network_associate(admin, None)
    assert {r["id"]: r["project_id"] for r in table_rows(nova_db, N)} == stored


def test_associate_a_given_network_and_skip_deleted_ones(nova_db, admin):
    a, b = net(admin), net(admin)
    soft_delete(nova_db, N, a.id)
    with pytest.raises(exception.NoMoreNetworks):
        nova.network_associate(admin, "p1", network_id=a.id)
    assert nova.network_associate(admin, "p1", network_id=b.id).id == b.id
    with pytest.raises(exception.NoMoreNetworks):
        nova.network_associate(admin, "p2")


def test_set_host_keeps_the_first_host(nova_db, admin, ctx):
    a = net(admin)
    assert nova.network_set_host(admin, a.id, "h1") == "h1"
    assert nova.network_set_host(admin, a.id, "h2") == "h1"
    assert table_rows(nova_db, N)[0]["host"] == "h1"
    with pytest.raises(exception.NetworkNotFound):
        nova.network_set_host(admin, a.id + 1, "h1")
    soft_delete(nova_db, N, a.id)
    with pytest.raises(exception.NetworkNotFound):
        nova.network_set_host(admin, a.id, "h1")
    with pytest.raises(exception.AdminRequired):
        nova.network_set_host(ctx, a.id, "h1")


def test_update_and_disassociate(nova_db, admin, ctx):
    a = net(admin, vlan=1, project_id="project1", host="h1")
    b = net(admin, vlan=2, project_id="project2")
    got = nova.network_update(ctx, a.id, {"label": "renamed", "dns1": "8.8.8.8"})
    assert got.id == a.id and got.label == "renamed" and got.dns1 == "8.8.8.8"
    assert got.updated_at is not None
    with pytest.raises(exception.NetworkNotFound):
        nova.network_update(ctx, b.id, {"label": "x"})
    before = table_rows(nova_db, N)
    with pytest.raises(exception.DuplicateVlan) as err:
        nova.network_update(admin, b.id, {"vlan": 1})
    assert "1" in str(err.value)
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.network_update(admin, a.id, {"bogus": 1})
    with pytest.raises(InvalidValue):
        nova.network_update(admin, a.id, {"mtu": "big"})
    assert table_rows(nova_db, N) == before

    nova.network_disassociate(admin, a.id, disassociate_host=False)
    row = nova.network_get(admin, a.id)
    assert row.project_id is None and row.host == "h1"
    assert nova.network_disassociate(admin, a.id) is None
    assert nova.network_get(admin, a.id).host is None
    with pytest.raises(exception.NetworkNotFound):
        nova.network_disassociate(admin, 999)
    with pytest.raises(exception.AdminRequired):
        nova.network_disassociate(ctx, b.id)


def fixed(admin, network, address, **values):
    return nova.fixed_ip_create(admin, {"address": address, "network_id": network.id, **values})


def test_delete_safe_refuses_allocated_ips_and_removes_the_network(nova_db, admin, ctx):
    a, b = net(admin), net(admin)
    fixed(admin, a, "10.0.0.1")
    ip = fixed(admin, a, "10.0.0.2", allocated=True)
    fixed(admin, b, "10.0.1.1")
    before = (table_rows(nova_db, N), table_rows(nova_db, models.FixedIp))
    with pytest.raises(exception.NetworkInUse) as err:
        nova.network_delete_safe(admin, a.id)
    assert str(a.id) in str(err.value)
    with pytest.raises(exception.AdminRequired):
        nova.network_delete_safe(ctx, b.id)
    with pytest.raises(exception.NetworkNotFound):
        nova.network_delete_safe(admin, 999)
    assert (table_rows(nova_db, N), table_rows(nova_db, models.FixedIp)) == before
    nova.fixed_ip_update(admin, ip.address, {"allocated": False})
    assert nova.network_delete_safe(admin, a.id) is None
    # The network row is gone; its fixed IPs are soft-deleted, the other network's kept.
    assert [r["id"] for r in table_rows(nova_db, N)] == [b.id]
    ips = {r["address"]: r["deleted"] for r in table_rows(nova_db, models.FixedIp)}
    assert ips["10.0.1.1"] == 0 and ips["10.0.0.1"] != 0 and ips["10.0.0.2"] != 0


def test_count_reserved_ips(nova_db, admin, ctx):
    a, b = net(admin), net(admin)
    fixed(admin, a, "10.0.0.1", reserved=True)
    fixed(admin, a, "10.0.0.2", reserved=True)
    fixed(admin, a, "10.0.0.3")
    fixed(admin, b, "10.0.1.1", reserved=True)
    gone = fixed(admin, a, "10.0.0.4", reserved=True)
    soft_delete(nova_db, models.FixedIp, gone.id)
    assert nova.network_count_reserved_ips(admin, a.id) == 2
    assert nova.network_count_reserved_ips(admin, 999) == 0
    with pytest.raises(exception.AdminRequired):
        nova.network_count_reserved_ips(ctx, a.id)


def vif(admin, instance_uuid, network, address):
    return nova.virtual_interface_create(
        admin,
        {
            "address": address,
            "instance_uuid": instance_uuid,
            "network_id": network.id,
            "uuid": str(uuid.uuid4()),
        },
    )


def test_get_all_by_host(nova_db, admin, ctx):
    by_network = net(admin, host="h1")
    by_fixed_ip = net(admin)
    by_instance = net(admin)
    elsewhere = net(admin, host="h2")
    gone = net(admin, host="h1")
    soft_delete(nova_db, N, gone.id)
    fixed(admin, by_fixed_ip, "10.0.1.1", host="h1")
    inst = make_instance(nova_db, host="h1")
    v = vif(admin, inst, by_instance, "aa:bb:cc:00:00:01")
    fixed(admin, by_instance, "10.0.2.1", virtual_interface_id=v.id)
    fixed(admin, elsewhere, "10.0.3.1", host="h2")
    got = nova.network_get_all_by_host(admin, "h1")
    assert [n.id for n in got] == [by_network.id, by_fixed_ip.id, by_instance.id]
    assert nova.network_get_all_by_host(admin, "h3") == []
    with pytest.raises(exception.AdminRequired):
        nova.network_get_all_by_host(ctx, "h1")


def test_associated_fixed_ips_and_in_use_on_host(nova_db, admin, ctx):
    a, b = net(admin), net(admin)
    inst = make_instance(nova_db, host="h1", hostname="web-1")
    other = make_instance(nova_db, host="h2")
    v = vif(admin, inst, a, "aa:bb:cc:00:00:01")
    w = vif(admin, other, a, "aa:bb:cc:00:00:02")
    fixed(admin, a, "10.0.0.1", instance_uuid=inst, virtual_interface_id=v.id, allocated=True)
    fixed(admin, a, "10.0.0.2", instance_uuid=other, virtual_interface_id=w.id, leased=True)
    fixed(admin, a, "10.0.0.3", instance_uuid=inst)  # no VIF: not listed
    fixed(admin, a, "10.0.0.4", virtual_interface_id=v.id)  # no instance: not listed
    got = nova.network_get_associated_fixed_ips(admin, a.id)
    assert [g["address"] for g in got] == ["10.0.0.1", "10.0.0.2"]
    first = got[0]
    assert set(first) == {
        "address",
        "instance_uuid",
        "network_id",
        "vif_id",
        "vif_address",
        "instance_hostname",
        "instance_updated",
        "instance_created",
        "allocated",
        "leased",
    }
    assert first["instance_uuid"] == inst and first["vif_id"] == v.id
    assert first["vif_address"] == "aa:bb:cc:00:00:01" and first["instance_hostname"] == "web-1"
    assert first["allocated"] is True and got[1]["leased"] is True
    assert first["instance_created"] is not None
    assert [g["address"] for g in nova.network_get_associated_fixed_ips(admin, a.id, "h2")] == [
        "10.0.0.2"
    ]
    assert nova.network_get_associated_fixed_ips(admin, b.id) == []
    assert nova.network_in_use_on_host(admin, a.id, "h1") is True
    assert nova.network_in_use_on_host(admin, a.id, "h3") is False
    assert nova.network_in_use_on_host(admin, b.id) is False
    # A deleted VIF or instance takes its address off the list.
    soft_delete(nova_db, models.VirtualInterface, w.id)
    assert [g["address"] for g in nova.network_get_associated_fixed_ips(admin, a.id)] == [
        "10.0.0.1"
    ]
    for call in (
        lambda: nova.network_get_associated_fixed_ips(ctx, a.id),
        lambda: nova.network_in_use_on_host(ctx, a.id),
    ):
        with pytest.raises(exception.AdminRequired):
            call()


def test_project_get_networks(nova_db, admin, ctx, other_ctx):
    mine = net(admin, project_id="project1")
    free = net(admin)
    assert [n.id for n in nova.project_get_networks(ctx, "project1")] == [mine.id]
    assert nova.project_get_networks(other_ctx, "project2", associate=False) == []
    # Associating is admin-only, as in nova.
    with pytest.raises(exception.AdminRequired):
        nova.project_get_networks(other_ctx, "project2")
    with pytest.raises(exception.Forbidden):
        nova.project_get_networks(other_ctx, "project1")
    got = nova.project_get_networks(admin, "project2")
    assert [n.id for n in got] == [free.id] and got[0].project_id == "project2"
    with pytest.raises(exception.NoMoreNetworks):
        nova.project_get_networks(admin, "project3")
    soft_delete(nova_db, N, mine.id)
    assert nova.project_get_networks(ctx, "project1", associate=False) == []

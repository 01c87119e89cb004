"""Floating IPs (nova notes §2.19, §3.12): lookups, allocation, association, bulk create
and destroy (with the projects' quota usage), project scoping and read_deleted, on every
backend. Fixed IPs and networks are inserted directly with the models."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, DuplicateEntry, InvalidQuery, InvalidValue
from dblayer.stores.nova import RequestContext, exception, models
from tests.stores.nova.conftest import make_instance, table_rows

FIP = models.FloatingIp


def rows(db: Database) -> list[dict]:
    """Every floating IP row (deleted ones too), as dicts, by id."""
    return table_rows(db, FIP)


def add(db: Database, model: type, **values: object) -> int:
    """Insert a row of ``model`` directly; return its id."""
    with db.session() as session:
        row = model(**values)
        session.add(row)
        session.flush()
        return row.id


def soft_delete(db: Database, model: type, row_id: int) -> None:
    table = model.__table__
    with db.transaction() as conn:
        conn.execute(sa.update(table).where(table.c.id == row_id).values(deleted=row_id))


def make_fips(admin, count: int, pool: str = "nova", prefix: str = "10.0.0", **more) -> list:
    ips = [{"address": f"{prefix}.{i}", "pool": pool, **more} for i in range(1, count + 1)]
    return nova.floating_ip_bulk_create(admin, ips)


def usage(db: Database, project_id: str) -> list[tuple]:
    t = models.QuotaUsage.__table__
    with db.transaction() as conn:
        stmt = (
            sa.select(t.c.in_use, t.c.reserved, t.c.until_refresh)
            .where(t.c.project_id == project_id)
            .order_by(t.c.id)
        )
        return [tuple(r) for r in conn.execute(stmt)]


# -- create and read -------------------------------------------------------------------------


def test_create_and_lookups(nova_db, admin, ctx):
    inst = make_instance(nova_db)
    net = add(nova_db, models.Network, label="net1", cidr="192.168.0.0/24")
    fixed = add(nova_db, models.FixedIp, address="192.168.0.5", network_id=net, instance_uuid=inst)
    row = nova.floating_ip_create(
        admin,
        {"address": "10.0.0.1", "pool": "nova", "project_id": "project1", "fixed_ip_id": fixed},
    )
    assert row.id and row["address"] == "10.0.0.1" and row.auto_assigned is False
    assert row.deleted == 0 and row.created_at is not None
    other = nova.floating_ip_create(admin, {"address": "2001:0DB8::1", "host": "h1"})
    assert rows(nova_db)[1]["address"] == "2001:db8::1"  # IPv6 stored compressed

    got = nova.floating_ip_get(ctx, row.id)
    assert got.address == "10.0.0.1"
    assert got.fixed_ip.address == "192.168.0.5" and got.fixed_ip.instance.uuid == inst
    assert nova.floating_ip_get(admin, str(row.id)).id == row.id
    by_address = nova.floating_ip_get_by_address(ctx, "10.0.0.1")
    assert by_address.id == row.id and by_address.fixed_ip.instance.uuid == inst
    assert nova.floating_ip_get_by_address(admin, "2001:db8:0::1").id == other.id
    assert nova.floating_ip_get_by_address(ctx, "2001:db8::1").fixed_ip is None

    assert [r.id for r in nova.floating_ip_get_all(admin)] == [row.id, other.id]
    assert [r.id for r in nova.floating_ip_get_all_by_host(admin, "h1")] == [other.id]
    [mine] = nova.floating_ip_get_all_by_project(ctx, "project1")
    assert mine.id == row.id and mine.fixed_ip.instance.uuid == inst
    assert [r.id for r in nova.floating_ip_get_by_fixed_address(ctx, "192.168.0.5")] == [row.id]
    assert [r.id for r in nova.floating_ip_get_by_fixed_ip_id(ctx, fixed)] == [row.id]
    assert nova.floating_ip_get_by_fixed_address(ctx, "192.168.0.6") == []
    assert nova.floating_ip_get_by_fixed_ip_id(ctx, fixed + 1) == []
    assert nova.floating_ip_get_pools(ctx) == [{"name": None}, {"name": "nova"}]


def test_lookup_errors(nova_db, admin, ctx):
    with pytest.raises(exception.NoFloatingIpsDefined):
        nova.floating_ip_get_all(admin)
    row = nova.floating_ip_create(admin, {"address": "10.0.0.1"})
    with pytest.raises(exception.FloatingIpNotFound) as err:
        nova.floating_ip_get(ctx, row.id + 1)
    assert err.value.kwargs["id"] == row.id + 1
    with pytest.raises(exception.FloatingIpNotFound):
        nova.floating_ip_get(ctx, 2**40)
    with pytest.raises(exception.InvalidID):
        nova.floating_ip_get(ctx, "abc")
    with pytest.raises(exception.FloatingIpNotFoundForAddress) as err:
        nova.floating_ip_get_by_address(ctx, "10.0.0.2")
    assert "10.0.0.2" in str(err.value)
    with pytest.raises(exception.FloatingIpNotFoundForAddress):
        nova.floating_ip_get_by_address(ctx, "not an address")
    # An empty address looks for a row with no address, as nova did.
    with pytest.raises(exception.FloatingIpNotFoundForAddress):
        nova.floating_ip_get_by_address(ctx, "")
    no_address = nova.floating_ip_create(admin, {"pool": "x"})
    assert nova.floating_ip_get_by_address(ctx, "").id == no_address.id
    with pytest.raises(InvalidValue):
        nova.floating_ip_get_by_address(ctx, 10)
    with pytest.raises(exception.FloatingIpNotFoundForHost) as err:
        nova.floating_ip_get_all_by_host(admin, "nohost")
    assert "nohost" in str(err.value)
    with pytest.raises(InvalidValue):
        nova.floating_ip_get_by_fixed_ip_id(ctx, "one")


def test_create_rejects_duplicates_and_bad_values(nova_db, admin):
    first = nova.floating_ip_create(admin, {"address": "10.0.0.1"})
    before = rows(nova_db)
    with pytest.raises(exception.FloatingIpExists) as err:
        nova.floating_ip_create(admin, {"address": "10.0.0.1", "pool": "other"})
    assert err.value.kwargs["address"] == "10.0.0.1"
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.floating_ip_create(admin, {"address": "10.0.0.2", "bogus": 1})
    with pytest.raises(InvalidValue):
        nova.floating_ip_create(admin, {"address": "1" * 40})
    with pytest.raises(InvalidValue):
        nova.floating_ip_create(admin, {"address": "10.0.0.2", "auto_assigned": "yes"})
    with pytest.raises(InvalidQuery):
        nova.floating_ip_create(admin, None)
    with pytest.raises(DuplicateEntry):  # an id clash is not an address clash
        nova.floating_ip_create(admin, {"id": first.id, "address": "10.0.0.3"})
    assert rows(nova_db) == before
    # A deleted row does not hold its address.
    soft_delete(nova_db, FIP, first.id)
    assert nova.floating_ip_create(admin, {"address": "10.0.0.1"}).id != first.id


def test_user_scoping_and_access(nova_db, admin, ctx, other_ctx):
    mine = nova.floating_ip_create(admin, {"address": "10.0.0.1", "project_id": "project1"})
    free = nova.floating_ip_create(admin, {"address": "10.0.0.2", "host": "h"})
    theirs = nova.floating_ip_create(admin, {"address": "10.0.0.3", "project_id": "project2"})
    before = rows(nova_db)
    # By id: another project's row is not found (project_only), a free one neither.
    assert nova.floating_ip_get(ctx, mine.id).id == mine.id
    for row in (free, theirs):
        with pytest.raises(exception.FloatingIpNotFound):
            nova.floating_ip_get(ctx, row.id)
    assert nova.floating_ip_get(admin, theirs.id).id == theirs.id
    # By address: any user sees a free address; another project's is Forbidden.
    assert nova.floating_ip_get_by_address(other_ctx, "10.0.0.2").id == free.id
    calls = [
        lambda: nova.floating_ip_get_by_address(other_ctx, "10.0.0.1"),
        lambda: nova.floating_ip_update(other_ctx, "10.0.0.1", {"host": "x"}),
        lambda: nova.floating_ip_fixed_ip_associate(other_ctx, "10.0.0.1", "1.1.1.1", "h"),
        lambda: nova.floating_ip_get_all_by_project(ctx, "project2"),
        lambda: nova.floating_ip_allocate_address(ctx, "project2", "nova"),
        lambda: nova.floating_ip_get(RequestContext(None, "project1"), mine.id),
    ]
    for call in calls:
        with pytest.raises(exception.Forbidden):
            call()
    for call in (
        lambda: nova.floating_ip_get_all(ctx),
        lambda: nova.floating_ip_get_all_by_host(ctx, "h"),
    ):
        with pytest.raises(exception.AdminRequired):
            call()
    assert rows(nova_db) == before
    assert [r.id for r in nova.floating_ip_get_all_by_project(admin, "project2")] == [theirs.id]


def test_read_deleted(nova_db, admin, ctx):
    live_row = nova.floating_ip_create(admin, {"address": "10.0.0.1", "pool": "a", "host": "h"})
    gone = nova.floating_ip_create(
        admin, {"address": "10.0.0.2", "pool": "b", "host": "h", "fixed_ip_id": 7}
    )
    soft_delete(nova_db, FIP, gone.id)
    yes = RequestContext("user1", "project1", read_deleted="yes")
    only = RequestContext("user1", "project1", read_deleted="only")
    admin_yes = nova.get_admin_context(read_deleted="yes")
    with pytest.raises(exception.FloatingIpNotFoundForAddress):
        nova.floating_ip_get_by_address(ctx, "10.0.0.2")
    assert nova.floating_ip_get_by_address(yes, "10.0.0.2").id == gone.id
    assert nova.floating_ip_get_pools(ctx) == [{"name": "a"}]
    assert nova.floating_ip_get_pools(yes) == [{"name": "a"}, {"name": "b"}]
    assert nova.floating_ip_get_pools(only) == [{"name": "b"}]
    assert nova.floating_ip_get_by_fixed_ip_id(ctx, 7) == []
    assert [r.id for r in nova.floating_ip_get_by_fixed_ip_id(yes, 7)] == [gone.id]
    # The lists of every row ignore the context: live rows only.
    assert [r.id for r in nova.floating_ip_get_all(admin_yes)] == [live_row.id]
    assert [r.id for r in nova.floating_ip_get_all_by_host(admin_yes, "h")] == [live_row.id]
    # set_auto_assigned and destroy touch the rows the context sees.
    nova.floating_ip_set_auto_assigned(ctx, "10.0.0.2")
    assert rows(nova_db)[1]["auto_assigned"] is False
    nova.floating_ip_set_auto_assigned(yes, "10.0.0.2")
    assert rows(nova_db)[1]["auto_assigned"] is True
    nova.floating_ip_destroy(ctx, "10.0.0.2")
    assert len(rows(nova_db)) == 2
    nova.floating_ip_destroy(only, "10.0.0.2")
    assert [r["id"] for r in rows(nova_db)] == [live_row.id]


# -- allocation ------------------------------------------------------------------------------


def test_allocate_and_deallocate(nova_db, admin, ctx):
    pool = make_fips(admin, 4)
    make_fips(admin, 2, pool="other", prefix="10.1.0")
    nova.floating_ip_update(admin, "10.0.0.1", {"project_id": "someone"})  # taken
    nova.floating_ip_update(admin, "10.0.0.2", {"fixed_ip_id": 99})  # associated
    soft_delete(nova_db, FIP, pool[2].id)  # 10.0.0.3: deleted
    # The one free live row of the pool goes.
    assert nova.floating_ip_allocate_address(ctx, "project1", "nova", auto_assigned=True) == (
        "10.0.0.4"
    )
    row = nova.floating_ip_get_by_address(ctx, "10.0.0.4")
    assert row.project_id == "project1" and row.auto_assigned is True
    assert row.updated_at is not None
    before = rows(nova_db)
    with pytest.raises(exception.NoMoreFloatingIps):
        nova.floating_ip_allocate_address(ctx, "project1", "nova")
    with pytest.raises(exception.NoMoreFloatingIps):
        nova.floating_ip_allocate_address(admin, "project1", "no-such-pool")
    with pytest.raises(InvalidValue):
        nova.floating_ip_allocate_address(admin, None, "other")
    with pytest.raises(InvalidValue):
        nova.floating_ip_allocate_address(admin, "project1", "other", auto_assigned="no")
    assert rows(nova_db) == before
    assert nova.floating_ip_allocate_address(admin, "project2", "other") == "10.1.0.1"

    back = nova.floating_ip_deallocate(ctx, "10.0.0.4")
    assert back.address == "10.0.0.4"
    assert (back.project_id, back.host, back.auto_assigned) == (None, None, False)
    stored = next(r for r in rows(nova_db) if r["address"] == "10.0.0.4")
    assert (stored["project_id"], stored["auto_assigned"]) == (None, False)
    assert nova.floating_ip_deallocate(ctx, "10.0.0.4") is None  # no project: nothing to do
    assert nova.floating_ip_deallocate(ctx, "10.9.9.9") is None
    assert nova.floating_ip_deallocate(admin, "10.0.0.1").project_id is None
    assert nova.floating_ip_allocate_address(ctx, "project1", "nova") == "10.0.0.1"
    # The association stays, as in nova: the address is not free again.
    nova.floating_ip_update(admin, "10.0.0.2", {"project_id": "project1"})
    assert nova.floating_ip_deallocate(admin, "10.0.0.2").fixed_ip_id == 99
    assert nova.floating_ip_allocate_address(ctx, "project1", "nova") == "10.0.0.4"
    with pytest.raises(exception.NoMoreFloatingIps):
        nova.floating_ip_allocate_address(ctx, "project1", "nova")


# -- association -----------------------------------------------------------------------------


def test_associate_and_disassociate(nova_db, admin, ctx):
    net = add(nova_db, models.Network, label="net1", cidr="192.168.0.0/24")
    fixed = add(nova_db, models.FixedIp, address="192.168.0.5", network_id=net)
    nova.floating_ip_create(admin, {"address": "10.0.0.1", "project_id": "project1"})
    got = nova.floating_ip_fixed_ip_associate(ctx, "10.0.0.1", "192.168.0.5", "host1")
    assert got.id == fixed and got.network.label == "net1"
    [stored] = rows(nova_db)
    assert (stored["fixed_ip_id"], stored["host"]) == (fixed, "host1")
    # Already associated with it: None, nothing changes.
    assert nova.floating_ip_fixed_ip_associate(ctx, "10.0.0.1", "192.168.0.5", "host2") is None
    assert rows(nova_db) == [stored]

    with pytest.raises(exception.FixedIpNotFoundForAddress) as err:
        nova.floating_ip_fixed_ip_associate(ctx, "10.0.0.1", "192.168.0.6", "h")
    assert err.value.kwargs["address"] == "192.168.0.6"
    with pytest.raises(exception.FloatingIpNotFoundForAddress):
        nova.floating_ip_fixed_ip_associate(ctx, "10.0.0.2", "192.168.0.5", "h")
    with pytest.raises(InvalidValue):
        nova.floating_ip_fixed_ip_associate(ctx, "10.0.0.1", "192.168.0.5", 5)
    assert rows(nova_db) == [stored]

    back = nova.floating_ip_disassociate(ctx, "10.0.0.1")
    assert back.id == fixed and back.network.id == net
    [stored] = rows(nova_db)
    assert (stored["fixed_ip_id"], stored["host"]) == (None, None)
    assert nova.floating_ip_disassociate(ctx, "10.0.0.1") is None
    with pytest.raises(exception.FloatingIpNotFoundForAddress):
        nova.floating_ip_disassociate(ctx, "10.0.0.9")
    # A deleted fixed IP is not found with the context's read_deleted.
    soft_delete(nova_db, models.FixedIp, fixed)
    with pytest.raises(exception.FixedIpNotFoundForAddress):
        nova.floating_ip_fixed_ip_associate(ctx, "10.0.0.1", "192.168.0.5", "h")
    yes = RequestContext("user1", "project1", read_deleted="yes")
    assert nova.floating_ip_fixed_ip_associate(yes, "10.0.0.1", "192.168.0.5", "h").id == fixed


def test_update_set_auto_assigned_and_destroy(nova_db, admin, ctx):
    nova.floating_ip_create(admin, {"address": "10.0.0.1", "project_id": "project1"})
    nova.floating_ip_create(admin, {"address": "10.0.0.2"})
    assert nova.floating_ip_update(ctx, "10.0.0.1", {"host": "h1", "interface": "eth0"}) is None
    first = rows(nova_db)[0]
    assert (first["host"], first["interface"]) == ("h1", "eth0")
    before = rows(nova_db)
    with pytest.raises(exception.FloatingIpExists) as err:
        nova.floating_ip_update(admin, "10.0.0.1", {"address": "10.0.0.2"})
    assert err.value.kwargs["address"] == "10.0.0.2"
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.floating_ip_update(ctx, "10.0.0.1", {"bogus": 1})
    with pytest.raises(exception.FloatingIpNotFoundForAddress):
        nova.floating_ip_update(ctx, "10.0.0.3", {"host": "h"})
    assert rows(nova_db) == before

    assert nova.floating_ip_set_auto_assigned(ctx, "10.0.0.2") is None
    assert nova.floating_ip_set_auto_assigned(ctx, "10.0.0.9") is None
    assert [r["auto_assigned"] for r in rows(nova_db)] == [False, True]

    assert nova.floating_ip_destroy(ctx, "10.0.0.1") is None  # a HARD delete
    assert nova.floating_ip_destroy(ctx, "10.0.0.1") is None
    assert [r["address"] for r in rows(nova_db)] == ["10.0.0.2"]


# -- bulk ------------------------------------------------------------------------------------


def test_bulk_create(nova_db, admin, ctx):
    ips = [{"address": f"10.0.{i // 250}.{i % 250}", "pool": "p"} for i in range(600)]
    ips[5] = {"address": "2001:DB8:0::5", "pool": "p", "interface": "eth1", "auto_assigned": True}
    created = nova.floating_ip_bulk_create(ctx, ips)
    assert [r.address for r in created[:6]] == [*(ip["address"] for ip in ips[:5]), "2001:db8::5"]
    assert len({r.id for r in created}) == 600 and all(r.deleted == 0 for r in created)
    assert (created[5].interface, created[5].auto_assigned, created[4].auto_assigned) == (
        "eth1",
        True,
        False,
    )
    assert len(rows(nova_db)) == 600
    assert nova.floating_ip_bulk_create(ctx, []) == []


def test_bulk_create_stores_nothing_on_a_duplicate(nova_db, admin):
    make_fips(admin, 2)
    before = rows(nova_db)
    fresh = [{"address": f"10.2.0.{i}"} for i in range(10)]
    cases = [
        (fresh + [{"address": "10.0.0.2"}], "10.0.0.2"),  # taken by a live row
        (fresh + [{"address": "10.2.0.3"}], "10.2.0.3"),  # repeated in the batch
        ([{"address": "2001:db8::1"}, {"address": "2001:0db8::1"}], "2001:0db8::1"),
    ]
    for ips, address in cases:
        with pytest.raises(exception.FloatingIpExists) as err:
            nova.floating_ip_bulk_create(admin, ips)
        assert err.value.kwargs["address"] == address
    bad = [
        [{"address": "10.3.0.1"}, {"pool": "p"}],
        [{"address": None}],
        [{"address": "10.3.0.1", "bogus": 1}],
        {"address": "10.3.0.1"},
        None,
    ]
    for ips in bad:
        with pytest.raises((InvalidQuery, InvalidValue)):
            nova.floating_ip_bulk_create(admin, ips)
    assert rows(nova_db) == before


def test_bulk_destroy_releases_quota(nova_db, admin, ctx):
    def allocate(prefix: str, project: str, count: int, auto: bool = False) -> list[dict]:
        ips = [
            {"address": f"{prefix}.{i}", "project_id": project, "auto_assigned": auto}
            for i in range(count)
        ]
        nova.floating_ip_bulk_create(admin, ips)
        return [{"address": ip["address"]} for ip in ips]

    p1 = allocate("10.1.0", "project1", 3)
    p1_auto = allocate("10.1.1", "project1", 2, auto=True)
    p2 = allocate("10.2.0", "project2", 4)
    p3 = allocate("10.3.0", "project3", 2)
    p4 = allocate("10.4.0", "project4", 2)
    free = allocate("10.9.0", None, 2)
    add(
        nova_db,
        models.QuotaUsage,
        project_id="project1",
        resource="floating_ips",
        in_use=5,
        reserved=1,
    )
    add(
        nova_db,
        models.QuotaUsage,
        project_id="project1",
        resource="floating_ips",
        in_use=9,
        reserved=0,
        user_id="user1",
    )  # a per-user row: not floating IPs' usage
    # A negative usage is refreshed, as nova's engine did: the project's IPs left.
    add(
        nova_db,
        models.QuotaUsage,
        project_id="project2",
        resource="floating_ips",
        in_use=-1,
        reserved=0,
    )
    # An until_refresh countdown that ends now refreshes too.
    add(
        nova_db,
        models.QuotaUsage,
        project_id="project3",
        resource="floating_ips",
        in_use=50,
        reserved=0,
        until_refresh=1,
    )

    nova.floating_ip_bulk_destroy(
        admin, p1[:2] + p1_auto + p2[:1] + p3[:1] + p4 + free + [{"address": "10.8.8.8"}]
    )
    live = {r["address"] for r in rows(nova_db) if r["deleted"] == 0}
    assert live == {ip["address"] for ip in p1[2:] + p2[1:] + p3[1:]}
    assert usage(nova_db, "project4") == []  # no usage row: the engine counts when it makes one
    assert usage(nova_db, "project1") == [(3, 1, None), (9, 0, None)]
    assert usage(nova_db, "project2") == [(3, 0, None)]
    assert usage(nova_db, "project3") == [(1, 0, None)]
    # Destroying them again releases nothing.
    nova.floating_ip_bulk_destroy(admin, p1[:2])
    assert usage(nova_db, "project1") == [(3, 1, None), (9, 0, None)]

    # A user may release its own project's quota, not another's (nothing changes).
    before = rows(nova_db)
    with pytest.raises(exception.Forbidden):
        nova.floating_ip_bulk_destroy(ctx, p1[2:] + p2[1:2])
    assert rows(nova_db) == before and usage(nova_db, "project1")[0] == (3, 1, None)
    nova.floating_ip_bulk_destroy(ctx, p1[2:])
    assert usage(nova_db, "project1")[0] == (2, 1, None)
    # A countdown that does not end yet only ticks.
    t = models.QuotaUsage.__table__
    with nova_db.transaction() as conn:
        conn.execute(sa.update(t).where(t.c.project_id == "project2").values(until_refresh=5))
    nova.floating_ip_bulk_destroy(admin, p2[1:2])
    assert usage(nova_db, "project2") == [(2, 0, 4)]
    with pytest.raises(InvalidQuery):
        nova.floating_ip_bulk_destroy(admin, [{"pool": "x"}])
    with pytest.raises(InvalidQuery):
        nova.floating_ip_bulk_destroy(admin, "10.1.0.1")


# -- by instance -----------------------------------------------------------------------------


def test_floating_addresses_of_an_instance(nova_db, admin, ctx, other_ctx):
    inst = make_instance(nova_db)
    bare = make_instance(nova_db)
    lonely = make_instance(nova_db)
    a = add(nova_db, models.FixedIp, address="192.168.0.1", instance_uuid=inst)
    b = add(nova_db, models.FixedIp, address="192.168.0.2", instance_uuid=inst)
    add(nova_db, models.FixedIp, address="192.168.0.3", instance_uuid=lonely)
    gone = add(nova_db, models.FixedIp, address="192.168.0.9", instance_uuid=bare)
    soft_delete(nova_db, models.FixedIp, gone)
    # The instance's fixed IPs in the order of their virtual interfaces: b's comes first.
    vif_b = add(nova_db, models.VirtualInterface, address="aa:01", instance_uuid=inst)
    vif_a = add(nova_db, models.VirtualInterface, address="aa:02", instance_uuid=inst)
    with nova_db.transaction() as conn:
        t = models.FixedIp.__table__
        conn.execute(sa.update(t).where(t.c.id == a).values(virtual_interface_id=vif_a))
        conn.execute(sa.update(t).where(t.c.id == b).values(virtual_interface_id=vif_b))
    nova.floating_ip_create(admin, {"address": "10.0.0.1", "fixed_ip_id": a})
    nova.floating_ip_create(admin, {"address": "10.0.0.2", "fixed_ip_id": b})
    nova.floating_ip_create(admin, {"address": "10.0.0.3", "fixed_ip_id": b})
    deleted = nova.floating_ip_create(admin, {"address": "10.0.0.4", "fixed_ip_id": a})
    soft_delete(nova_db, FIP, deleted.id)

    assert nova.instance_floating_address_get_all(ctx, inst) == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    ]
    yes = RequestContext("user1", "project1", read_deleted="yes")
    assert nova.instance_floating_address_get_all(yes, inst)[-1] == "10.0.0.4"
    assert nova.instance_floating_address_get_all(ctx, lonely) == []
    with pytest.raises(exception.FixedIpNotFoundForInstance):
        nova.instance_floating_address_get_all(ctx, bare)
    with pytest.raises(exception.InvalidUUID):
        nova.instance_floating_address_get_all(ctx, inst.upper())

    instances = {r["uuid"]: r["id"] for r in table_rows(nova_db, models.Instance)}
    assert nova.instance_get_floating_address(ctx, instances[inst]) == "10.0.0.2"
    assert nova.instance_get_floating_address(ctx, instances[lonely]) is None
    with pytest.raises(exception.FixedIpNotFoundForInstance):
        nova.instance_get_floating_address(ctx, instances[bare])
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_get_floating_address(other_ctx, instances[inst])  # another project's
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_get_floating_address(ctx, max(instances.values()) + 1)
    with pytest.raises(exception.Forbidden):
        nova.instance_floating_address_get_all(RequestContext(None, None), str(uuid.uuid4()))

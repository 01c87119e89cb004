"""Compute nodes (nova notes §2.21 "Compute nodes", §3.10): the joined service, the dict
listing, the literal case-sensitive hypervisor search and the statistics, on every backend."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import RequestContext, exception, get_admin_context, models

CN = models.ComputeNode
_names = itertools.count(1)


def node_values(service_id: int, **more) -> dict:
    """The values of a compute node of ``service_id`` (every required column given)."""
    return {
        "service_id": service_id,
        "vcpus": 4,
        "memory_mb": 2048,
        "local_gb": 40,
        "vcpus_used": 1,
        "memory_mb_used": 512,
        "local_gb_used": 10,
        "hypervisor_type": "QEMU",
        "hypervisor_version": 1002000,
        "hypervisor_hostname": f"node-{next(_names)}",
        "cpu_info": '{"arch": "x86_64"}',
        "host_ip": "10.0.0.1",
        **more,
    }


def make_node(admin, service_id: int, **more):
    """A new compute node of ``service_id`` (through the API)."""
    return nova.compute_node_create(admin, node_values(service_id, **more))


def make_service(admin, host: str = "host1", binary: str = "nova-compute", **more):
    return nova.service_create(admin, {"host": host, "binary": binary, "topic": "compute", **more})


def rows(db: Database) -> list[dict]:
    from tests.stores.nova.conftest import table_rows

    return table_rows(db, CN)


# -- create, get, delete ---------------------------------------------------------------------


def test_create_returns_the_row_without_its_service(nova_db, admin):
    s = make_service(admin)
    node = make_node(admin, s.id, stats='{"x": 1}', free_ram_mb=100)
    assert node.id and node.service_id == s.id and node.vcpus == 4 and node.service is None
    assert node.stats == '{"x": 1}' and node.host_ip == "10.0.0.1" and node.deleted == 0
    [stored] = rows(nova_db)
    assert stored["free_ram_mb"] == 100 and stored["cpu_info"] == '{"arch": "x86_64"}'
    assert make_node(admin, s.id).stats == "{}"  # nova's default


def test_create_normalises_datetimes(nova_db, admin):
    s = make_service(admin)
    aware = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    node = make_node(admin, s.id, created_at="2024-01-02T03:04:05.000006", updated_at=aware)
    stored = rows(nova_db)[0]
    assert stored["created_at"] == dt.datetime(2024, 1, 2, 3, 4, 5, 6)
    # nova dropped the zone without converting.
    assert stored["updated_at"] == dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    assert node.created_at == dt.datetime(2024, 1, 2, 3, 4, 5, 6)


def test_create_rejects_bad_values_and_stores_nothing(nova_db, admin):
    s = make_service(admin)
    values = node_values(s.id)
    del values["cpu_info"]
    with pytest.raises(InvalidValue, match="cpu_info"):
        nova.compute_node_create(admin, values)
    with pytest.raises(InvalidQuery, match="bogus"):
        make_node(admin, s.id, bogus=1)
    with pytest.raises(InvalidValue):
        make_node(admin, s.id, vcpus="four")
    with pytest.raises(InvalidQuery):
        make_node(admin, s.id, created_at="yesterday")
    with pytest.raises(exception.ServiceNotFound):
        make_node(admin, s.id + 100)
    assert rows(nova_db) == []


def test_get_joins_the_service_and_needs_no_admin(nova_db, admin, ctx):
    s = make_service(admin)
    node = make_node(admin, s.id)
    for context in (admin, ctx, RequestContext(None, None)):
        got = nova.compute_node_get(context, node.id)
        assert got.id == node.id and got.service.id == s.id and got.service.host == "host1"
        assert got["service"]["binary"] == "nova-compute"
    with pytest.raises(exception.ComputeHostNotFound) as err:
        nova.compute_node_get(admin, node.id + 1)
    assert str(node.id + 1) in str(err.value)


def test_delete_soft_deletes_and_get_follows_read_deleted(nova_db, admin):
    s = make_service(admin)
    node, kept = make_node(admin, s.id), make_node(admin, s.id)
    assert nova.compute_node_delete(admin, node.id) is None
    stored = {r["id"]: r for r in rows(nova_db)}
    assert stored[node.id]["deleted"] == node.id and stored[node.id]["deleted_at"] is not None
    assert stored[kept.id]["deleted"] == 0
    with pytest.raises(exception.ComputeHostNotFound):
        nova.compute_node_get(admin, node.id)
    with pytest.raises(exception.ComputeHostNotFound):
        nova.compute_node_delete(admin, node.id)
    with pytest.raises(exception.ComputeHostNotFound):
        nova.compute_node_delete(admin, 999)
    deleted_ok = get_admin_context(read_deleted="yes")
    got = nova.compute_node_get(deleted_ok, node.id)
    # nova's join takes the service of a live node only.
    assert got.deleted == node.id and got.service is None
    with pytest.raises(exception.ComputeHostNotFound):
        nova.compute_node_get(get_admin_context(read_deleted="only"), kept.id)


# -- listing ---------------------------------------------------------------------------------


def test_get_all_returns_dicts_with_the_live_compute_service(nova_db, admin):
    compute = make_service(admin, "host1")
    other = make_service(admin, "host2", binary="nova-network")
    gone = make_service(admin, "host3")
    a = make_node(admin, gone.id)
    b = make_node(admin, other.id)
    c = make_node(admin, compute.id)
    d = make_node(admin, compute.id)
    dead = make_node(admin, compute.id)
    nova.compute_node_delete(admin, dead.id)
    nova.service_update(admin, gone.id, {"deleted": gone.id})  # service deleted, node live
    for context in (admin, get_admin_context(read_deleted="yes")):
        listed = nova.compute_node_get_all(context)
        assert all(type(n) is dict for n in listed)
        # By service_id: live nodes only, deleted ones never.
        assert [n["id"] for n in listed] == [c.id, d.id, b.id, a.id]
    by_id = {n["id"]: n for n in listed}
    assert by_id[c.id]["service"]["id"] == compute.id and by_id[c.id]["service"]["host"] == "host1"
    assert by_id[b.id]["service"] is None  # not nova-compute
    assert by_id[a.id]["service"] is None  # its service is deleted
    assert by_id[c.id]["created_at"] is not None and "deleted" in by_id[c.id]
    assert by_id[c.id]["host_ip"] == "10.0.0.1" and by_id[c.id]["vcpus"] == 4
    assert by_id[c.id]["service"]["disabled"] is False


def test_get_all_without_date_fields(nova_db, admin):
    s = make_service(admin)
    node = make_node(admin, s.id)
    [listed] = nova.compute_node_get_all(admin, no_date_fields=True)
    dates = {"created_at", "updated_at", "deleted_at", "deleted"}
    assert listed["id"] == node.id and not dates & set(listed)
    assert not dates & set(listed["service"]) and listed["service"]["host"] == "host1"
    assert nova.compute_node_get_all(admin, True)[0]["hypervisor_type"] == "QEMU"


def test_get_by_service_id(nova_db, admin):
    s, bare = make_service(admin), make_service(admin, "host2")
    node = make_node(admin, s.id)
    got = nova.compute_node_get_by_service_id(admin, s.id)
    assert got.id == node.id and got.service is None  # no join
    with pytest.raises(exception.ServiceNotFound):
        nova.compute_node_get_by_service_id(admin, bare.id)
    nova.compute_node_delete(admin, node.id)
    # Live nodes only, whatever the context reads.
    with pytest.raises(exception.ServiceNotFound):
        nova.compute_node_get_by_service_id(get_admin_context(read_deleted="yes"), s.id)


def test_search_by_hypervisor_is_a_literal_case_sensitive_substring(nova_db, admin):
    s = make_service(admin)
    names = ["compute-1.example", "Compute-2.example", "gpu_node%1", "gpuXnodeA1", None]
    nodes = [make_node(admin, s.id, hypervisor_hostname=n) for n in names]

    def found(text, context=admin):
        return [
            names[[n.id for n in nodes].index(x.id)]
            for x in nova.compute_node_search_by_hypervisor(context, text)
        ]

    assert found("ompute") == ["compute-1.example", "Compute-2.example"]
    assert found("compute") == ["compute-1.example"]
    assert found("COMPUTE") == []
    assert found("_node%") == ["gpu_node%1"]  # % and _ are not wildcards
    assert found("u_n") == ["gpu_node%1"]
    assert found("%") == ["gpu_node%1"]
    assert found("") == names[:4]
    assert found("/") == []
    got = nova.compute_node_search_by_hypervisor(admin, "Compute-2")
    assert got[0].service.id == s.id
    nova.compute_node_delete(admin, nodes[0].id)
    assert found("compute") == []
    assert found("compute", get_admin_context(read_deleted="yes")) == ["compute-1.example"]
    with pytest.raises(InvalidValue):
        nova.compute_node_search_by_hypervisor(admin, None)


# -- statistics ------------------------------------------------------------------------------


def test_statistics_over_live_nodes_of_enabled_services(nova_db, admin, ctx):
    zero = nova.compute_node_statistics(admin)
    assert zero == {k: 0 for k in zero} and len(zero) == 12 and zero["count"] == 0
    on = make_service(admin, "host1")
    off = make_service(admin, "host2", disabled=True)
    gone = make_service(admin, "host3")
    make_node(admin, on.id, vcpus=8, free_ram_mb=100, running_vms=2)
    make_node(admin, on.id, vcpus=2, free_ram_mb=None, disk_available_least=-5)
    make_node(admin, off.id, vcpus=100, free_ram_mb=1000)
    dead = make_node(admin, on.id, vcpus=1000)
    nova.compute_node_delete(admin, dead.id)
    # nova counted the nodes of a deleted but enabled service (it looked at disabled only).
    make_node(admin, gone.id, vcpus=16)
    nova.service_update(admin, gone.id, {"deleted": gone.id})
    stats = nova.compute_node_statistics(ctx)  # no access check
    assert stats == {
        "count": 3,
        "vcpus": 26,
        "memory_mb": 3 * 2048,
        "local_gb": 3 * 40,
        "vcpus_used": 3,
        "memory_mb_used": 3 * 512,
        "local_gb_used": 30,
        "free_ram_mb": 100,
        "free_disk_gb": 0,  # NULL everywhere
        "current_workload": 0,
        "running_vms": 2,
        "disk_available_least": -5,
    }
    assert all(type(v) is int for v in stats.values())
    assert nova.compute_node_statistics(RequestContext(None, None)) == stats


# -- update ----------------------------------------------------------------------------------


def test_update_stamps_updated_at_and_returns_the_node_with_its_service(nova_db, admin):
    s = make_service(admin)
    node = make_node(admin, s.id)
    values = {"vcpus_used": 3, "stats": '{"a": 1}'}
    got = nova.compute_node_update(admin, node.id, values)
    assert values == {"vcpus_used": 3, "stats": '{"a": 1}'}  # the caller's dict untouched
    assert got.id == node.id and got.vcpus_used == 3 and got.service.id == s.id
    stored = rows(nova_db)[0]
    assert stored["vcpus_used"] == 3 and stored["stats"] == '{"a": 1}'
    first_stamp = stored["updated_at"]
    assert first_stamp is not None
    nova.compute_node_update(admin, node.id, {})  # nothing else changes: still stamped
    assert rows(nova_db)[0]["updated_at"] > first_stamp
    # The caller's updated_at does not win over the stamp.
    nova.compute_node_update(admin, node.id, {"updated_at": "2000-01-01T00:00:00.000000"})
    assert rows(nova_db)[0]["updated_at"] > first_stamp


def test_update_moving_a_node_to_another_service(nova_db, admin):
    s, t = make_service(admin), make_service(admin, "host2")
    node = make_node(admin, s.id)
    got = nova.compute_node_update(admin, node.id, {"service_id": t.id})
    assert got.service_id == t.id and got.service.id == t.id and got.service.host == "host2"


def test_update_errors_change_nothing(nova_db, admin):
    s = make_service(admin)
    node = make_node(admin, s.id)
    before = rows(nova_db)
    with pytest.raises(exception.ComputeHostNotFound):
        nova.compute_node_update(admin, node.id + 1, {"vcpus": 1})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.compute_node_update(admin, node.id, {"bogus": 1})
    with pytest.raises(InvalidValue):
        nova.compute_node_update(admin, node.id, {"vcpus": None})
    with pytest.raises(exception.ServiceNotFound):
        nova.compute_node_update(admin, node.id, {"service_id": s.id + 10})
    nova.compute_node_delete(admin, node.id)
    with pytest.raises(exception.ComputeHostNotFound):
        nova.compute_node_update(admin, node.id, {"vcpus": 1})
    assert [r["vcpus"] for r in rows(nova_db)] == [before[0]["vcpus"]]


# -- access ----------------------------------------------------------------------------------


def test_admin_only_calls_refuse_users_and_change_nothing(nova_db, admin, ctx):
    s = make_service(admin)
    node = make_node(admin, s.id)
    before = rows(nova_db)
    calls = [
        lambda: nova.compute_node_create(ctx, node_values(s.id)),
        lambda: nova.compute_node_delete(ctx, node.id),
        lambda: nova.compute_node_get_all(ctx),
        lambda: nova.compute_node_get_by_service_id(ctx, s.id),
        lambda: nova.compute_node_search_by_hypervisor(ctx, "node"),
        lambda: nova.compute_node_update(ctx, node.id, {"vcpus": 1}),
    ]
    for call in calls:
        with pytest.raises(exception.AdminRequired):
            call()
    assert rows(nova_db) == before

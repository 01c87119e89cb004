"""Services (nova notes §2.21 "Services", §3.9): admin-only, nova's duplicate errors, the
enabled/disabled and read_deleted filters, the compute host lookup, on every backend."""

from __future__ import annotations

import pytest

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, get_admin_context, models
from dblayer.stores.nova.api import services as services_module
from tests.stores.nova.conftest import table_rows
from tests.stores.nova.test_compute_nodes import make_node, node_values

S = models.Service


def rows(db: Database) -> list[dict]:
    return table_rows(db, S)


def service(
    admin, host: str = "host1", binary: str = "nova-compute", topic: str = "compute", **more
):
    return nova.service_create(admin, {"host": host, "binary": binary, "topic": topic, **more})


@pytest.fixture
def settings():
    """Restores the module settings a test changes."""
    saved = services_module.enable_new_services, services_module.compute_topic
    yield services_module
    services_module.enable_new_services, services_module.compute_topic = saved


# -- create ----------------------------------------------------------------------------------


def test_create_returns_the_stored_row(nova_db, admin):
    s = service(admin, report_count=3)
    assert s.id and s.host == "host1" and s["binary"] == "nova-compute"
    assert s.disabled is False and s.report_count == 3 and s.deleted == 0
    assert s.compute_node == []  # not loaded: empty, never a lazy load
    [stored] = rows(nova_db)
    assert stored["id"] == s.id and stored["topic"] == "compute" and stored["created_at"]


def test_create_disabled_when_new_services_are_not_enabled(nova_db, admin, settings):
    settings.set_enable_new_services(False)
    s = service(admin, disabled=False)
    assert s.disabled is True and rows(nova_db)[0]["disabled"] is True
    settings.set_enable_new_services(True)
    assert service(admin, host="host2").disabled is False
    with pytest.raises(InvalidValue):
        settings.set_enable_new_services("no")
    with pytest.raises(InvalidValue):
        settings.set_compute_topic("")


def test_create_duplicates_raise_nova_errors_and_store_nothing(nova_db, admin):
    first = service(admin)
    with pytest.raises(exception.ServiceBinaryExists) as err:
        service(admin, topic="other-topic")
    assert "host1" in str(err.value) and "nova-compute" in str(err.value)
    with pytest.raises(exception.ServiceTopicExists) as err:
        service(admin, binary="nova-other")
    assert "compute" in str(err.value)
    assert [r["id"] for r in rows(nova_db)] == [first.id]
    # A deleted service does not block a new one with the same host, binary and topic.
    nova.service_destroy(admin, first.id)
    again = service(admin)
    assert again.id != first.id


def test_create_rejects_bad_values(nova_db, admin):
    with pytest.raises(InvalidQuery, match="bogus"):
        service(admin, bogus=1)
    with pytest.raises(InvalidValue):
        service(admin, host="h" * 256)
    with pytest.raises(InvalidValue):
        service(admin, disabled="yes")
    with pytest.raises(InvalidQuery):
        nova.service_create(admin, None)
    assert rows(nova_db) == []


# -- destroy ---------------------------------------------------------------------------------


def test_destroy_soft_deletes_the_service_and_its_compute_nodes(nova_db, admin):
    s, other = service(admin), service(admin, host="host2")
    node = make_node(admin, s.id)
    kept = make_node(admin, other.id)
    nova.service_destroy(admin, s.id)
    by_id = {r["id"]: r for r in rows(nova_db)}
    assert by_id[s.id]["deleted"] == s.id and by_id[s.id]["deleted_at"] is not None
    assert by_id[other.id]["deleted"] == 0
    nodes = {r["id"]: r for r in table_rows(nova_db, models.ComputeNode)}
    assert nodes[node.id]["deleted"] == node.id and nodes[kept.id]["deleted"] == 0
    with pytest.raises(exception.ServiceNotFound):
        nova.service_destroy(admin, s.id)  # already deleted: the context sees no such service
    with pytest.raises(exception.ServiceNotFound):
        nova.service_destroy(admin, 999)
    # A context reading deleted rows sees it: no error, nothing changes.
    before = rows(nova_db)
    nova.service_destroy(get_admin_context(read_deleted="yes"), s.id)
    assert rows(nova_db) == before


# -- reads -----------------------------------------------------------------------------------


def test_get_by_id_with_and_without_compute_nodes(nova_db, admin):
    s = service(admin)
    a, b = make_node(admin, s.id), make_node(admin, s.id)
    gone = make_node(admin, s.id)
    nova.compute_node_delete(admin, gone.id)
    got = nova.service_get(admin, s.id)
    assert got.id == s.id and got.compute_node == []
    joined = nova.service_get(admin, s.id, with_compute_node=True)
    assert [n.id for n in joined.compute_node] == [a.id, b.id]
    assert all(n.service is joined for n in joined.compute_node)
    assert joined.compute_node[0].vcpus == 4 and dict(joined)["host"] == "host1"
    assert (
        nova.service_get(admin, s.id, True).compute_node[1].hypervisor_hostname
        == b.hypervisor_hostname
    )
    with pytest.raises(exception.ServiceNotFound):
        nova.service_get(admin, 999)
    with pytest.raises(exception.ServiceNotFound):
        nova.service_get(admin, 999, with_compute_node=True)


def test_get_follows_the_contexts_read_deleted(nova_db, admin):
    s, live = service(admin), service(admin, host="host2")
    nova.service_destroy(admin, s.id)
    deleted_ok = get_admin_context(read_deleted="yes")
    only = get_admin_context(read_deleted="only")
    for with_nodes in (False, True):
        with pytest.raises(exception.ServiceNotFound):
            nova.service_get(admin, s.id, with_nodes)
        assert nova.service_get(deleted_ok, s.id, with_nodes).deleted == s.id
        assert nova.service_get(only, s.id, with_nodes).id == s.id
        with pytest.raises(exception.ServiceNotFound):
            nova.service_get(only, live.id, with_nodes)
    assert [x.id for x in nova.service_get_all(admin)] == [live.id]
    assert [x.id for x in nova.service_get_all(deleted_ok)] == [s.id, live.id]
    assert [x.id for x in nova.service_get_all(only)] == [s.id]


def test_get_all_filters_on_disabled_only_when_given(nova_db, admin):
    on = service(admin)
    off = service(admin, host="host2", disabled=True)
    assert [x.id for x in nova.service_get_all(admin)] == [on.id, off.id]
    assert [x.id for x in nova.service_get_all(admin, disabled=True)] == [off.id]
    assert [x.id for x in nova.service_get_all(admin, disabled=False)] == [on.id]
    assert [x.id for x in nova.service_get_all(admin, 1)] == [off.id]
    with pytest.raises(InvalidValue):
        nova.service_get_all(admin, disabled="false")


def test_get_all_by_host_and_by_topic(nova_db, admin):
    a = service(admin, "h1", "nova-compute", "compute")
    b = service(admin, "h1", "nova-network", "network", disabled=True)
    c = service(admin, "h2", "nova-compute", "compute")
    d = service(admin, "h3", "nova-compute", "compute", disabled=True)
    gone = service(admin, "h1", "nova-cert", "cert")
    nova.service_destroy(admin, gone.id)
    deleted_ok = get_admin_context(read_deleted="yes")
    # By host: live rows, disabled or not, whatever the context reads.
    for context in (admin, deleted_ok):
        assert [x.id for x in nova.service_get_all_by_host(context, "h1")] == [a.id, b.id]
        # By topic: live and enabled only.
        assert [x.id for x in nova.service_get_all_by_topic(context, "compute")] == [a.id, c.id]
    assert nova.service_get_all_by_host(admin, "H1") == []  # exact text on every backend
    assert nova.service_get_all_by_topic(admin, "network") == []
    assert d.id not in [x.id for x in nova.service_get_all_by_topic(admin, "compute")]


def test_get_by_args(nova_db, admin):
    s = service(admin)
    assert nova.service_get_by_args(admin, "host1", "nova-compute").id == s.id
    with pytest.raises(exception.HostBinaryNotFound) as err:
        nova.service_get_by_args(admin, "host1", "nova-network")
    assert "nova-network" in str(err.value) and "host1" in str(err.value)
    nova.service_destroy(admin, s.id)
    with pytest.raises(exception.HostBinaryNotFound):
        nova.service_get_by_args(admin, "host1", "nova-compute")
    # The context's read_deleted applies.
    got = nova.service_get_by_args(get_admin_context(read_deleted="yes"), "host1", "nova-compute")
    assert got.id == s.id


def test_get_by_host_and_topic_is_live_and_enabled_or_none(nova_db, admin):
    s = service(admin)
    off = service(admin, "host2", disabled=True)
    gone = service(admin, "host3")
    nova.service_destroy(admin, gone.id)
    assert nova.service_get_by_host_and_topic(admin, "host1", "compute").id == s.id
    assert nova.service_get_by_host_and_topic(admin, "host1", "network") is None
    deleted_ok = get_admin_context(read_deleted="yes")
    assert nova.service_get_by_host_and_topic(deleted_ok, off.host, "compute") is None
    assert nova.service_get_by_host_and_topic(deleted_ok, gone.host, "compute") is None


def test_get_by_compute_host_returns_the_service_with_its_live_nodes(nova_db, admin, settings):
    s = service(admin, disabled=True)  # disabled services are found too
    other = service(admin, "host2")
    a, b = make_node(admin, s.id), make_node(admin, s.id)
    gone = make_node(admin, s.id)
    nova.compute_node_delete(admin, gone.id)
    make_node(admin, other.id)
    got = nova.service_get_by_compute_host(admin, "host1")
    assert got.id == s.id and got.disabled is True
    assert [n.id for n in got.compute_node] == [a.id, b.id]
    assert all(n.service is got for n in got.compute_node)
    assert got.compute_node[0]["host_ip"] == "10.0.0.1" and got.compute_node[0].stats == "{}"
    assert dict(got)["topic"] == "compute"
    # No nodes: an empty list.
    bare = service(admin, "host3")
    assert nova.service_get_by_compute_host(admin, "host3").compute_node == []
    # Another topic is not a compute host; the setting names the topic.
    service(admin, "host4", "nova-network", "network")
    with pytest.raises(exception.ComputeHostNotFound) as err:
        nova.service_get_by_compute_host(admin, "host4")
    assert "host4" in str(err.value)
    settings.set_compute_topic("network")
    assert nova.service_get_by_compute_host(admin, "host4").host == "host4"
    settings.set_compute_topic("compute")
    # Deleted services are not found, whatever the context reads.
    nova.service_destroy(admin, bare.id)
    with pytest.raises(exception.ComputeHostNotFound):
        nova.service_get_by_compute_host(get_admin_context(read_deleted="yes"), "host3")
    with pytest.raises(exception.ComputeHostNotFound):
        nova.service_get_by_compute_host(admin, "HOST1")
    with pytest.raises(InvalidValue):
        nova.service_get_by_compute_host(admin, 42)


def test_get_by_compute_host_with_no_host(nova_db, admin):
    s = nova.service_create(admin, {"binary": "nova-compute", "topic": "compute"})
    assert nova.service_get_by_compute_host(admin, None).id == s.id


def test_hot_reads_join_the_callers_unit_of_work(nova_db, admin):
    # Inside a caller's unit (ORM objects pending): the reads see its uncommitted rows.
    with pytest.raises(RuntimeError), nova_db.session() as session:
        s = models.Service(host="host1", binary="nova-compute", topic="compute")
        session.add(s)
        session.flush()
        session.add(models.ComputeNode(**node_values(s.id)))
        assert [n.vcpus for n in nova.service_get_by_compute_host(admin, "host1").compute_node] == [
            4
        ]
        assert nova.compute_node_statistics(admin)["count"] == 1
        raise RuntimeError("the caller's transaction fails")
    assert rows(nova_db) == []
    with pytest.raises(exception.ComputeHostNotFound):
        nova.service_get_by_compute_host(admin, "host1")


# -- update ----------------------------------------------------------------------------------


def test_update(nova_db, admin):
    s = service(admin)
    got = nova.service_update(admin, s.id, {"disabled": True, "disabled_reason": "maint"})
    assert got.id == s.id and got.disabled is True and got.disabled_reason == "maint"
    [stored] = rows(nova_db)
    assert stored["disabled"] is True and stored["updated_at"] is not None
    with pytest.raises(exception.ServiceNotFound):
        nova.service_update(admin, 999, {"disabled": False})


def test_update_rejects_bad_values_and_duplicates_changing_nothing(nova_db, admin):
    s = service(admin)
    service(admin, host="host2")
    before = rows(nova_db)
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.service_update(admin, s.id, {"bogus": 1})
    with pytest.raises(InvalidValue):
        nova.service_update(admin, s.id, {"report_count": "many"})
    with pytest.raises(exception.DBDuplicateEntry) as err:
        nova.service_update(admin, s.id, {"host": "host2"})
    assert "host" in err.value.columns
    assert rows(nova_db) == before


def test_update_of_a_deleted_service_follows_read_deleted(nova_db, admin):
    s = service(admin)
    nova.service_destroy(admin, s.id)
    with pytest.raises(exception.ServiceNotFound):
        nova.service_update(admin, s.id, {"report_count": 1})
    got = nova.service_update(get_admin_context(read_deleted="yes"), s.id, {"report_count": 1})
    assert got.report_count == 1


# -- access ----------------------------------------------------------------------------------


def test_every_call_is_admin_only_and_changes_nothing(nova_db, admin, ctx):
    s = service(admin)
    before = rows(nova_db)
    calls = [
        lambda: nova.service_create(ctx, {"host": "x", "binary": "b", "topic": "t"}),
        lambda: nova.service_destroy(ctx, s.id),
        lambda: nova.service_get(ctx, s.id),
        lambda: nova.service_get_all(ctx),
        lambda: nova.service_get_all_by_host(ctx, "host1"),
        lambda: nova.service_get_all_by_topic(ctx, "compute"),
        lambda: nova.service_get_by_args(ctx, "host1", "nova-compute"),
        lambda: nova.service_get_by_compute_host(ctx, "host1"),
        lambda: nova.service_get_by_host_and_topic(ctx, "host1", "compute"),
        lambda: nova.service_update(ctx, s.id, {"disabled": True}),
    ]
    for call in calls:
        with pytest.raises(exception.AdminRequired):
            call()
    assert rows(nova_db) == before

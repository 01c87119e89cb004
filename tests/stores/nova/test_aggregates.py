"""Host aggregates (nova notes §2.16, §2.17, §3.8) on every backend: the aggregate shape
(hosts, metadetails, availability_zone), hosts and metadata, the by-host and by-key maps."""

from __future__ import annotations

import pytest

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import RequestContext, exception, models
from tests.stores.nova.conftest import table_rows

AGG, HOST, META = models.Aggregate, models.AggregateHost, models.AggregateMetadata


def everything(db: Database) -> tuple[list[dict], ...]:
    return table_rows(db, AGG), table_rows(db, HOST), table_rows(db, META)


def live_metadata(db: Database, aggregate_id: int) -> dict[str, str]:
    rows = [r for r in table_rows(db, META) if r["aggregate_id"] == aggregate_id]
    return {r["key"]: r["value"] for r in rows if r["deleted"] == 0}


def aggregate(context, name="agg", metadata=None, hosts=(), **values):
    made = nova.aggregate_create(context, {"name": name, **values}, metadata)
    for host in hosts:
        nova.aggregate_host_add(context, made.id, host)
    return nova.aggregate_get(context, made.id) if hosts else made


def test_create_returns_the_aggregate_with_hosts_and_metadata(nova_db, ctx):
    made = nova.aggregate_create(ctx, {"name": "agg"}, {"availability_zone": "az1", "k": "v"})
    assert made.id and made.name == "agg" and made.deleted == 0
    assert made.hosts == [] and made.metadetails == {"availability_zone": "az1", "k": "v"}
    assert made.availability_zone == "az1"
    as_dict = dict(made)
    assert as_dict["hosts"] == [] and as_dict["availability_zone"] == "az1"
    assert as_dict["metadetails"] == {"availability_zone": "az1", "k": "v"}
    assert as_dict["created_at"] is not None and as_dict["name"] == "agg"
    plain = nova.aggregate_create(ctx, {"name": "plain"})
    assert plain.metadetails == {} and plain.availability_zone is None
    # An availability zone among the values is metadata too.
    zoned = nova.aggregate_create(ctx, {"name": "zoned", "availability_zone": "az2"})
    assert zoned.metadetails == {"availability_zone": "az2"}
    assert live_metadata(nova_db, zoned.id) == {"availability_zone": "az2"}


def test_create_refuses_a_live_name_and_bad_values(nova_db, ctx):
    made = aggregate(ctx, metadata={"k": "v"})
    before = everything(nova_db)
    with pytest.raises(exception.AggregateNameExists) as caught:
        nova.aggregate_create(ctx, {"name": "agg"}, {"x": "y"})
    assert "agg" in str(caught.value)
    for values, metadata, error in (
        ({}, None, InvalidQuery),
        ({"name": "x", "bogus": 1}, None, InvalidQuery),
        ({"name": "x" * 256}, None, InvalidValue),
        ({"name": "x"}, ["k"], InvalidQuery),
        ({"name": "x"}, {"k": 1}, InvalidValue),
        (None, None, InvalidQuery),
    ):
        with pytest.raises(error):
            nova.aggregate_create(ctx, values, metadata)
    assert everything(nova_db) == before
    # A deleted aggregate's name is free.
    nova.aggregate_delete(ctx, made.id)
    assert nova.aggregate_create(ctx, {"name": "agg"}).id != made.id


def test_get_and_get_all_follow_read_deleted(nova_db, ctx):
    a = aggregate(ctx, "a", {"k": "1"}, hosts=["h1", "h2"])
    b = aggregate(ctx, "b", {"k": "2"}, hosts=["h2"])
    got = nova.aggregate_get(ctx, a.id)
    assert got.hosts == ["h1", "h2"] and got.metadetails == {"k": "1"}
    assert [(x.name, x.hosts) for x in nova.aggregate_get_all(ctx)] == [
        ("a", ["h1", "h2"]),
        ("b", ["h2"]),
    ]
    nova.aggregate_delete(ctx, a.id)
    with pytest.raises(exception.AggregateNotFound) as caught:
        nova.aggregate_get(ctx, a.id)
    assert str(a.id) in str(caught.value)
    assert [x.id for x in nova.aggregate_get_all(ctx)] == [b.id]
    with_deleted = RequestContext("user1", "project1", read_deleted="yes")
    gone = nova.aggregate_get(with_deleted, a.id)
    # A deleted aggregate shows neither hosts nor metadata (nova's joins wanted it live).
    assert gone.deleted == a.id and gone.hosts == [] and gone.metadetails == {}
    assert [x.id for x in nova.aggregate_get_all(with_deleted)] == [a.id, b.id]
    only = RequestContext("user1", "project1", read_deleted="only")
    assert [x.id for x in nova.aggregate_get_all(only)] == [a.id]
    with pytest.raises(InvalidValue):
        nova.aggregate_get(ctx, "1")


def test_update_name_metadata_and_zone(nova_db, ctx):
    made = aggregate(ctx, metadata={"availability_zone": "az1", "a": "1", "b": "2"})
    other = aggregate(ctx, "other")
    # The zone alone is merged into the metadata.
    updated = nova.aggregate_update(ctx, made.id, {"availability_zone": "az2"})
    assert updated.metadetails == {"availability_zone": "az2", "a": "1", "b": "2"}
    # A metadata key replaces the metadata; a zone given with it joins it.
    updated = nova.aggregate_update(
        ctx,
        made.id,
        {"name": "renamed", "metadata": {"a": "9", "c": "3"}, "availability_zone": "az3"},
    )
    assert updated.name == "renamed" and updated.updated_at is not None
    assert updated.metadetails == {"a": "9", "c": "3", "availability_zone": "az3"}
    assert live_metadata(nova_db, made.id) == {"a": "9", "c": "3", "availability_zone": "az3"}
    assert nova.aggregate_update(ctx, made.id, {"metadata": {}}).metadetails == {}
    # Its own name is no clash.
    assert nova.aggregate_update(ctx, made.id, {"name": "renamed"}).name == "renamed"
    values = {"name": "other", "metadata": {"x": "y"}}
    before = everything(nova_db)
    with pytest.raises(exception.AggregateNameExists):
        nova.aggregate_update(ctx, made.id, values)
    assert values == {"name": "other", "metadata": {"x": "y"}}  # the caller's dict untouched
    with pytest.raises(exception.AggregateNotFound):
        nova.aggregate_update(ctx, other.id + 100, {"metadata": {"x": "y"}})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.aggregate_update(ctx, made.id, {"bogus": 1, "metadata": {"x": "y"}})
    with pytest.raises(InvalidQuery):
        nova.aggregate_update(ctx, made.id, {"metadata": "x=y"})
    assert everything(nova_db) == before


def test_delete_soft_deletes_the_aggregate_and_its_metadata_not_its_hosts(nova_db, ctx):
    made = aggregate(ctx, metadata={"a": "1"}, hosts=["h1"])
    kept = aggregate(ctx, "kept", {"a": "2"}, hosts=["h1"])
    assert nova.aggregate_delete(ctx, made.id) is None
    aggregates, hosts, metadata = everything(nova_db)
    assert {a["id"]: a["deleted"] for a in aggregates} == {made.id: made.id, kept.id: 0}
    assert all(h["deleted"] == 0 for h in hosts)  # left live, as nova left them
    assert {m["aggregate_id"]: m["deleted"] != 0 for m in metadata} == {
        made.id: True,
        kept.id: False,
    }
    before = everything(nova_db)
    with pytest.raises(exception.AggregateNotFound):
        nova.aggregate_delete(ctx, made.id)
    assert everything(nova_db) == before
    assert nova.aggregate_get_by_host(ctx, "h1")[0].id == kept.id


def test_hosts_add_list_delete(nova_db, ctx):
    made = aggregate(ctx)
    assert nova.aggregate_host_add(ctx, made.id, "h1") is None
    nova.aggregate_host_add(ctx, made.id, "h2")
    assert nova.aggregate_host_get_all(ctx, made.id) == ["h1", "h2"]
    before = everything(nova_db)
    with pytest.raises(exception.AggregateHostExists) as caught:
        nova.aggregate_host_add(ctx, made.id, "h1")
    assert "h1" in str(caught.value)
    with pytest.raises(exception.AggregateHostNotFound) as caught:
        nova.aggregate_host_delete(ctx, made.id, "h9")
    assert "h9" in str(caught.value)
    missing = made.id + 100
    for call in (
        lambda: nova.aggregate_host_add(ctx, missing, "h1"),
        lambda: nova.aggregate_host_delete(ctx, missing, "h1"),
        lambda: nova.aggregate_host_get_all(ctx, missing),
    ):
        with pytest.raises(exception.AggregateNotFound):
            call()
    with pytest.raises(InvalidValue):
        nova.aggregate_host_add(ctx, made.id, None)
    with pytest.raises(InvalidValue):
        nova.aggregate_host_add(ctx, made.id, "h" * 256)
    assert everything(nova_db) == before
    assert nova.aggregate_host_delete(ctx, made.id, "h1") is None
    assert nova.aggregate_host_get_all(ctx, made.id) == ["h2"]
    assert nova.aggregate_get(ctx, made.id).hosts == ["h2"]
    with_deleted = RequestContext("user1", "project1", read_deleted="yes")
    assert nova.aggregate_host_get_all(with_deleted, made.id) == ["h1", "h2"]
    nova.aggregate_host_add(ctx, made.id, "h1")  # the slot is free again
    assert nova.aggregate_host_get_all(ctx, made.id) == ["h2", "h1"]


def test_metadata_add_get_delete(nova_db, ctx):
    made = aggregate(ctx, metadata={"a": "1", "b": "2"})
    assert nova.aggregate_metadata_add(ctx, made.id, {"b": "3", "c": "4"}) is None
    assert nova.aggregate_metadata_get(ctx, made.id) == {"a": "1", "b": "3", "c": "4"}
    # set_delete: replace semantics.
    nova.aggregate_metadata_add(ctx, made.id, {"c": "5", "d": "6"}, set_delete=True)
    assert nova.aggregate_metadata_get(ctx, made.id) == {"c": "5", "d": "6"}
    assert live_metadata(nova_db, made.id) == {"c": "5", "d": "6"}
    assert nova.aggregate_metadata_delete(ctx, made.id, "c") is None
    assert nova.aggregate_get(ctx, made.id).metadetails == {"d": "6"}
    with_deleted = RequestContext("user1", "project1", read_deleted="yes")
    assert nova.aggregate_metadata_get(with_deleted, made.id) == {
        "a": "1",
        "b": "3",
        "c": "5",
        "d": "6",
    }
    before = everything(nova_db)
    with pytest.raises(exception.AggregateMetadataNotFound) as caught:
        nova.aggregate_metadata_delete(ctx, made.id, "c")
    assert "c" in str(caught.value) and str(made.id) in str(caught.value)
    missing = made.id + 100
    for call in (
        lambda: nova.aggregate_metadata_add(ctx, missing, {"a": "1"}),
        lambda: nova.aggregate_metadata_delete(ctx, missing, "d"),
        lambda: nova.aggregate_metadata_get(ctx, missing),
    ):
        with pytest.raises(exception.AggregateNotFound):
            call()
    with pytest.raises(InvalidQuery):
        nova.aggregate_metadata_add(ctx, made.id, None)
    with pytest.raises(InvalidValue):
        nova.aggregate_metadata_add(ctx, made.id, {"a": None})
    with pytest.raises(InvalidValue):
        nova.aggregate_metadata_add(ctx, made.id, {"k" * 256: "v"})
    assert everything(nova_db) == before
    # An empty dict with set_delete removes everything.
    nova.aggregate_metadata_add(ctx, made.id, {}, set_delete=True)
    assert nova.aggregate_metadata_get(ctx, made.id) == {}


def test_lookups_by_host_and_by_key(nova_db, ctx):
    a = aggregate(ctx, "a", {"availability_zone": "az1", "ssd": "yes"}, hosts=["h1", "h2"])
    b = aggregate(ctx, "b", {"availability_zone": "az2"}, hosts=["h1", "h3"])
    c = aggregate(ctx, "c", {"ssd": "no"}, hosts=["h3"])
    d = aggregate(ctx, "d", {"availability_zone": "az9"}, hosts=["h1"])
    aggregate(ctx, "empty", hosts=["h4"])
    nova.aggregate_delete(ctx, d.id)

    by_host = nova.aggregate_get_by_host(ctx, "h1")
    assert [x.id for x in by_host] == [a.id, b.id]
    assert by_host[0].hosts == ["h1", "h2"]  # every host, not only the one asked for
    assert by_host[0].metadetails == {"availability_zone": "az1", "ssd": "yes"}
    assert [x.id for x in nova.aggregate_get_by_host(ctx, "h1", key="ssd")] == [a.id]
    assert nova.aggregate_get_by_host(ctx, "h9") == []

    by_key = nova.aggregate_get_by_metadata_key(ctx, "ssd")
    assert [x.id for x in by_key] == [a.id, c.id]
    # Their metadata holds the key asked for only; their hosts are all there.
    assert [x.metadetails for x in by_key] == [{"ssd": "yes"}, {"ssd": "no"}]
    assert by_key[0].hosts == ["h1", "h2"] and by_key[0].availability_zone is None
    # A later full read of the same aggregate has all its metadata again.
    assert nova.aggregate_get(ctx, a.id).metadetails == {"availability_zone": "az1", "ssd": "yes"}

    assert nova.aggregate_host_get_by_metadata_key(ctx, "availability_zone") == {
        "h1": {"az1", "az2"},
        "h2": {"az1"},
        "h3": {"az2"},
    }
    assert nova.aggregate_host_get_by_metadata_key(ctx, "nothing") == {}
    assert nova.aggregate_metadata_get_by_host(ctx, "h1") == {
        "availability_zone": {"az1", "az2"},
        "ssd": {"yes"},
    }
    assert nova.aggregate_metadata_get_by_host(ctx, "h3", key="ssd") == {"ssd": {"no"}}
    assert nova.aggregate_metadata_get_by_host(ctx, "h4") == {}
    assert nova.aggregate_metadata_get_by_metadata_key(ctx, a.id, "ssd") == {"ssd": {"yes"}}
    assert nova.aggregate_metadata_get_by_metadata_key(ctx, a.id, "nothing") == {}
    assert nova.aggregate_metadata_get_by_metadata_key(ctx, d.id, "availability_zone") == {}
    # Deleted host and metadata rows do not count.
    nova.aggregate_host_delete(ctx, b.id, "h1")
    nova.aggregate_metadata_delete(ctx, a.id, "ssd")
    assert [x.id for x in nova.aggregate_get_by_host(ctx, "h1")] == [a.id]
    assert nova.aggregate_metadata_get_by_host(ctx, "h1") == {"availability_zone": {"az1"}}
    assert [x.id for x in nova.aggregate_get_by_metadata_key(ctx, "ssd")] == [c.id]


def test_no_role_is_checked(nova_db):
    # nova's aggregate calls check no context: even a context that is neither admin nor
    # user may call them.
    half = RequestContext("user1", None)
    made = aggregate(half, metadata={"k": "v"}, hosts=["h1"])
    assert nova.aggregate_get(half, made.id).hosts == ["h1"]
    assert nova.aggregate_metadata_get_by_host(half, "h1") == {"k": {"v"}}

"""Instance groups: create, get, update, delete, and their policies, metadata and members."""

from __future__ import annotations

import uuid

import pytest

import dblayer.stores.nova as nova
from dblayer.core import InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, models
from tests.stores.nova.conftest import table_rows


def _make(ctx, **kw):
    values = {"name": "g", "project_id": ctx.project_id, "user_id": ctx.user_id}
    return nova.instance_group_create(
        ctx,
        values,
        policies=kw.get("policies", ["anti-affinity"]),
        metadata=kw.get("metadata", {"k1": "v1"}),
        members=kw.get("members", ["i1", "i2"]),
    )


def test_create_and_get(nova_db, ctx):
    group = _make(ctx)
    assert uuid.UUID(group.uuid)
    assert group.policies == ["anti-affinity"]
    assert group.metadetails == {"k1": "v1"}
    assert sorted(group.members) == ["i1", "i2"]
    again = nova.instance_group_get(ctx, group.uuid)
    assert (again.id, again.name, again["project_id"]) == (group.id, "g", "project1")
    assert again.policies == ["anti-affinity"] and again.metadetails == {"k1": "v1"}
    # dict(row) has the columns only, as in nova.
    assert "policies" not in dict(again) and dict(again)["uuid"] == group.uuid


def test_create_with_a_given_uuid_and_the_duplicate(nova_db, ctx):
    given = str(uuid.uuid4())
    group = nova.instance_group_create(ctx, {"uuid": given, "name": "a"})
    assert group.uuid == given and group.policies == [] and group.members == []
    with pytest.raises(exception.InstanceGroupIdExists):
        nova.instance_group_create(ctx, {"uuid": given, "name": "b"}, policies=["x"])
    assert [r["name"] for r in table_rows(nova_db, models.InstanceGroup)] == ["a"]
    assert table_rows(nova_db, models.InstanceGroupPolicy) == []


def test_create_rejects_bad_values_and_stores_nothing(nova_db, ctx):
    with pytest.raises(InvalidQuery):
        nova.instance_group_create(ctx, {"colour": "red"})
    with pytest.raises(InvalidValue):
        nova.instance_group_create(ctx, {"name": "x" * 256})
    with pytest.raises(InvalidQuery):
        nova.instance_group_create(ctx, {"name": "a"}, policies="affinity")
    with pytest.raises(InvalidQuery):
        nova.instance_group_create(ctx, {"name": "a"}, metadata=["k"])
    assert table_rows(nova_db, models.InstanceGroup) == []


def test_get_all_and_by_project(nova_db, ctx, other_ctx):
    mine, theirs = _make(ctx), _make(other_ctx, members=[])
    assert [g.uuid for g in nova.instance_group_get_all(ctx)] == [mine.uuid, theirs.uuid]
    found = nova.instance_group_get_all_by_project_id(ctx, "project2")
    assert [g.uuid for g in found] == [theirs.uuid] and found[0].members == []
    assert nova.instance_group_get_all_by_project_id(ctx, "nobody") == []


def test_missing_groups_are_not_found(nova_db, ctx):
    missing = str(uuid.uuid4())
    calls = [
        lambda: nova.instance_group_get(ctx, missing),
        lambda: nova.instance_group_update(ctx, missing, {"name": "x"}),
        lambda: nova.instance_group_delete(ctx, missing),
        lambda: nova.instance_group_members_add(ctx, missing, ["i"]),
        lambda: nova.instance_group_members_get(ctx, missing),
        lambda: nova.instance_group_member_delete(ctx, missing, "i"),
        lambda: nova.instance_group_metadata_add(ctx, missing, {"a": "b"}),
        lambda: nova.instance_group_metadata_get(ctx, missing),
        lambda: nova.instance_group_metadata_delete(ctx, missing, "a"),
        lambda: nova.instance_group_policies_add(ctx, missing, ["p"]),
        lambda: nova.instance_group_policies_get(ctx, missing),
        lambda: nova.instance_group_policy_delete(ctx, missing, "p"),
        lambda: nova.instance_group_get(ctx, None),
    ]
    for call in calls:
        with pytest.raises(exception.InstanceGroupNotFound):
            call()


def test_members(nova_db, ctx):
    group = _make(ctx)
    assert nova.instance_group_members_add(ctx, group.uuid, ["i2", "i3", "i3"]) == [
        "i2",
        "i3",
        "i3",
    ]
    assert sorted(nova.instance_group_members_get(ctx, group.uuid)) == ["i1", "i2", "i3"]
    nova.instance_group_members_add(ctx, group.uuid, ["i3", "i4"], set_delete=True)
    assert sorted(nova.instance_group_members_get(ctx, group.uuid)) == ["i3", "i4"]
    nova.instance_group_member_delete(ctx, group.uuid, "i3")
    assert nova.instance_group_members_get(ctx, group.uuid) == ["i4"]
    with pytest.raises(exception.InstanceGroupMemberNotFound):
        nova.instance_group_member_delete(ctx, group.uuid, "i3")
    live = [r for r in table_rows(nova_db, models.InstanceGroupMember) if r["deleted"] == 0]
    assert [r["instance_id"] for r in live] == ["i4"]


def test_metadata(nova_db, ctx):
    group = _make(ctx)
    assert nova.instance_group_metadata_add(ctx, group.uuid, {"k1": "new", "k2": "b"}) == {
        "k1": "new",
        "k2": "b",
    }
    assert nova.instance_group_metadata_get(ctx, group.uuid) == {"k1": "new", "k2": "b"}
    nova.instance_group_metadata_add(ctx, group.uuid, {"k3": "c"}, set_delete=True)
    assert nova.instance_group_metadata_get(ctx, group.uuid) == {"k3": "c"}
    nova.instance_group_metadata_delete(ctx, group.uuid, "k3")
    assert nova.instance_group_metadata_get(ctx, group.uuid) == {}
    with pytest.raises(exception.InstanceGroupMetadataNotFound):
        nova.instance_group_metadata_delete(ctx, group.uuid, "k3")


def test_policies(nova_db, ctx):
    group = _make(ctx)
    nova.instance_group_policies_add(ctx, group.uuid, ["affinity", "anti-affinity"])
    assert sorted(nova.instance_group_policies_get(ctx, group.uuid)) == [
        "affinity",
        "anti-affinity",
    ]
    nova.instance_group_policies_add(ctx, group.uuid, ["x"], set_delete=True)
    assert nova.instance_group_policies_get(ctx, group.uuid) == ["x"]
    nova.instance_group_policy_delete(ctx, group.uuid, "x")
    assert nova.instance_group_policies_get(ctx, group.uuid) == []
    with pytest.raises(exception.InstanceGroupPolicyNotFound):
        nova.instance_group_policy_delete(ctx, group.uuid, "x")


def test_update_replaces_sets_and_sets_columns(nova_db, ctx):
    group = _make(ctx)
    assert (
        nova.instance_group_update(
            ctx,
            group.uuid,
            {"name": "renamed", "policies": ["p2"], "metadata": {"m": "1"}, "members": ["z"]},
        )
        is None
    )
    again = nova.instance_group_get(ctx, group.uuid)
    assert (again.name, again.policies, again.metadetails, again.members) == (
        "renamed",
        ["p2"],
        {"m": "1"},
        ["z"],
    )
    nova.instance_group_update(ctx, group.uuid, {"user_id": "u9"})
    again = nova.instance_group_get(ctx, group.uuid)
    assert again.user_id == "u9" and again.policies == ["p2"]
    with pytest.raises(InvalidQuery):
        nova.instance_group_update(ctx, group.uuid, {"bogus": 1})
    with pytest.raises(InvalidValue):
        nova.instance_group_update(ctx, group.uuid, {"name": "n" * 300, "policies": ["q"]})
    assert nova.instance_group_get(ctx, group.uuid).policies == ["p2"]


def test_delete_soft_deletes_the_group_and_its_sets(nova_db, ctx):
    group = _make(ctx)
    nova.instance_group_delete(ctx, group.uuid)
    with pytest.raises(exception.InstanceGroupNotFound):
        nova.instance_group_get(ctx, group.uuid)
    for model in (
        models.InstanceGroup,
        models.InstanceGroupPolicy,
        models.InstanceGroupMember,
        models.InstanceGroupMetadata,
    ):
        assert all(r["deleted"] == r["id"] for r in table_rows(nova_db, model))
    deleted = nova.instance_group_get(ctx.elevated(read_deleted="yes"), group.uuid)
    assert deleted.uuid == group.uuid and deleted.policies == []  # only live children show
    assert [g.uuid for g in nova.instance_group_get_all(ctx.elevated(read_deleted="only"))] == [
        group.uuid
    ]
    # The uuid is free again.
    assert nova.instance_group_create(ctx, {"uuid": group.uuid}).uuid == group.uuid

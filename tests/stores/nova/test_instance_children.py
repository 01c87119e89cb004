"""What hangs off an instance: metadata, system metadata, info cache and faults, and the
project's default security group (security_group_ensure_default), on every backend."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import InvalidQuery, InvalidValue
from dblayer.stores.nova import RequestContext, exception, models
from dblayer.stores.nova.api import instances, security_groups


def _create(ctx, **values) -> str:
    return nova.instance_create(ctx, values).uuid


def _rows(db, model, *where) -> list[dict]:
    table = model.__table__
    with db.transaction() as conn:
        stmt = sa.select(table).where(*where).order_by(table.c.id)
        return [dict(r) for r in conn.execute(stmt).mappings()]


def _live(db, model, instance_uuid) -> dict:
    rows = _rows(db, model, model.instance_uuid == instance_uuid, model.deleted == 0)
    return {r["key"]: r["value"] for r in rows}


# -- instance metadata -----------------------------------------------------------------------


def test_metadata_update_get_and_delete(nova_db, ctx):
    inst = _create(ctx, metadata={"a": "1", "b": "2"})
    other = _create(ctx, metadata={"a": "x"})
    given = {"b": "3", "c": "4"}
    assert nova.instance_metadata_update(ctx, inst, given, False) is given
    assert nova.instance_metadata_get(ctx, inst) == {"a": "1", "b": "3", "c": "4"}
    # "b" changed in place: still one row for it.
    assert len(_rows(nova_db, models.InstanceMetadata, models.InstanceMetadata.key == "b")) == 1

    assert nova.instance_metadata_update(ctx, inst, {"c": "5"}, True) == {"c": "5"}
    assert nova.instance_metadata_get(ctx, inst) == {"c": "5"}
    deleted = _rows(nova_db, models.InstanceMetadata, models.InstanceMetadata.deleted != 0)
    assert sorted(r["key"] for r in deleted) == ["a", "b"]
    assert all(r["deleted"] == r["id"] and r["deleted_at"] for r in deleted)

    nova.instance_metadata_delete(ctx, inst, "c")
    nova.instance_metadata_delete(ctx, inst, "never-there")  # silent
    assert nova.instance_metadata_get(ctx, inst) == {}
    assert nova.instance_metadata_update(ctx, inst, {}, True) == {}
    # The other instance's rows were never touched.
    assert nova.instance_metadata_get(ctx, other) == {"a": "x"}
    assert nova.instance_metadata_get(ctx, str(uuid.uuid4())) == {}


def test_metadata_errors_and_access(nova_db, ctx, other_ctx, admin):
    inst = _create(ctx, metadata={"a": "1"})
    before = _rows(nova_db, models.InstanceMetadata)
    with pytest.raises(InvalidQuery, match="metadata"):
        nova.instance_metadata_update(ctx, inst, ["a"], False)
    with pytest.raises(InvalidValue, match="key"):
        nova.instance_metadata_update(ctx, inst, {1: "a"}, False)
    with pytest.raises(InvalidValue, match="255"):
        nova.instance_metadata_update(ctx, inst, {"a": "x" * 256}, False)
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_metadata_update(admin, str(uuid.uuid4()), {"a": "1"}, False)
    # Another project's instance: invisible to reads, not there for writes.
    assert nova.instance_metadata_get(other_ctx, inst) == {}
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_metadata_update(other_ctx, inst, {"a": "2"}, True)
    nova.instance_metadata_delete(other_ctx, inst, "a")
    with pytest.raises(exception.Forbidden):
        nova.instance_metadata_get(RequestContext(None, "project1"), inst)
    with pytest.raises(exception.Forbidden):
        nova.instance_metadata_delete(RequestContext("user1", None), inst, "a")
    assert _rows(nova_db, models.InstanceMetadata) == before
    assert nova.instance_metadata_get(admin, inst) == {"a": "1"}
    nova.instance_metadata_update(admin, inst, {"b": "2"}, False)
    assert nova.instance_metadata_get(ctx, inst) == {"a": "1", "b": "2"}


# -- system metadata -------------------------------------------------------------------------


def test_system_metadata_update_and_get(nova_db, ctx, other_ctx):
    inst = _create(ctx, system_metadata={"a": "1", "b": "2"})
    assert nova.instance_system_metadata_update(ctx, inst, {"b": "3", "c": "4"}, False) is None
    assert nova.instance_system_metadata_get(ctx, inst) == {"a": "1", "b": "3", "c": "4"}
    assert nova.instance_system_metadata_update(ctx, inst, {"c": "5"}, True) is None
    assert _live(nova_db, models.InstanceSystemMetadata, inst) == {"c": "5"}
    assert nova.instance_system_metadata_get(ctx, inst) == {"c": "5"}
    # The context's read_deleted decides which rows the getter reads.
    yes = RequestContext("user1", "project1", read_deleted="yes")
    only = RequestContext("user1", "project1", read_deleted="only")
    assert nova.instance_system_metadata_get(yes, inst) == {"a": "1", "b": "3", "c": "5"}
    assert nova.instance_system_metadata_get(only, inst) == {"a": "1", "b": "3"}
    # ... but updates always work on the live rows.
    nova.instance_system_metadata_update(only, inst, {"a": "9"}, False)
    assert _live(nova_db, models.InstanceSystemMetadata, inst) == {"a": "9", "c": "5"}

    before = _rows(nova_db, models.InstanceSystemMetadata)
    assert nova.instance_system_metadata_get(other_ctx, inst) == {}
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_system_metadata_update(other_ctx, inst, {"x": "y"}, False)
    with pytest.raises(InvalidQuery):
        nova.instance_system_metadata_update(ctx, inst, None, False)
    with pytest.raises(exception.Forbidden):
        nova.instance_system_metadata_get(RequestContext(None, None), inst)
    assert _rows(nova_db, models.InstanceSystemMetadata) == before


# -- info cache ------------------------------------------------------------------------------


def test_info_cache_get_update_and_delete(nova_db, ctx):
    inst = _create(ctx, info_cache={"network_info": "[]"})
    cache = nova.instance_info_cache_get(ctx, inst)
    assert (cache.instance_uuid, cache.network_info, cache.deleted) == (inst, "[]", 0)
    updated = nova.instance_info_cache_update(ctx, inst, {"network_info": '[{"id": 1}]'})
    assert updated.network_info == '[{"id": 1}]' and updated.updated_at is not None
    (row,) = _rows(nova_db, models.InstanceInfoCache)
    assert row["network_info"] == '[{"id": 1}]'

    nova.instance_info_cache_delete(ctx, inst)
    nova.instance_info_cache_delete(ctx, str(uuid.uuid4()))  # silent
    assert nova.instance_info_cache_get(ctx, inst) is None
    yes = RequestContext("user1", "project1", read_deleted="yes")
    assert nova.instance_info_cache_get(yes, inst).deleted != 0
    # A deleted cache is not brought back to life.
    with pytest.raises(exception.InstanceInfoCacheNotFound):
        nova.instance_info_cache_update(ctx, inst, {"network_info": "[]"})
    (row,) = _rows(nova_db, models.InstanceInfoCache)
    assert row["network_info"] == '[{"id": 1}]' and row["deleted"] == row["id"]


def test_info_cache_update_recreates_a_missing_row(nova_db, ctx, admin):
    inst = _create(ctx)
    with nova.get_database().transaction() as conn:
        conn.execute(sa.delete(models.InstanceInfoCache.__table__))
    assert nova.instance_info_cache_get(ctx, inst) is None
    made = nova.instance_info_cache_update(ctx, inst, {"network_info": "[1]"})
    assert (made.instance_uuid, made.network_info, made.deleted) == (inst, "[1]", 0)
    assert nova.instance_info_cache_get(ctx, inst).id == made.id
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_info_cache_update(admin, str(uuid.uuid4()), {"network_info": "[]"})


def test_info_cache_errors_and_access(nova_db, ctx, other_ctx):
    inst = _create(ctx, info_cache={"network_info": "[]"})
    before = _rows(nova_db, models.InstanceInfoCache)
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.instance_info_cache_update(ctx, inst, {"bogus": 1})
    assert nova.instance_info_cache_get(other_ctx, inst) is None
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_info_cache_update(other_ctx, inst, {"network_info": "x"})
    nova.instance_info_cache_delete(other_ctx, inst)
    with pytest.raises(exception.Forbidden):
        nova.instance_info_cache_get(RequestContext("user1", None), inst)
    assert _rows(nova_db, models.InstanceInfoCache) == before


# -- faults ----------------------------------------------------------------------------------


def test_faults_create_and_get(nova_db, ctx, admin):
    a, b = _create(ctx), _create(ctx)
    first = nova.instance_fault_create(
        ctx, {"instance_uuid": a, "code": 404, "message": "lost", "details": "x" * 70000}
    )
    assert isinstance(first, dict)
    assert (first["instance_uuid"], first["code"], first["message"]) == (a, 404, "lost")
    assert len(first["details"]) == 70000 and first["id"] and first["created_at"]
    second = nova.instance_fault_create(admin, {"instance_uuid": a, "code": 500, "host": "h"})
    # A fault without any context check (nova's instance_fault_* have none).
    nova.instance_fault_create(RequestContext(None, None), {"instance_uuid": b, "code": 1})

    got = nova.instance_fault_get_by_instance_uuids(ctx, [a, b, "nope"])
    assert list(got) == [a, b, "nope"]
    # Newest first (ids break ties between equal times).
    assert [f["id"] for f in got[a]] == [second["id"], first["id"]]
    assert got[a][1] == first and [f["code"] for f in got[b]] == [1] and got["nope"] == []
    assert nova.instance_fault_get_by_instance_uuids(ctx, []) == {}

    with nova.get_database().transaction() as conn:
        t = models.InstanceFault.__table__
        conn.execute(sa.update(t).where(t.c.id == first["id"]).values(deleted=t.c.id))
        conn.execute(
            sa.update(t).where(t.c.id == second["id"]).values(created_at=dt.datetime(2000, 1, 1))
        )
    assert [f["id"] for f in nova.instance_fault_get_by_instance_uuids(ctx, (a,))[a]] == [
        second["id"]
    ]


def test_fault_errors_change_nothing(nova_db, ctx):
    inst = _create(ctx)
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.instance_fault_create(ctx, {"instance_uuid": inst, "code": 1, "bogus": 2})
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_fault_create(ctx, {"instance_uuid": str(uuid.uuid4()), "code": 1})
    with pytest.raises(InvalidValue, match="code"):
        nova.instance_fault_create(ctx, {"instance_uuid": inst, "code": "500"})
    with pytest.raises(InvalidQuery):
        nova.instance_fault_get_by_instance_uuids(ctx, inst)
    assert _rows(nova_db, models.InstanceFault) == []


# -- security_group_ensure_default -----------------------------------------------------------


def test_ensure_default_creates_the_group_once(nova_db, ctx, admin):
    with nova.get_database().session() as session:
        session.add(
            models.SecurityGroupIngressDefaultRule(
                protocol="tcp", from_port=22, to_port=22, cidr="10.0.0.5/24"
            )
        )
        gone = models.SecurityGroupIngressDefaultRule(protocol="udp", from_port=1, to_port=2)
        session.add(gone)
        session.flush()
        gone.soft_delete(session)

    group = nova.security_group_ensure_default(ctx)
    assert (group.name, group.description, group.project_id, group.user_id) == (
        "default",
        "default",
        "project1",
        "user1",
    )
    assert [(r.protocol, r.from_port, r.to_port, r.cidr) for r in group.rules] == [
        ("tcp", 22, 22, "10.0.0.0/24")
    ]
    (usage,) = _rows(nova_db, models.QuotaUsage)
    assert (usage["project_id"], usage["user_id"], usage["resource"]) == (
        "project1",
        "user1",
        "security_groups",
    )
    assert (usage["in_use"], usage["reserved"]) == (1, 0) and usage["updated_at"] is not None

    # Found, not made again: the same group, no new rules, no quota change.
    again = nova.security_group_ensure_default(RequestContext("user2", "project1"))
    assert again.id == group.id and len(again.rules) == 1
    assert len(_rows(nova_db, models.SecurityGroup)) == 1
    assert len(_rows(nova_db, models.SecurityGroupIngressRule)) == 1
    assert _rows(nova_db, models.QuotaUsage)[0]["in_use"] == 1

    # Another user's usage row of the same project already counting: incremented.
    with nova.get_database().transaction() as conn:
        conn.execute(
            sa.insert(models.QuotaUsage.__table__).values(
                project_id="project2",
                user_id="user2",
                resource="security_groups",
                in_use=3,
                reserved=0,
            )
        )
    other = nova.security_group_ensure_default(RequestContext("user2", "project2"))
    assert other.id != group.id and other.project_id == "project2"
    usages = _rows(nova_db, models.QuotaUsage, models.QuotaUsage.project_id == "project2")
    assert [u["in_use"] for u in usages] == [4]

    # An admin context has no project: its default group is the one of no project.
    mine = nova.security_group_ensure_default(admin)
    assert mine.project_id is None and mine.user_id is None
    assert nova.security_group_ensure_default(admin).id == mine.id
    # A deleted default group does not count: a new one is made.
    with nova.get_database().session() as session:
        session.get(models.SecurityGroup, group.id).soft_delete(session)
    assert nova.security_group_ensure_default(ctx).id not in (group.id, other.id, mine.id)


def test_ensure_default_takes_the_group_a_racing_creator_made(nova_db, ctx, monkeypatch):
    made = nova.security_group_ensure_default(ctx)
    # As if another transaction created it between this one's look and its insert.
    real = security_groups._default_group_id
    calls = []

    def not_there_yet(project_id):
        calls.append(project_id)
        return None if len(calls) == 1 else real(project_id)

    monkeypatch.setattr(security_groups, "_default_group_id", not_there_yet)

    class NotThereYet:  # instance_create's own first look at the group misses it too
        def all(self, conn, **params):
            return []

    monkeypatch.setattr(instances, "_DEFAULT_GROUP_QUERY", NotThereYet())
    instance = nova.instance_create(ctx, {"security_groups": ["default"]})
    assert calls == ["project1", "project1"]
    assert [g.id for g in instance.security_groups] == [made.id]
    assert len(_rows(nova_db, models.SecurityGroup)) == 1
    assert [u["in_use"] for u in _rows(nova_db, models.QuotaUsage)] == [1]

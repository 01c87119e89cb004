"""One instance at a time: instance_create, instance_get, instance_get_by_uuid,
instance_update, instance_update_and_get_original and instance_destroy, on every backend,
with their not-found, conflict and access errors, read_deleted and columns_to_join."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import InvalidQuery, InvalidValue
from dblayer.stores.nova import RequestContext, exception, models
from dblayer.stores.nova.api import instances

T0 = dt.datetime(2014, 7, 1, 12, 30, 15, 123456)
# What one instance owns, by table (all keyed by instance_uuid).
OWNED = (
    models.InstanceMetadata,
    models.InstanceSystemMetadata,
    models.InstanceInfoCache,
    models.InstanceFault,
    models.SecurityGroupInstanceAssociation,
)


def _create(ctx, **values):
    values.setdefault("project_id", ctx.project_id)
    values.setdefault("user_id", ctx.user_id)
    return nova.instance_create(ctx, values)


def _rows(db, model, *where) -> list[dict]:
    table = model.__table__
    with db.transaction() as conn:
        stmt = sa.select(table).where(*where).order_by(table.c.id)
        return [dict(r) for r in conn.execute(stmt).mappings()]


def _snapshot(db) -> dict[str, list[dict]]:
    """Every row of the tables instance calls write."""
    tables = (
        models.Instance,
        models.InstanceIdMapping,
        models.SecurityGroup,
        models.SecurityGroupIngressRule,
        models.QuotaUsage,
        *OWNED,
    )
    return {m.__tablename__: _rows(db, m) for m in tables}


def _pairs(rows) -> dict:
    return {r.key: r.value for r in rows}


# -- instance_create -------------------------------------------------------------------------


def test_create_writes_the_instance_and_everything_it_owns(nova_db, ctx):
    created = _create(
        ctx,
        hostname="web-1",
        display_name="web",
        launched_at="2014-07-01T12:30:15.123456",
        access_ip_v6="2001:0db8:0000:0000:0000:0000:0000:0001",
        metadata={"role": "web"},
        system_metadata={"image_os": "linux", "flavor": "m1"},
        info_cache={"network_info": "[]"},
        security_groups=["default"],
    )
    uuid.UUID(created.uuid)  # generated
    assert created.id and created.name == f"instance-{created.id:08x}"
    assert created.project_id == "project1" and created.user_id == "user1"
    assert created.launched_at == T0 and created.deleted == 0
    assert created.access_ip_v6 == "2001:db8::1"
    assert _pairs(created.metadata) == {"role": "web"}
    assert _pairs(created.system_metadata) == {"image_os": "linux", "flavor": "m1"}
    assert created.info_cache.network_info == "[]"
    assert [g.name for g in created.security_groups] == ["default"]
    assert created.security_groups[0].rules == []
    assert dict(created)["name"] == created.name

    # The rows are there, with the EC2 id mapping and the project's default group.
    (row,) = _rows(nova_db, models.Instance)
    assert row["uuid"] == created.uuid and row["launched_at"] == T0
    assert [m["uuid"] for m in _rows(nova_db, models.InstanceIdMapping)] == [created.uuid]
    (group,) = _rows(nova_db, models.SecurityGroup)
    assert (group["name"], group["project_id"], group["user_id"]) == (
        "default",
        "project1",
        "user1",
    )
    (link,) = _rows(nova_db, models.SecurityGroupInstanceAssociation)
    assert (link["instance_uuid"], link["security_group_id"]) == (created.uuid, group["id"])
    assert nova.instance_get_by_uuid(ctx, created.uuid).display_name == "web"


def test_create_ensures_the_default_group_and_resolves_named_groups(nova_db, ctx, admin):
    # No group asked for: the project's default group still comes to exist (once).
    plain = _create(ctx)
    assert plain.security_groups == [] and plain.metadata == [] and plain.system_metadata == []
    assert plain.info_cache is not None and plain.info_cache.network_info is None
    _create(ctx)
    assert [g["name"] for g in _rows(nova_db, models.SecurityGroup)] == ["default"]

    with nova.get_database().session() as session:
        session.add(models.SecurityGroup(name="web", project_id="project1", user_id="user1"))
        session.add(models.SecurityGroup(name="db", project_id="project2", user_id="user2"))
    both = _create(ctx, security_groups=["web", "default", "web"])
    assert sorted(g.name for g in both.security_groups) == ["default", "web"]

    # A name the context's project lacks (another project's group) changes nothing.
    before = _snapshot(nova_db)
    with pytest.raises(exception.SecurityGroupNotFoundForProject) as err:
        _create(ctx, security_groups=["default", "db"])
    assert err.value.kwargs["security_group_id"] == "db"
    assert err.value.kwargs["project_id"] == "project1"
    assert _snapshot(nova_db) == before

    # An admin context without a project gets a default group of no project.
    made = nova.instance_create(admin, {"security_groups": ["default"]})
    assert made.project_id is None and made.security_groups[0].project_id is None


def _shape(instance) -> tuple:
    """Everything a single-instance read returns, as plain values."""

    def cols(row):
        return None if row is None else dict(row)

    return (
        cols(instance),
        cols(instance.info_cache),
        [cols(m) for m in instance.metadata],
        [cols(m) for m in instance.system_metadata],
        [(cols(g), [cols(r) for r in g.rules]) for g in instance.security_groups],
    )


@pytest.mark.parametrize("returning", [True, False])
def test_create_returns_the_rows_as_a_read_finds_them(nova_db, ctx, monkeypatch, returning):
    if not returning:  # as on MySQL, whose INSERT cannot return the ids of many rows
        monkeypatch.setattr(instances, "_returning_supported", lambda conn: False)
    with nova.get_database().session() as session:
        session.add(models.SecurityGroupIngressDefaultRule(protocol="tcp", from_port=1, to_port=2))
    made = _create(
        ctx,
        display_name="x",
        locked=1,
        launched_at=T0,
        metadata={"a": "1", "b": None},
        system_metadata={"s": "2"},
        info_cache={"network_info": "[]"},
        security_groups=["default"],
    )
    assert made.locked is True and len(made.security_groups[0].rules) == 1
    assert _shape(made) == _shape(nova.instance_get_by_uuid(ctx, made.uuid))


def test_create_is_one_transaction(nova_db, ctx):
    # The failure comes after the default group, instance and children were written.
    existing = _create(ctx)
    before = _snapshot(nova_db)
    with pytest.raises(exception.DBDuplicateEntry) as err:
        _create(
            RequestContext("user9", "project9"),
            uuid=existing.uuid,
            metadata={"a": "1"},
            security_groups=["default"],
        )
    assert "uuid" in err.value.columns
    assert _snapshot(nova_db) == before


def test_create_rejects_bad_values_and_contexts(nova_db, ctx):
    before = _snapshot(nova_db)
    with pytest.raises(InvalidQuery, match="no_such_column"):
        _create(ctx, no_such_column=1)
    with pytest.raises(InvalidQuery, match="metadata"):
        _create(ctx, metadata=["a"])
    with pytest.raises(InvalidQuery, match="security_groups"):
        _create(ctx, security_groups="default")
    with pytest.raises(InvalidQuery, match="nope"):
        _create(ctx, info_cache={"nope": 1})
    with pytest.raises(exception.InvalidUUID):
        _create(ctx, uuid="NOT-A-UUID")
    with pytest.raises(InvalidQuery, match="form"):
        _create(ctx, launched_at="yesterday")
    # What one backend would store and another refuse is refused on every backend.
    with pytest.raises(InvalidValue, match="display_name"):
        _create(ctx, display_name="x" * 256)
    with pytest.raises(InvalidValue, match="memory_mb"):
        _create(ctx, memory_mb="lots")
    with pytest.raises(InvalidValue, match="locked_by"):
        _create(ctx, locked_by="nobody")
    with pytest.raises(InvalidValue, match="value"):
        _create(ctx, system_metadata={"k": 5})
    with pytest.raises(exception.Forbidden):
        nova.instance_create(RequestContext("user1", None), {})
    assert _snapshot(nova_db) == before


# -- hostname uniqueness ---------------------------------------------------------------------


def test_hostnames_are_unique_within_the_configured_scope(nova_db, ctx, other_ctx, monkeypatch):
    monkeypatch.setattr(instances, "unique_server_name_scope", "")
    first = _create(ctx, hostname="Web")
    _create(ctx, hostname="web")  # no scope: no check

    instances.set_unique_server_name_scope("project")
    with pytest.raises(exception.InstanceExists) as err:
        _create(ctx, hostname="WEB")
    assert err.value.kwargs["name"] == "web"
    other = _create(other_ctx, hostname="web")  # another project may
    nova.instance_update(other_ctx, other.uuid, {"hostname": "x"})
    with pytest.raises(exception.InstanceExists):
        _create(other_ctx, hostname="X")
    # Renaming to the same name (any case) is no clash; to a taken one is.
    assert nova.instance_update(ctx, first.uuid, {"hostname": "WEB"}).hostname == "WEB"
    second = _create(ctx, hostname="db")
    with pytest.raises(exception.InstanceExists):
        nova.instance_update(ctx, second.uuid, {"hostname": "Web"})
    assert nova.instance_get_by_uuid(ctx, second.uuid).hostname == "db"

    instances.set_unique_server_name_scope("global")
    with pytest.raises(exception.InstanceExists):
        _create(RequestContext("user3", "project3"), hostname="DB")
    # Deleted instances do not hold their names.
    nova.instance_destroy(ctx, second.uuid)
    assert _create(RequestContext("user3", "project3"), hostname="DB").hostname == "DB"

    with pytest.raises(InvalidValue, match="unique_server_name_scope"):
        instances.set_unique_server_name_scope("galaxy")
    assert instances.unique_server_name_scope == "global"


# -- instance_get / instance_get_by_uuid -----------------------------------------------------


def test_get_by_id_and_by_uuid(nova_db, ctx, other_ctx, admin):
    made = _create(ctx, display_name="a", metadata={"k": "v"}, system_metadata={"s": "t"})
    for got in (nova.instance_get(ctx, made.id), nova.instance_get_by_uuid(ctx, made.uuid)):
        assert (got.id, got.uuid, got.display_name) == (made.id, made.uuid, "a")
        assert _pairs(got.metadata) == {"k": "v"} and _pairs(got.system_metadata) == {"s": "t"}
        assert got.info_cache.instance_uuid == made.uuid and got.security_groups == []
    assert nova.instance_get(ctx, str(made.id)).uuid == made.uuid
    assert nova.instance_get_by_uuid(admin, made.uuid, use_slave=True).id == made.id

    missing = str(uuid.uuid4())
    with pytest.raises(exception.InstanceNotFound) as err:
        nova.instance_get_by_uuid(ctx, missing)
    assert err.value.kwargs["instance_id"] == missing
    for bad in (made.id + 1000, 2**40, -1):
        with pytest.raises(exception.InstanceNotFound):
            nova.instance_get(ctx, bad)
    for bad in ("abc", None, 1.5, True):
        with pytest.raises(exception.InvalidID):
            nova.instance_get(ctx, bad)
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_get_by_uuid(ctx, 42)
    # Another project's instance does not exist for a user; an admin sees every project.
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_get_by_uuid(other_ctx, made.uuid)
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_get(other_ctx, made.id)
    assert nova.instance_get(admin, made.id).uuid == made.uuid
    with pytest.raises(exception.Forbidden):
        nova.instance_get_by_uuid(RequestContext(None, "project1"), made.uuid)
    with pytest.raises(exception.Forbidden):
        nova.instance_get(RequestContext("user1", None), made.id)


def test_reads_follow_the_contexts_read_deleted(nova_db, ctx):
    alive = _create(ctx)
    gone = _create(ctx)
    nova.instance_destroy(ctx, gone.uuid)
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_get_by_uuid(ctx, gone.uuid)
    yes = ctx.elevated(read_deleted="yes")
    only = RequestContext("user1", "project1", read_deleted="only")
    assert nova.instance_get_by_uuid(yes, gone.uuid).deleted == gone.id
    assert nova.instance_get(yes, alive.id).deleted == 0
    assert nova.instance_get_by_uuid(only, gone.uuid).deleted_at is not None
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_get_by_uuid(only, alive.uuid)
    # A user context with read_deleted is still held to its project.
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_get_by_uuid(RequestContext("u", "project2", read_deleted="yes"), gone.uuid)


def test_columns_to_join(nova_db, ctx, admin):
    made = _create(
        ctx, metadata={"k": "v"}, system_metadata={"s": "t"}, security_groups=["default"]
    )
    with nova.get_database().session() as session:
        session.add(models.BlockDeviceMapping(instance_uuid=made.uuid, device_name="/dev/vda"))
        node = models.ComputeNode(
            service_id=_service_id(session),
            vcpus=1,
            memory_mb=1,
            local_gb=1,
            vcpus_used=0,
            memory_mb_used=0,
            local_gb_used=0,
            hypervisor_type="qemu",
            hypervisor_version=1,
            cpu_info="{}",
        )
        session.add(node)
        session.flush()
        session.add(
            models.PciDevice(
                compute_node_id=node.id,
                address="0000:00:01.0",
                vendor_id="8086",
                product_id="1520",
                dev_type="type-VF",
                label="l",
                status="allocated",
                instance_uuid=made.uuid,
            )
        )

    none = nova.instance_get_by_uuid(ctx, made.uuid, columns_to_join=[])
    assert none.metadata == [] and none.system_metadata == []
    # Always there, whatever is asked for.
    assert none.info_cache is not None and [g.name for g in none.security_groups] == ["default"]
    assert none.block_device_mapping == [] and none.pci_devices == []

    some = nova.instance_get(
        ctx, made.id, columns_to_join=["system_metadata", "pci_devices", "block_device_mapping"]
    )
    assert some.metadata == [] and _pairs(some.system_metadata) == {"s": "t"}
    assert [d.address for d in some.pci_devices] == ["0000:00:01.0"]
    assert [b.device_name for b in some.block_device_mapping] == ["/dev/vda"]

    default = nova.instance_get_by_uuid(ctx, made.uuid)
    assert _pairs(default.metadata) == {"k": "v"} and default.pci_devices == []

    for bad in (["metadata", "fault"], "metadata", 5, ["security_groups.rules"]):
        with pytest.raises(InvalidQuery, match="allowed"):
            nova.instance_get_by_uuid(ctx, made.uuid, columns_to_join=bad)


def _service_id(session) -> int:
    service = models.Service(host="h", binary="nova-compute", topic="compute")
    session.add(service)
    session.flush()
    return service.id


# -- instance_update / instance_update_and_get_original --------------------------------------


def test_update_sets_values_and_returns_the_row(nova_db, ctx):
    made = _create(ctx, display_name="a", vm_state="building")
    updated = nova.instance_update(
        ctx,
        made.uuid,
        {
            "display_name": "b",
            "vm_state": "active",
            "launched_at": T0.replace(tzinfo=dt.UTC),
            "terminated_at": "2014-07-01T12:30:15.123456",
            "locked": True,
        },
    )
    assert (updated.display_name, updated.vm_state, updated.locked) == ("b", "active", True)
    assert updated.launched_at == T0 and updated.terminated_at == T0
    assert updated.updated_at is not None and updated.info_cache is not None
    (row,) = _rows(nova_db, models.Instance)
    assert (row["display_name"], row["vm_state"], row["launched_at"]) == ("b", "active", T0)
    assert row["updated_at"] == updated.updated_at
    assert nova.instance_update(ctx, made.uuid, {}).display_name == "b"


def test_update_replaces_metadata_against_the_database(nova_db, ctx):
    made = _create(ctx, metadata={"a": "1", "b": "2"}, system_metadata={"s": "1"})
    updated = nova.instance_update(
        ctx, made.uuid, {"metadata": {"b": "3", "c": "4"}, "system_metadata": {}}
    )
    assert _pairs(updated.metadata) == {"b": "3", "c": "4"}
    assert updated.system_metadata == []
    live = _rows(nova_db, models.InstanceMetadata, models.InstanceMetadata.deleted == 0)
    assert {r["key"]: r["value"] for r in live} == {"b": "3", "c": "4"}
    # "b" was updated in place; "a" soft-deleted.
    rows = {r["key"]: r for r in _rows(nova_db, models.InstanceMetadata)}
    assert rows["a"]["deleted"] == rows["a"]["id"] and len(rows) == 3
    # Not loaded by the caller's columns_to_join: still computed against the rows.
    old, new = nova.instance_update_and_get_original(
        ctx, made.uuid, {"metadata": {"c": "5"}}, columns_to_join=[]
    )
    assert old.metadata == [] and new.metadata == []
    assert nova.instance_metadata_get(ctx, made.uuid) == {"c": "5"}
    assert nova.instance_system_metadata_get(ctx, made.uuid) == {}


def test_update_and_get_original_returns_a_copy_from_before(nova_db, ctx):
    made = _create(ctx, display_name="a", metadata={"k": "1"}, security_groups=["default"])
    old, new = nova.instance_update_and_get_original(
        ctx, made.uuid, {"display_name": "b", "metadata": {"k": "2"}}
    )
    assert (old.display_name, new.display_name) == ("a", "b")
    assert _pairs(old.metadata) == {"k": "1"} and _pairs(new.metadata) == {"k": "2"}
    assert old is not new and old.id == new.id and old.updated_at is None
    assert [g.name for g in old.security_groups] == ["default"]
    assert old.info_cache.instance_uuid == made.uuid and old.info_cache is not new.info_cache
    assert sa.inspect(old).detached
    old_only, new_only = nova.instance_update_and_get_original(
        ctx, made.uuid, {"display_name": "c"}, columns_to_join=["system_metadata"]
    )
    assert old_only.metadata == [] and new_only.metadata == []
    assert old_only.display_name == "b" and new_only.display_name == "c"


def test_update_checks_expected_states_in_the_update(nova_db, ctx):
    made = _create(ctx, vm_state="active")
    # None means "no task".
    old, new = nova.instance_update_and_get_original(
        ctx, made.uuid, {"task_state": "spawning", "expected_task_state": None}
    )
    assert (old.task_state, new.task_state) == (None, "spawning")
    before = _snapshot(nova_db)
    with pytest.raises(exception.UnexpectedTaskStateError) as err:
        nova.instance_update(
            ctx, made.uuid, {"task_state": "x", "expected_task_state": [None, "rebooting"]}
        )
    assert type(err.value) is exception.UnexpectedTaskStateError
    assert err.value.kwargs["expected"] == (None, "rebooting")
    assert err.value.kwargs["actual"] == "spawning"
    with pytest.raises(exception.UnexpectedVMStateError) as err:
        nova.instance_update(
            ctx,
            made.uuid,
            {
                "vm_state": "x",
                "metadata": {"a": "b"},
                "expected_task_state": ("spawning",),
                "expected_vm_state": "stopped",
            },
        )
    assert err.value.kwargs == {"expected": ("stopped",), "actual": "active", "code": 500}
    with pytest.raises(exception.UnexpectedTaskStateError):
        nova.instance_update(ctx, made.uuid, {"expected_task_state": []})
    assert _snapshot(nova_db) == before

    ok = nova.instance_update(
        ctx,
        made.uuid,
        {
            "task_state": "deleting",
            "expected_task_state": {"spawning", "x"},
            "expected_vm_state": ["active"],
        },
    )
    assert ok.task_state == "deleting"
    with pytest.raises(exception.UnexpectedDeletingTaskStateError) as err:
        nova.instance_update(ctx, made.uuid, {"task_state": None, "expected_task_state": None})
    assert err.value.kwargs["actual"] == "deleting" and err.value.kwargs["expected"] == (None,)
    # Only expectations, nothing to set: checked, and nothing changes (not even updated_at).
    (row,) = _rows(nova_db, models.Instance)
    nova.instance_update(ctx, made.uuid, {"expected_task_state": "deleting"})
    assert _rows(nova_db, models.Instance) == [row]


def test_update_errors_change_nothing(nova_db, ctx, other_ctx):
    made = _create(ctx, display_name="a", metadata={"k": "v"})
    before = _snapshot(nova_db)
    with pytest.raises(exception.InvalidUUID):
        nova.instance_update(ctx, made.uuid.upper(), {"display_name": "b"})
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_update(ctx, str(uuid.uuid4()), {"display_name": "b"})
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_update_and_get_original(other_ctx, made.uuid, {"display_name": "b"})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.instance_update(ctx, made.uuid, {"display_name": "b", "bogus": 1})
    with pytest.raises(InvalidQuery, match="security_groups"):
        nova.instance_update(ctx, made.uuid, {"security_groups": ["default"]})
    with pytest.raises(InvalidQuery, match="metadata"):
        nova.instance_update(ctx, made.uuid, {"metadata": "k=v"})
    with pytest.raises(InvalidQuery, match="allowed"):
        nova.instance_update_and_get_original(
            ctx, made.uuid, {"display_name": "b"}, columns_to_join=["nope"]
        )
    with pytest.raises(InvalidValue, match="locked"):
        nova.instance_update(ctx, made.uuid, {"display_name": "b", "locked": "yes"})
    with pytest.raises(exception.Forbidden):
        nova.instance_update(RequestContext(None, None), made.uuid, {"display_name": "b"})
    assert _snapshot(nova_db) == before
    # A deleted instance cannot be updated under read_deleted 'no'.
    nova.instance_destroy(ctx, made.uuid)
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_update(ctx, made.uuid, {"display_name": "b"})


# -- instance_destroy ------------------------------------------------------------------------


def test_destroy_soft_deletes_the_instance_and_what_it_owns(nova_db, ctx):
    keep = _create(ctx, metadata={"k": "v"}, system_metadata={"s": "t"})
    made = _create(
        ctx,
        display_name="gone",
        metadata={"a": "1", "b": "2"},
        system_metadata={"s": "t"},
        security_groups=["default"],
    )
    nova.instance_fault_create(ctx, {"instance_uuid": made.uuid, "code": 500, "message": "m"})
    destroyed = nova.instance_destroy(ctx, made.uuid, update_cells=False)
    # The row as it was read before the delete, with the default joins.
    assert destroyed.uuid == made.uuid and destroyed.deleted == 0
    assert _pairs(destroyed.metadata) == {"a": "1", "b": "2"}
    assert [g.name for g in destroyed.security_groups] == ["default"]

    (row,) = _rows(nova_db, models.Instance, models.Instance.uuid == made.uuid)
    assert row["deleted"] == row["id"] and row["deleted_at"] is not None
    for model in OWNED:
        rows = _rows(nova_db, model, model.instance_uuid == made.uuid)
        assert rows and all(r["deleted"] == r["id"] for r in rows), model.__tablename__
        kept = _rows(nova_db, model, model.instance_uuid == keep.uuid)
        assert all(r["deleted"] == 0 for r in kept), model.__tablename__
    # The EC2 mapping and the group itself stay.
    assert len(_rows(nova_db, models.InstanceIdMapping)) == 2
    assert _rows(nova_db, models.SecurityGroup)[0]["deleted"] == 0

    with pytest.raises(exception.InstanceNotFound):
        nova.instance_destroy(ctx, made.uuid)
    # Seen through read_deleted 'yes', a deleted instance is still not there to destroy.
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_destroy(ctx.elevated(read_deleted="yes"), made.uuid)


def test_destroy_with_a_constraint(nova_db, ctx):
    made = _create(ctx, host="h1", vm_state="active", metadata={"k": "v"})
    before = _snapshot(nova_db)
    for unmet in (
        nova.constraint(host=nova.equal_any("h2", "h3")),
        nova.constraint(vm_state=nova.not_equal("active"), host=nova.equal_any("h1")),
    ):
        with pytest.raises(exception.ConstraintNotMet):
            nova.instance_destroy(ctx, made.uuid, constraint=unmet)
    with pytest.raises(InvalidQuery, match="nope"):
        nova.instance_destroy(ctx, made.uuid, constraint=nova.constraint(nope=nova.equal_any(1)))
    with pytest.raises(InvalidQuery, match="constraint"):
        nova.instance_destroy(ctx, made.uuid, constraint={"host": "h1"})
    assert _snapshot(nova_db) == before

    met = nova.constraint(host=nova.equal_any("h0", "h1"), vm_state=nova.not_equal("error"))
    assert nova.instance_destroy(ctx, made.uuid, constraint=met).uuid == made.uuid
    assert nova.instance_metadata_get(ctx, made.uuid) == {}


def test_destroy_errors_and_access(nova_db, ctx, other_ctx, admin):
    made = _create(ctx)
    before = _snapshot(nova_db)
    with pytest.raises(exception.InvalidUUID):
        nova.instance_destroy(ctx, "x")
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_destroy(ctx, str(uuid.uuid4()))
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_destroy(other_ctx, made.uuid)
    with pytest.raises(exception.Forbidden):
        nova.instance_destroy(RequestContext("user1", None), made.uuid)
    assert _snapshot(nova_db) == before
    assert nova.instance_destroy(admin, made.uuid).uuid == made.uuid

"""EC2 id mappings and S3 images (nova notes §3.23), on every backend."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, DuplicateEntry, InvalidValue
from dblayer.stores.nova import exception, models
from dblayer.stores.nova.context import RequestContext
from tests.stores.nova.conftest import table_rows as rows


def soft_delete(db: Database, model, row_id: int) -> None:
    with db.transaction() as conn:
        table = model.__table__
        conn.execute(sa.update(table).where(table.c.id == row_id).values(deleted=row_id))


def new_uuid() -> str:
    return str(uuid.uuid4())


# -- instances -------------------------------------------------------------------------------


def test_instance_mappings(nova_db, ctx):
    u = new_uuid()
    m = nova.ec2_instance_create(ctx, u)
    assert m.uuid == u and isinstance(m.id, int)
    [stored] = rows(nova_db, models.InstanceIdMapping)
    assert (stored["id"], stored["uuid"], stored["deleted"]) == (m.id, u, 0)
    assert nova.ec2_instance_get_by_id(ctx, m.id).uuid == u
    assert nova.ec2_instance_get_by_uuid(ctx, u).id == m.id
    assert nova.get_ec2_instance_id_by_uuid(ctx, u) == m.id
    assert nova.get_instance_uuid_by_ec2_id(ctx, m.id) == u


def test_instance_mappings_are_never_reused_and_lookups_take_the_first(nova_db, ctx):
    u = new_uuid()
    first = nova.ec2_instance_create(ctx, u)
    second = nova.ec2_instance_create(ctx, u)
    assert second.id != first.id and len(rows(nova_db, models.InstanceIdMapping)) == 2
    assert nova.get_ec2_instance_id_by_uuid(ctx, u) == first.id


def test_instance_lookups_include_deleted_mappings(nova_db, ctx):
    u = new_uuid()
    m = nova.ec2_instance_create(ctx, u)
    soft_delete(nova_db, models.InstanceIdMapping, m.id)
    assert nova.ec2_instance_get_by_id(ctx, m.id).deleted == m.id
    assert nova.ec2_instance_get_by_uuid(ctx, u).id == m.id
    assert nova.get_instance_uuid_by_ec2_id(ctx, m.id) == u


def test_instance_lookups_not_found(nova_db, ctx):
    missing = new_uuid()
    for call, arg in [
        (nova.ec2_instance_get_by_id, 4242),
        (nova.ec2_instance_get_by_uuid, missing),
        (nova.get_ec2_instance_id_by_uuid, missing),
        (nova.get_instance_uuid_by_ec2_id, 4242),
    ]:
        with pytest.raises(exception.InstanceNotFound) as err:
            call(ctx, arg)
        assert str(arg) in str(err.value)


def test_a_forced_id_is_used_and_later_ids_do_not_collide(nova_db, ctx):
    a = nova.ec2_instance_create(ctx, new_uuid())
    forced = nova.ec2_instance_create(ctx, new_uuid(), id=a.id + 50)
    assert forced.id == a.id + 50
    # PostgreSQL's sequence is moved past the forced id, as the others do by themselves.
    after = nova.ec2_instance_create(ctx, new_uuid())
    assert after.id > forced.id
    assert len(rows(nova_db, models.InstanceIdMapping)) == 3


def test_a_forced_id_already_taken_is_a_duplicate_and_changes_nothing(nova_db, ctx):
    a = nova.ec2_instance_create(ctx, new_uuid())
    before = rows(nova_db, models.InstanceIdMapping)
    with pytest.raises(exception.DBDuplicateEntry) as err:
        nova.ec2_instance_create(ctx, new_uuid(), id=a.id)
    assert isinstance(err.value, DuplicateEntry) and err.value.columns == ["id"]
    with pytest.raises(exception.DBDuplicateEntry):
        nova.ec2_volume_create(ctx, new_uuid(), forced_id=nova.ec2_volume_create(ctx, "v").id)
    assert rows(nova_db, models.InstanceIdMapping) == before
    assert len(rows(nova_db, models.VolumeIdMapping)) == 1


@pytest.mark.parametrize(
    ("uuid_value", "forced"),
    [(None, None), ("u" * 37, None), (17, None), ("ok", "7"), ("ok", 2**31)],
)
def test_bad_create_values_are_invalid_and_store_nothing(nova_db, ctx, uuid_value, forced):
    for create, model in [
        (nova.ec2_instance_create, models.InstanceIdMapping),
        (nova.ec2_volume_create, models.VolumeIdMapping),
        (nova.ec2_snapshot_create, models.SnapshotIdMapping),
    ]:
        with pytest.raises(InvalidValue):
            create(ctx, uuid_value, forced)
        assert rows(nova_db, model) == []


def test_user_calls_refuse_an_incomplete_context(nova_db, ctx):
    u = new_uuid()
    m = nova.ec2_instance_create(ctx, u)
    v = nova.ec2_volume_create(ctx, u)
    s = nova.ec2_snapshot_create(ctx, u)
    nobody = RequestContext(None, "project1")
    calls = [
        (nova.ec2_instance_create, u),
        (nova.ec2_instance_get_by_id, m.id),
        (nova.ec2_instance_get_by_uuid, u),
        (nova.get_ec2_instance_id_by_uuid, u),
        (nova.get_instance_uuid_by_ec2_id, m.id),
        (nova.ec2_volume_create, u),
        (nova.ec2_volume_get_by_id, v.id),
        (nova.ec2_volume_get_by_uuid, u),
        (nova.ec2_snapshot_create, u),
        (nova.get_ec2_snapshot_id_by_uuid, u),
        (nova.get_snapshot_uuid_by_ec2_id, s.id),
    ]
    for call, arg in calls:
        with pytest.raises(exception.Forbidden):
            call(nobody, arg)
    for model in (models.InstanceIdMapping, models.VolumeIdMapping, models.SnapshotIdMapping):
        assert len(rows(nova_db, model)) == 1
    # An admin without user or project may.
    assert nova.get_ec2_instance_id_by_uuid(nova.get_admin_context(), u) == m.id


# -- volumes and snapshots -------------------------------------------------------------------


def test_volume_mappings(nova_db, ctx):
    u = new_uuid()
    v = nova.ec2_volume_create(ctx, u)
    forced = nova.ec2_volume_create(ctx, new_uuid(), forced_id=v.id + 10)
    assert forced.id == v.id + 10
    assert nova.ec2_volume_get_by_id(ctx, v.id).uuid == u
    assert nova.ec2_volume_get_by_uuid(ctx, u).id == v.id
    soft_delete(nova_db, models.VolumeIdMapping, v.id)
    assert nova.ec2_volume_get_by_uuid(ctx, u).id == v.id
    assert nova.ec2_volume_get_by_id(ctx, v.id).deleted == v.id
    with pytest.raises(exception.VolumeNotFound, match="4242"):
        nova.ec2_volume_get_by_id(ctx, 4242)
    with pytest.raises(exception.VolumeNotFound, match="nope"):
        nova.ec2_volume_get_by_uuid(ctx, "nope")
    assert nova.ec2_volume_create(ctx, new_uuid()).id > forced.id


def test_snapshot_mappings(nova_db, ctx):
    u = new_uuid()
    s = nova.ec2_snapshot_create(ctx, u)
    forced = nova.ec2_snapshot_create(ctx, new_uuid(), forced_id=s.id + 10)
    assert forced.id == s.id + 10 and forced.uuid != u
    assert nova.get_ec2_snapshot_id_by_uuid(ctx, u) == s.id
    assert nova.get_snapshot_uuid_by_ec2_id(ctx, s.id) == u
    soft_delete(nova_db, models.SnapshotIdMapping, s.id)
    assert nova.get_ec2_snapshot_id_by_uuid(ctx, u) == s.id
    with pytest.raises(exception.SnapshotNotFound, match="4242"):
        nova.get_snapshot_uuid_by_ec2_id(ctx, 4242)
    with pytest.raises(exception.SnapshotNotFound, match="nope"):
        nova.get_ec2_snapshot_id_by_uuid(ctx, "nope")
    with pytest.raises(InvalidValue):
        nova.get_snapshot_uuid_by_ec2_id(ctx, "4242")


# -- S3 images -------------------------------------------------------------------------------


def test_s3_images(nova_db):
    anonymous = RequestContext(None, None)  # the s3_image_* calls check no rights
    u = new_uuid()
    image = nova.s3_image_create(anonymous, u)
    again = nova.s3_image_create(anonymous, u)
    assert image.uuid == u and again.id != image.id
    assert nova.s3_image_get(anonymous, image.id).uuid == u
    assert nova.s3_image_get_by_uuid(anonymous, u).id == image.id
    soft_delete(nova_db, models.S3Image, image.id)
    assert nova.s3_image_get(anonymous, image.id).deleted == image.id
    assert nova.s3_image_get_by_uuid(anonymous, u).id == image.id
    with pytest.raises(exception.ImageNotFound, match="4242"):
        nova.s3_image_get(anonymous, 4242)
    with pytest.raises(exception.ImageNotFound, match="nope"):
        nova.s3_image_get_by_uuid(anonymous, "nope")


@pytest.mark.parametrize("bad", [None, "u" * 37, 5])
def test_s3_image_create_failures_are_db_errors(nova_db, ctx, bad):
    with pytest.raises(exception.DBError):
        nova.s3_image_create(ctx, bad)
    assert rows(nova_db, models.S3Image) == []

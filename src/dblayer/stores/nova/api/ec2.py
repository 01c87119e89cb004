"""nova DB API: EC2 integer ids for instance, volume and snapshot uuids, and S3 images
(notes §3.23).

Each create inserts a new mapping row (nothing is reused; an explicit id may be
forced). Every lookup includes deleted rows, as nova's did.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dblayer.core import DBLayerError, DuplicateEntry, TransientError

from .. import exception, models
from ..facade import get_database
from ._base import USER, api, create, execute, first, model_query
from ._checks import clean_values, key_value

__all__ = [
    "ec2_instance_create",
    "ec2_instance_get_by_id",
    "ec2_instance_get_by_uuid",
    "ec2_snapshot_create",
    "ec2_volume_create",
    "ec2_volume_get_by_id",
    "ec2_volume_get_by_uuid",
    "get_ec2_instance_id_by_uuid",
    "get_ec2_snapshot_id_by_uuid",
    "get_instance_uuid_by_ec2_id",
    "get_snapshot_uuid_by_ec2_id",
    "s3_image_create",
    "s3_image_get",
    "s3_image_get_by_uuid",
]


def _keep_sequence_ahead(model: Any) -> None:
    """After a row was inserted with an explicit id, make PostgreSQL's id sequence continue
    past the largest id, as SQLite and MariaDB do by themselves; otherwise the next
    generated id could be the forced one and fail as a duplicate."""
    if get_database().backend != "postgresql":
        return
    table = model.__table__
    sequence = sa.func.pg_get_serial_sequence(table.name, "id")
    top = sa.select(sa.func.max(table.c.id)).scalar_subquery()
    execute(sa.select(sa.func.setval(sequence, sa.func.greatest(top, sa.func.nextval(sequence)))))


def _create_mapping(model: Any, uuid: Any, forced_id: Any) -> Any:
    """Insert a ``model`` mapping of ``uuid`` (with ``forced_id`` as its id when given).

    A forced id already taken is DBDuplicateEntry (nova let oslo.db's escape).
    """
    values = {"uuid": uuid} if forced_id is None else {"uuid": uuid, "id": forced_id}
    values = clean_values(model, values)
    try:
        row = create(model, values)
    except DuplicateEntry as e:
        raise exception.DBDuplicateEntry(columns=["id"], inner_exception=e) from e
    if forced_id is not None:
        _keep_sequence_ahead(model)
    return row


def _mapping(context: Any, model: Any, key: str, value: Any, not_found: Any) -> Any:
    """The first ``model`` row (deleted or not) whose ``key`` is ``value``; else raise
    ``not_found()``."""
    value = key_value(model, key, value)
    stmt = (
        model_query(context, model, read_deleted="yes")
        .where(getattr(model, key) == value)
        .order_by(model.id)
    )
    row = first(stmt)
    if row is None:
        raise not_found(value)
    return row


def _instance_not_found(value: Any) -> Exception:
    return exception.InstanceNotFound(instance_id=value)


def _volume_not_found(value: Any) -> Exception:
    return exception.VolumeNotFound(volume_id=value)


def _snapshot_not_found(value: Any) -> Exception:
    return exception.SnapshotNotFound(snapshot_id=value)


def _image_not_found(value: Any) -> Exception:
    return exception.ImageNotFound(image_id=value)


# -- instances -------------------------------------------------------------------------------


@api(USER)
def ec2_instance_create(context: Any, instance_uuid: str, id: int | None = None) -> Any:  # noqa: A002
    """Create the ec2 id to instance uuid mapping on demand."""
    return _create_mapping(models.InstanceIdMapping, instance_uuid, id)


@api(USER)
def ec2_instance_get_by_id(context: Any, instance_id: int) -> Any:
    """The instance id mapping with EC2 id ``instance_id`` (InstanceNotFound)."""
    return _mapping(context, models.InstanceIdMapping, "id", instance_id, _instance_not_found)


@api(USER)
def ec2_instance_get_by_uuid(context: Any, instance_uuid: str) -> Any:
    """The instance id mapping of ``instance_uuid`` (InstanceNotFound)."""
    return _mapping(context, models.InstanceIdMapping, "uuid", instance_uuid, _instance_not_found)


@api(USER)
def get_ec2_instance_id_by_uuid(context: Any, instance_id: str) -> int:
    """Get ec2 id through uuid from instance_id_mappings table."""
    return _mapping(context, models.InstanceIdMapping, "uuid", instance_id, _instance_not_found).id


@api(USER)
def get_instance_uuid_by_ec2_id(context: Any, ec2_id: int) -> str:
    """Get uuid through ec2 id from instance_id_mappings table."""
    return _mapping(context, models.InstanceIdMapping, "id", ec2_id, _instance_not_found).uuid


# -- volumes and snapshots -------------------------------------------------------------------


@api(USER)
def ec2_volume_create(context: Any, volume_id: str, forced_id: int | None = None) -> Any:
    """Create the ec2 id to volume uuid mapping (with ``forced_id`` as its id when given)."""
    return _create_mapping(models.VolumeIdMapping, volume_id, forced_id)


@api(USER)
def ec2_volume_get_by_id(context: Any, volume_id: int) -> Any:
    """The volume id mapping with EC2 id ``volume_id`` (VolumeNotFound)."""
    return _mapping(context, models.VolumeIdMapping, "id", volume_id, _volume_not_found)


@api(USER)
def ec2_volume_get_by_uuid(context: Any, volume_uuid: str) -> Any:
    """The volume id mapping of ``volume_uuid`` (VolumeNotFound)."""
    return _mapping(context, models.VolumeIdMapping, "uuid", volume_uuid, _volume_not_found)


@api(USER)
def ec2_snapshot_create(context: Any, snapshot_id: str, forced_id: int | None = None) -> Any:
    """Create the ec2 id to snapshot uuid mapping (with ``forced_id`` as its id when given)."""
    return _create_mapping(models.SnapshotIdMapping, snapshot_id, forced_id)


@api(USER)
def get_ec2_snapshot_id_by_uuid(context: Any, snapshot_id: str) -> int:
    """The EC2 id of snapshot uuid ``snapshot_id`` (SnapshotNotFound)."""
    return _mapping(context, models.SnapshotIdMapping, "uuid", snapshot_id, _snapshot_not_found).id


@api(USER)
def get_snapshot_uuid_by_ec2_id(context: Any, ec2_id: int) -> str:
    """The snapshot uuid of EC2 id ``ec2_id`` (SnapshotNotFound)."""
    return _mapping(context, models.SnapshotIdMapping, "id", ec2_id, _snapshot_not_found).uuid


# -- S3 images -------------------------------------------------------------------------------


@api()
def s3_image_create(context: Any, image_uuid: str) -> Any:
    """Create local s3 image represented by provided uuid."""
    try:
        return _create_mapping(models.S3Image, image_uuid, None)
    except TransientError:
        raise  # replayed by the unit of work, as any other call's
    except DBLayerError as e:
        # nova's contract: any failure to record the image is a DBError.
        raise exception.DBError(e) from e


@api()
def s3_image_get(context: Any, image_id: int) -> Any:
    """Find local s3 image represented by the provided id."""
    return _mapping(context, models.S3Image, "id", image_id, _image_not_found)


@api()
def s3_image_get_by_uuid(context: Any, image_uuid: str) -> Any:
    """Find local s3 image represented by the provided uuid."""
    return _mapping(context, models.S3Image, "uuid", image_uuid, _image_not_found)

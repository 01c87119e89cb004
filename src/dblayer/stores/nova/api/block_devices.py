"""nova DB API: block device mappings (notes §3.16, §2.21).

Writes take values in the legacy format by default (``legacy=True``) and store the
new one (see ``block_device_format``). Reads use the context's ``read_deleted``;
destroys soft-delete and never complain about a missing row.
"""

from __future__ import annotations

from typing import Any

from dblayer.core import InvalidQuery

from .. import models
from ._base import (
    USER,
    api,
    create,
    fetch_all,
    first,
    join_options,
    model_query,
    soft_delete_where,
    update,
)
from ._checks import clean_values, key_value, require_instance
from .block_device_format import is_swap, prepare

__all__ = [
    "block_device_mapping_create",
    "block_device_mapping_destroy",
    "block_device_mapping_destroy_by_instance_and_device",
    "block_device_mapping_destroy_by_instance_and_volume",
    "block_device_mapping_get_all_by_instance",
    "block_device_mapping_get_by_volume_id",
    "block_device_mapping_update",
    "block_device_mapping_update_or_create",
]

BDM = models.BlockDeviceMapping

# The relationships a BDM read may load (columns_to_join).
_JOINS = {"instance": BDM.instance}


def _values(values: Any, legacy: bool, *, allow_updates: bool = False) -> dict[str, Any]:
    """The checked new-format values a write stores."""
    return clean_values(BDM, prepare(values, legacy, allow_updates=allow_updates))


def _join_options(columns_to_join: Any) -> list[Any]:
    return join_options("block device mappings", columns_to_join, _JOINS)


@api(USER)
def block_device_mapping_create(context: Any, values: dict[str, Any], legacy: bool = True) -> Any:
    """Create an entry of block device mapping."""
    bdm = _values(values, legacy)
    require_instance(bdm.get("instance_uuid"))
    return create(BDM, bdm)


def _update_row(row: Any, changes: dict[str, Any]) -> Any:
    """Apply ``changes`` to a loaded mapping (its instance must exist if it moves)."""
    if changes.get("instance_uuid") not in (None, row.instance_uuid):
        require_instance(changes["instance_uuid"])
    return update(row, changes)


@api(USER)
def block_device_mapping_update(
    context: Any, bdm_id: int, values: dict[str, Any], legacy: bool = True
) -> Any:
    """Update an entry of block device mapping."""
    bdm_id = key_value(BDM, "id", bdm_id)
    changes = _values(values, legacy, allow_updates=True)
    row = first(model_query(context, BDM).where(BDM.id == bdm_id))
    if row is None:
        return None
    return _update_row(row, changes)


@api()
def block_device_mapping_update_or_create(
    context: Any, values: dict[str, Any], legacy: bool = True
) -> Any:
    """Update an entry of block device mapping; if it does not exist, create it."""
    bdm = _values(values, legacy, allow_updates=True)
    if "device_name" not in bdm:
        raise InvalidQuery("block_device_mapping_update_or_create: values must give 'device_name'")
    if bdm["device_name"] and "instance_uuid" not in bdm:
        raise InvalidQuery(
            "block_device_mapping_update_or_create: values with a device_name must give "
            "'instance_uuid'"
        )
    # Writers of one instance's mappings take turns (the instance row is locked), so two
    # racing calls for one device cannot both insert, nor leave two swap disks.
    require_instance(bdm.get("instance_uuid"), lock=True)
    row = None
    # An empty device name is filled in later by the compute manager: always a new row.
    if bdm["device_name"]:
        stmt = (
            model_query(context, BDM)
            .where(BDM.instance_uuid == bdm["instance_uuid"], BDM.device_name == bdm["device_name"])
            .order_by(BDM.id)
        )
        row = first(stmt)
    if row is not None:
        update(row, bdm)
    else:
        row = create(BDM, bdm)
    # An instance has one swap disk: the row just written replaces any other.
    if is_swap(row) and row.instance_uuid is not None:
        soft_delete_where(
            BDM,
            BDM.instance_uuid == row.instance_uuid,
            BDM.source_type == "blank",
            BDM.guest_format == "swap",
            BDM.id != row.id,
        )
    return row


@api(USER)
def block_device_mapping_get_all_by_instance(
    context: Any, instance_uuid: str, use_slave: bool = False
) -> list[Any]:
    """Get all block device mapping belonging to an instance."""
    instance_uuid = key_value(BDM, "instance_uuid", instance_uuid)
    stmt = model_query(context, BDM).where(BDM.instance_uuid == instance_uuid).order_by(BDM.id)
    return fetch_all(stmt)


@api(USER)
def block_device_mapping_get_by_volume_id(
    context: Any, volume_id: str, columns_to_join: list[str] | None = None
) -> Any:
    """Get block device mapping for a given volume."""
    volume_id = key_value(BDM, "volume_id", volume_id)
    options = _join_options(columns_to_join)
    stmt = model_query(context, BDM).where(BDM.volume_id == volume_id).order_by(BDM.id)
    return first(stmt.options(*options))


@api(USER)
def block_device_mapping_destroy(context: Any, bdm_id: int) -> None:
    """Destroy the block device mapping."""
    bdm_id = key_value(BDM, "id", bdm_id)
    soft_delete_where(BDM, BDM.id == bdm_id)


@api(USER)
def block_device_mapping_destroy_by_instance_and_device(
    context: Any, instance_uuid: str, device_name: str
) -> None:
    """Destroy the block device mapping."""
    _destroy_where(instance_uuid, "device_name", device_name)


@api(USER)
def block_device_mapping_destroy_by_instance_and_volume(
    context: Any, instance_uuid: str, volume_id: str
) -> None:
    """Destroy the block device mapping."""
    _destroy_where(instance_uuid, "volume_id", volume_id)


def _destroy_where(instance_uuid: Any, key: str, value: Any) -> None:
    """Soft-delete the instance's live mappings whose ``key`` column equals ``value``."""
    instance_uuid = key_value(BDM, "instance_uuid", instance_uuid)
    value = key_value(BDM, key, value)
    soft_delete_where(BDM, BDM.instance_uuid == instance_uuid, getattr(BDM, key) == value)

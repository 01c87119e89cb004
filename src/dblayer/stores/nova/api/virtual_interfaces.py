"""nova DB API: virtual interfaces (notes §3.14).

Reads see live rows only (nova forced ``read_deleted='no'``); a lookup that finds
nothing returns None. ``virtual_interface_get_by_instance`` first checks that the
context can see the instance (InstanceNotFound otherwise: a user context sees its own
project's instances only); the other calls are not scoped, as in nova (a VIF has no
project of its own). A create that the database refuses (a live VIF has the MAC
address, the instance does not exist) is VirtualInterfaceCreateException; values the
columns cannot hold are refused before any SQL (InvalidQuery / InvalidValue).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dblayer.core import ConflictError, DatabaseError, InvalidQuery

from .. import exception
from ..models import Instance, VirtualInterface
from ._base import USER, api, create, fetch_all, first, model_query, soft_delete_where
from ._checks import clean_values, key_value

__all__ = [
    "virtual_interface_create",
    "virtual_interface_delete_by_instance",
    "virtual_interface_get",
    "virtual_interface_get_all",
    "virtual_interface_get_by_address",
    "virtual_interface_get_by_instance",
    "virtual_interface_get_by_instance_and_network",
    "virtual_interface_get_by_uuid",
]

VIF = VirtualInterface


def _live(context: Any) -> Any:
    return model_query(context, VIF, read_deleted="no")


@api(USER)
def virtual_interface_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a virtual interface record in the database."""
    if not isinstance(values, Mapping):
        raise InvalidQuery(f"virtual_interface_create: values must be a dict, got {values!r}")
    vif = clean_values(VIF, values)
    try:
        return create(VIF, vif)
    except (ConflictError, DatabaseError):
        # nova turned any database error here into this one.
        raise exception.VirtualInterfaceCreateException() from None


@api(USER)
def virtual_interface_delete_by_instance(context: Any, instance_id: str) -> None:
    """Delete virtual interface records associated with instance."""
    instance_uuid = key_value(VIF, "instance_uuid", instance_id)
    soft_delete_where(VIF, VIF.instance_uuid == instance_uuid)


@api(USER)
def virtual_interface_get(context: Any, vif_id: int) -> Any:
    """Gets a virtual interface from the table (None if there is none)."""
    vif_id = key_value(VIF, "id", vif_id)
    return first(_live(context).where(VIF.id == vif_id))


@api(USER)
def virtual_interface_get_all(context: Any) -> list[Any]:
    """Gets all virtual interfaces from the table."""
    return fetch_all(_live(context).order_by(VIF.id))


@api(USER)
def virtual_interface_get_by_address(context: Any, address: str) -> Any:
    """Gets a virtual interface from the table filtering on address."""
    if not isinstance(address, str):
        raise exception.InvalidIpAddressError(address=address)
    return first(_live(context).where(VIF.address == address).order_by(VIF.id))


@api(USER)
def virtual_interface_get_by_instance(
    context: Any, instance_id: str, use_slave: bool = False
) -> list[Any]:
    """Gets all virtual_interfaces for instance (ordered by creation)."""
    visible = None
    if isinstance(instance_id, str):
        stmt = model_query(context, Instance.id, base_model=Instance, project_only=True)
        visible = first(stmt.where(Instance.uuid == instance_id))
    if visible is None:
        raise exception.InstanceNotFound(instance_id=instance_id)
    stmt = _live(context).where(VIF.instance_uuid == instance_id).order_by(VIF.created_at, VIF.id)
    return fetch_all(stmt)


@api(USER)
def virtual_interface_get_by_instance_and_network(
    context: Any, instance_id: str, network_id: int
) -> Any:
    """Gets the virtual interface of an instance on a network (None if there is none)."""
    instance_uuid = key_value(VIF, "instance_uuid", instance_id)
    network_id = key_value(VIF, "network_id", network_id)
    stmt = _live(context).where(VIF.instance_uuid == instance_uuid, VIF.network_id == network_id)
    return first(stmt.order_by(VIF.id))


@api(USER)
def virtual_interface_get_by_uuid(context: Any, vif_uuid: str) -> Any:
    """Gets a virtual interface from the table filtering on vif uuid."""
    vif_uuid = key_value(VIF, "uuid", vif_uuid)
    return first(_live(context).where(VIF.uuid == vif_uuid).order_by(VIF.id))

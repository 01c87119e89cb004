"""nova DB API: PCI devices (notes §2.21 "PCI devices", §3.20).

Devices are keyed by ``(compute_node_id, address)``, unique among live rows. Every
call is admin-only except ``pci_device_get_all_by_instance_uuid`` (which returns only
the instance's ``allocated`` devices). Reads use the context's ``read_deleted``.

``pci_device_update`` upserts: it updates the live device at ``(node_id, address)``,
or inserts a new one from the values alone (as nova did, they must then give
``compute_node_id``, ``address`` and the other required columns). Two callers
creating the same device at once both succeed: the unique key decides which one
inserts, the other updates the winner's row.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dblayer.core import DuplicateEntry, InvalidValue

from .. import exception
from ..models import ComputeNode, PciDevice
from ._base import (
    ADMIN,
    USER,
    api,
    create,
    execute,
    fetch_all,
    first,
    model_query,
    savepoint,
    soft_delete_where,
    update,
)
from ._checks import clean_values, key_value, require_keys
from .compute_nodes import missing_required

__all__ = [
    "pci_device_destroy",
    "pci_device_get_all_by_instance_uuid",
    "pci_device_get_all_by_node",
    "pci_device_get_by_addr",
    "pci_device_get_by_id",
    "pci_device_update",
]

PD = PciDevice


def _at(node_id: Any, address: Any) -> tuple[sa.ColumnElement[bool], ...]:
    """The WHERE clause of the device at ``(node_id, address)``."""
    node_id = key_value(PD, "compute_node_id", node_id)
    address = key_value(PD, "address", address)
    return (
        PD.compute_node_id.is_(None) if node_id is None else PD.compute_node_id == node_id,
        PD.address.is_(None) if address is None else PD.address == address,
    )


def _live_device(context: Any, node_id: Any, address: Any) -> Any:
    """The live device at ``(node_id, address)``, or None."""
    stmt = model_query(context, PD, read_deleted="no").where(*_at(node_id, address))
    return first(stmt.order_by(PD.id))


def _check_node(node_id: Any) -> None:
    """ComputeHostNotFound (nova's error for a node id) unless a compute node row has
    ``node_id``; checked before writing so a bad id is the same error on every backend."""
    if execute(sa.select(ComputeNode.id).where(ComputeNode.id == node_id)).first() is None:
        raise exception.ComputeHostNotFound(host=node_id)


def _duplicate(error: DuplicateEntry) -> Exception:
    # nova let oslo.db's duplicate error escape from an update onto another device's key.
    return exception.DBDuplicateEntry(
        columns=exception.duplicate_columns(error, table="pci_devices"), inner_exception=error
    )


@api(ADMIN)
def pci_device_destroy(context: Any, node_id: int, address: str) -> None:
    """Delete a PCI device record."""
    where = _at(node_id, address)
    visible = model_query(context, PD, PD.id).where(*where)
    if execute(visible.limit(1)).first() is None:
        raise exception.PciDeviceNotFound(node_id=node_id, address=address)
    # A row the context sees but that is already deleted stays as it was.
    soft_delete_where(PD, *where)


@api(USER)
def pci_device_get_all_by_instance_uuid(context: Any, instance_uuid: str) -> list[Any]:
    """Get PCI devices allocated to instance."""
    instance_uuid = key_value(PD, "instance_uuid", instance_uuid)
    stmt = model_query(context, PD).where(
        PD.instance_uuid == instance_uuid, PD.status == "allocated"
    )
    return fetch_all(stmt.order_by(PD.id))


@api(ADMIN)
def pci_device_get_all_by_node(context: Any, node_id: int) -> list[Any]:
    """Get all PCI devices for one host."""
    node_id = key_value(PD, "compute_node_id", node_id)
    stmt = model_query(context, PD).where(PD.compute_node_id == node_id)
    return fetch_all(stmt.order_by(PD.id))


@api(ADMIN)
def pci_device_get_by_addr(context: Any, node_id: int, dev_addr: str) -> Any:
    """Get PCI device by address."""
    row = first(model_query(context, PD).where(*_at(node_id, dev_addr)).order_by(PD.id))
    if row is None:
        raise exception.PciDeviceNotFound(node_id=node_id, address=dev_addr)
    return row


@api(ADMIN)
def pci_device_get_by_id(context: Any, id: int) -> Any:  # noqa: A002 - nova's name
    """Get PCI device by id."""
    row = first(model_query(context, PD).where(PD.id == key_value(PD, "id", id)))
    if row is None:
        raise exception.PciDeviceNotFoundById(id=id)
    return row


@api(ADMIN)
def pci_device_update(context: Any, node_id: int, address: str, value: dict[str, Any]) -> Any:
    """Update a pci device."""
    require_keys("pci_device_update", value)
    changes = clean_values(PD, value)
    row = _live_device(context, node_id, address)
    if row is not None:
        if changes.get("compute_node_id", row.compute_node_id) != row.compute_node_id:
            _check_node(changes["compute_node_id"])
        try:
            return update(row, changes)
        except DuplicateEntry as e:
            raise _duplicate(e) from None
    missing = missing_required(PD, changes)
    if missing:
        raise InvalidValue(
            f"pci_device_update: no device {address!r} on node {node_id!r}, and a new one "
            f"needs {', '.join(missing)} in the values"
        )
    node = changes["compute_node_id"]
    _check_node(node)
    try:
        # A savepoint: losing the race to another creator leaves the transaction usable.
        with savepoint():
            return create(PD, changes)
    except DuplicateEntry as e:
        winner = _live_device(context, node, changes["address"])
        if winner is None:
            raise _duplicate(e) from None
    try:
        return update(winner, changes)
    except DuplicateEntry as e:
        raise _duplicate(e) from None

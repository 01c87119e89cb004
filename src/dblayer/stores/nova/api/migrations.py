"""nova DB API: migrations (notes §3.18). Every call is admin-only.

Lookups by id, by instance and status, and the unconfirmed list include deleted rows
(nova forced ``read_deleted='yes'`` there); the other lists use the context's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.orm import selectinload

from dblayer.core import InvalidQuery
from dblayer.core.types import utcnow

from .. import exception, models
from ._base import ADMIN, api, create, fetch_all, first, model_query, update
from ._checks import clean_values, key_value, require_instance, require_keys

__all__ = [
    "migration_create",
    "migration_get",
    "migration_get_all_by_filters",
    "migration_get_by_instance_and_status",
    "migration_get_in_progress_by_host_and_node",
    "migration_get_unconfirmed_by_dest_compute",
    "migration_update",
]

M = models.Migration

# Statuses of a migration that is over.
_DONE = ("confirmed", "reverted", "error")


def _by_id(context: Any, migration_id: Any) -> Any:
    """The migration with ``migration_id``, deleted or not; MigrationNotFound."""
    migration_id = key_value(M, "id", migration_id)
    row = first(model_query(context, M, read_deleted="yes").where(M.id == migration_id))
    if row is None:
        raise exception.MigrationNotFound(migration_id=migration_id)
    return row


@api(ADMIN)
def migration_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a migration record."""
    require_keys("migration_create", values)
    migration = clean_values(M, values)
    require_instance(migration.get("instance_uuid"))
    return create(M, migration)


@api(ADMIN)
def migration_update(context: Any, id: int, values: dict[str, Any]) -> Any:  # noqa: A002 - nova's name
    """Update a migration instance."""
    require_keys("migration_update", values)
    changes = clean_values(M, values)
    row = _by_id(context, id)
    if changes.get("instance_uuid") not in (None, row.instance_uuid):
        require_instance(changes["instance_uuid"])
    return update(row, changes)


@api(ADMIN)
def migration_get(context: Any, migration_id: int) -> Any:
    """Finds a migration by the id."""
    return _by_id(context, migration_id)


@api(ADMIN)
def migration_get_by_instance_and_status(context: Any, instance_uuid: str, status: str) -> Any:
    """Finds a migration by the instance uuid its migrating."""
    instance_uuid = key_value(M, "instance_uuid", instance_uuid)
    status = key_value(M, "status", status)
    stmt = (
        model_query(context, M, read_deleted="yes")
        .where(M.instance_uuid == instance_uuid, M.status == status)
        .order_by(M.id)
    )
    row = first(stmt)
    if row is None:
        raise exception.MigrationNotFoundByStatus(instance_id=instance_uuid, status=status)
    return row


@api(ADMIN)
def migration_get_unconfirmed_by_dest_compute(
    context: Any, confirm_window: int, dest_compute: str, use_slave: bool = False
) -> list[Any]:
    """Finds all unconfirmed migrations within the confirmation window for a specific
    destination compute host."""
    if isinstance(confirm_window, bool) or not isinstance(confirm_window, int | float):
        raise InvalidQuery(f"confirm_window must be a number of seconds, not {confirm_window!r}")
    dest_compute = key_value(M, "dest_compute", dest_compute)
    try:
        cutoff = utcnow() - dt.timedelta(seconds=confirm_window)
    except OverflowError:
        raise InvalidQuery(f"confirm_window {confirm_window!r} is out of range") from None
    stmt = (
        model_query(context, M, read_deleted="yes")
        .where(M.updated_at <= cutoff, M.status == "finished", M.dest_compute == dest_compute)
        .order_by(M.id)
    )
    return fetch_all(stmt)


@api(ADMIN)
def migration_get_in_progress_by_host_and_node(context: Any, host: str, node: str) -> list[Any]:
    """Finds all migrations for the given host + node that are not yet confirmed or reverted."""
    host = key_value(M, "source_compute", host)
    node = key_value(M, "source_node", node)
    stmt = (
        model_query(context, M)
        .where(
            or_(
                and_(M.source_compute == host, M.source_node == node),
                and_(M.dest_compute == host, M.dest_node == node),
            ),
            M.status.not_in(_DONE),
        )
        .options(selectinload(M.instance).selectinload(models.Instance.system_metadata))
        .order_by(M.id)
    )
    return fetch_all(stmt)


@api(ADMIN)
def migration_get_all_by_filters(context: Any, filters: dict[str, Any]) -> list[Any]:
    """Finds all migrations in progress."""
    if not isinstance(filters, Mapping):
        raise InvalidQuery(f"filters must be a dict, got {filters!r}")
    stmt = model_query(context, M)
    if "status" in filters:
        status = filters["status"]
        # A list means any of them (later nova accepts one); a single value, equality.
        if isinstance(status, list | tuple | set | frozenset):
            stmt = stmt.where(M.status.in_([key_value(M, "status", s) for s in status]))
        else:
            stmt = stmt.where(M.status == key_value(M, "status", status))
    if "host" in filters:
        host = key_value(M, "source_compute", filters["host"])
        stmt = stmt.where(or_(M.source_compute == host, M.dest_compute == host))
    return fetch_all(stmt.order_by(M.id))

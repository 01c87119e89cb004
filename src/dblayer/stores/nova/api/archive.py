"""nova DB API: archiving soft-deleted rows into shadow tables, and the conditions of
conditional updates (``constraint``, ``equal_any``, ``not_equal``, core's own).

Archiving is core's (children before parents, rows still referred to held back, so
no foreign key ever breaks). One nova rule comes first: the rows an instance owns
(metadata, info cache, faults, actions and their events, block device mappings,
security group links, migrations) die with it, so before archiving, those still
live under a soft-deleted instance are soft-deleted too, and the instance can move.
nova itself left them live, which kept every deleted instance in place for good.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dblayer.core import (
    InvalidQuery,
    archive_table,
    constraint,
    equal_any,
    live,
    not_equal,
    soft_delete,
)
from dblayer.core import archive_deleted_rows as archive_all

from .. import models
from ..context import require_admin_context
from ..facade import get_database

__all__ = [
    "archive_deleted_rows",
    "archive_deleted_rows_for_table",
    "constraint",
    "equal_any",
    "not_equal",
]

# Tables whose rows belong to one instance (by instance_uuid) and die with it.
INSTANCE_OWNED = (
    models.InstanceMetadata,
    models.InstanceSystemMetadata,
    models.InstanceInfoCache,
    models.InstanceFault,
    models.InstanceAction,
    models.BlockDeviceMapping,
    models.SecurityGroupInstanceAssociation,
    models.Migration,
)


def _check_max_rows(max_rows: Any) -> None:
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0
    ):
        raise InvalidQuery(f"max_rows must be a non-negative integer or None, got {max_rows!r}")


def _retire_children_of_deleted_instances() -> None:
    """Soft-delete the live rows owned by soft-deleted instances (one UPDATE per table)."""
    instances = models.Instance.__table__
    deleted_uuids = sa.select(instances.c.uuid).where(~live(instances))
    with get_database().transaction() as conn:
        for model in INSTANCE_OWNED:
            soft_delete(conn, model, model.__table__.c.instance_uuid.in_(deleted_uuids))
        # An action's events go with it.
        actions = models.InstanceAction.__table__
        events = models.InstanceActionEvent
        soft_delete(
            conn,
            events,
            events.__table__.c.action_id.in_(sa.select(actions.c.id).where(~live(actions))),
        )


# Not one unit of work: core archives in batches of their own transactions.
@require_admin_context
def archive_deleted_rows(context: Any, max_rows: int | None = None) -> int:
    """Move up to ``max_rows`` soft-deleted rows (all when None) into the shadow tables,
    children before parents; return how many moved."""
    _check_max_rows(max_rows)
    _retire_children_of_deleted_instances()
    return sum(archive_all(get_database(), models.BASE.metadata, max_rows=max_rows).values())


# Not one unit of work: core archives in batches of their own transactions.
@require_admin_context
def archive_deleted_rows_for_table(
    context: Any, tablename: str, max_rows: int | None = None
) -> int:
    """Move up to ``max_rows`` soft-deleted rows of ``tablename`` into ``shadow_<tablename>``;
    return how many moved (0 for a table without a shadow, or whose rows are still referred to)."""
    _check_max_rows(max_rows)
    tables = models.BASE.metadata.tables
    if not isinstance(tablename, str) or tablename not in tables:
        names = sorted(n for n in tables if not n.startswith("shadow_"))
        raise InvalidQuery(f"unknown table {tablename!r}; nova's tables are: {', '.join(names)}")
    if tablename in {"instances", "instance_actions_events"} | {
        m.__tablename__ for m in INSTANCE_OWNED
    }:
        _retire_children_of_deleted_instances()
    return archive_table(get_database(), models.BASE.metadata, tablename, max_rows=max_rows)

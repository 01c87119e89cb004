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

import datetime as dt
from typing import Any

import sqlalchemy as sa

from dblayer.core import (
    InvalidQuery,
    archive_table,
    constraint,
    equal_any,
    live,
    not_equal,
    utcnow,
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


def _die_with(conn: Any, table: sa.Table, owner: sa.Table, link: Any) -> None:
    """Soft-delete the live rows of ``table`` whose owner row (``link`` true) is soft-deleted,
    as deleted when their owner was (so ``before`` treats them alike); one UPDATE."""
    owned = sa.select(owner.c.deleted_at).where(link, ~live(owner)).limit(1).scalar_subquery()
    values: dict[str, Any] = {
        "deleted": table.c.id,
        "deleted_at": sa.func.coalesce(owned, utcnow()),
    }
    if "updated_at" in table.c:
        values["updated_at"] = table.c.updated_at
    conn.execute(
        sa.update(table).where(live(table), sa.exists().where(link, ~live(owner))).values(values)
    )


def _retire_children_of_deleted_instances() -> None:
    """Soft-delete the live rows owned by soft-deleted instances (one UPDATE per table)."""
    instances = models.Instance.__table__
    with get_database().transaction() as conn:
        for model in INSTANCE_OWNED:
            table = model.__table__
            _die_with(conn, table, instances, instances.c.uuid == table.c.instance_uuid)
        # An action's events go with it.
        actions = models.InstanceAction.__table__
        events = models.InstanceActionEvent.__table__
        _die_with(conn, events, actions, actions.c.id == events.c.action_id)


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
    return archive_deleted_rows_before(context, tablename, None, max_rows=max_rows)


# Not in __all__: the seed's functions keep its signatures; ``dblayer archive --before``
# calls this one.
@require_admin_context
def archive_deleted_rows_before(
    context: Any, tablename: str, before: dt.datetime | None, max_rows: int | None = None
) -> int:
    """archive_deleted_rows_for_table, moving only rows soft-deleted before ``before`` (a
    datetime; naive is UTC; None: every deleted row)."""
    _check_max_rows(max_rows)
    tables = models.BASE.metadata.tables
    if not isinstance(tablename, str) or tablename not in tables:
        names = sorted(n for n in tables if not n.startswith("shadow_"))
        raise InvalidQuery(f"unknown table {tablename!r}; nova's tables are: {', '.join(names)}")
    if before is not None and not isinstance(before, dt.datetime):
        raise InvalidQuery(f"before must be a datetime or None, got {before!r}")
    if tablename in {"instances", "instance_actions_events"} | {
        m.__tablename__ for m in INSTANCE_OWNED
    }:
        _retire_children_of_deleted_instances()
    return archive_table(
        get_database(), models.BASE.metadata, tablename, max_rows=max_rows, before=before
    )

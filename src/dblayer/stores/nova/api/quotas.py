"""nova DB API: quotas, quota classes, usages and reservations (notes §2.14, §3.15).

Limits live in ``quotas`` (per project), ``project_user_quotas`` (per user of a project)
and ``quota_classes``; a limit of None or below 0 is unlimited. Usage lives in
``quota_usages``, one live row per (project, user, resource); the per-project resources
(``fixed_ips``, ``floating_ips``, ``networks``) have one row per project, user_id NULL.
A reservation is a row of ``reservations`` pointing at the usage row it holds back.

quota_reserve
    One unit of work: the project's live usage rows are locked (``FOR UPDATE``; on
    PostgreSQL ``FOR NO KEY UPDATE``, after a transaction-scoped advisory lock on the
    project), usages are refreshed where nova's rules say so, every delta is checked
    against the user's and the project's limits, and reservations are written
    (``reserved += delta`` for positive deltas). Usage rows missing for the user are
    created on the way, race-free: SQLite writers hold the database lock; on PostgreSQL
    every reserver of a project holds the project's advisory lock; on MariaDB a creator
    locks the project's rows again after inserting and, if a concurrent creator made the
    same row, keeps the other's and deletes its own (two creators that meet there
    deadlock, and the unit of work is replayed). When a delta is over a limit, the
    refreshes and new usage rows are still committed (as nova did) and then
    ``OverQuota(overs, quotas, usages, headroom)`` is raised.

    ``resources`` maps each resource to what refreshes its usage: an object with a
    ``sync`` attribute (nova's ReservableResource), or the sync itself. A sync is the
    name of a routine in ``QUOTA_SYNC_FUNCTIONS`` (the four of nova's DB layer are
    there: ``_sync_instances``, ``_sync_floating_ips``, ``_sync_fixed_ips``,
    ``_sync_security_groups``; callers add their own by name) or a callable; it is
    called as ``sync(elevated_context, project_id, user_id, session)`` inside the unit
    of work (``session`` is its ORM Session) and returns ``{resource: in_use}``.
    ``resources=None`` means ``RESERVABLE_RESOURCES``, nova's six reservable resources.
    A sync is looked up only for a resource that needs a refresh, before anything is
    written. A usage is refreshed when it has no row yet, when its ``in_use`` is
    negative, when its ``until_refresh`` countdown reaches 0, or when ``max_age`` is set
    and ``now - updated_at >= max_age`` seconds (what nova meant: its test compared a
    negative difference, notes §7).

reservation_commit / reservation_rollback / reservation_expire
    Lock the live reservations they act on (``FOR UPDATE``), move their amounts
    (commit: ``reserved -= delta`` for a positive delta and ``in_use += delta``;
    rollback and expiry: ``reserved -= delta`` for a positive delta) and soft-delete
    them, in one unit of work. A reservation already committed, rolled back or expired
    is not live any more, so doing it again changes nothing. A commit of a reservation
    whose ``expire`` time has passed but which reservation_expire has not yet reached
    still commits it (nova's behaviour). Commit and rollback find the reservations by
    uuid (the project and user are checked on the rows: a project's soft-deleted
    reservations pile up under its project_id index until archived); unknown uuids are
    ignored, as in nova.

quota_reserve, reservation_commit and reservation_rollback run on every server boot:
their few arguments are checked by hand, and their statements are compiled once
(core's ``PreparedWrite`` and ``PreparedQuery``) and run on the unit's Connection.

Deviations from nova, each deliberate:
- ``reservation_commit`` / ``reservation_rollback`` default ``project_id`` / ``user_id``
  to the context's (nova's DB function crashed with KeyError); they act only on the
  given uuids that belong to that project (and that user, when one is known).
- Each limit is checked on its own: the project's when it is 0 or more, the user's when
  it is 0 or more. nova skipped the project check when the user's limit was unlimited,
  and found any delta over quota when the project's limit was unlimited (-1) but the
  user's was not.
- The project totals the check uses include the usages refreshed by this call (nova
  compared against the totals read before refreshing).
- The user's usage row of a per-user resource is the row with that user_id, of a
  per-project resource the row with user_id NULL (nova took whichever of the user's and
  the NULL rows came last). With duplicated rows (made by an older layer) the oldest
  wins.
- The ``max_age`` rule as above; a row without ``updated_at`` counts as too old.
- Rows of ``quota_classes`` carry no uniqueness: when a class has several live rows for
  one resource, the oldest is the one read (``quota_class_get`` and the dicts alike).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import uuid as uuid_module
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from dblayer.core import (
    DuplicateEntry,
    InvalidQuery,
    InvalidValue,
    PreparedQuery,
    PreparedWrite,
    TransientError,
    live,
    utcnow,
)

from .. import exception
from ..context import authorize_project_context, authorize_quota_class_context, check_context
from ..facade import get_database
from ..models import (
    FixedIp,
    FloatingIp,
    Instance,
    ProjectUserQuota,
    Quota,
    QuotaClass,
    QuotaUsage,
    Reservation,
    SecurityGroup,
)
from ._base import (
    ADMIN,
    USER,
    api,
    connection,
    create,
    execute,
    fetch_all,
    first,
    model_query,
    read_deleted_clause,
    session,
    soft_delete_where,
)
from ._checks import clean_value, key_value

__all__ = [
    "quota_class_create",
    "quota_class_get",
    "quota_class_get_all_by_name",
    "quota_class_get_default",
    "quota_class_update",
    "quota_create",
    "quota_destroy_all_by_project",
    "quota_destroy_all_by_project_and_user",
    "quota_get",
    "quota_get_all",
    "quota_get_all_by_project",
    "quota_get_all_by_project_and_user",
    "quota_reserve",
    "quota_update",
    "quota_usage_get",
    "quota_usage_get_all_by_project",
    "quota_usage_get_all_by_project_and_user",
    "quota_usage_update",
    "reservation_commit",
    "reservation_expire",
    "reservation_rollback",
]

LOG = logging.getLogger(__name__)

# Resources counted per project, not per user: their usage rows have user_id NULL.
PER_PROJECT_QUOTAS = ("fixed_ips", "floating_ips", "networks")
DEFAULT_QUOTA_CLASS = "default"
# The usage columns quota_usage_update may set (nova silently ignored any other keyword).
USAGE_UPDATE_KEYS = ("in_use", "reserved", "until_refresh")


def _is_per_user(resource: str, user_id: str | None) -> bool:
    """Whether a limit on ``resource`` given with ``user_id`` is a per-user one."""
    return bool(user_id) and resource not in PER_PROJECT_QUOTAS


def _is(column: Any, value: Any) -> sa.ColumnElement[bool]:
    # A None key means SQL NULL (nova's filter_by(x=None) was IS NULL too).
    return column.is_(None) if value is None else column == value


def _first_by_id(stmt: sa.Select[Any], model: Any) -> Any:
    """The first row of ``stmt``: a live row before deleted ones, then the oldest."""
    return first(stmt.order_by(model.deleted, model.id))


# -- quota classes ---------------------------------------------------------------------------


@api(ADMIN)
def quota_class_create(context: Any, class_name: str, resource: str, limit: int | None) -> Any:
    """Create a quota class for the given name and resource."""
    return create(
        QuotaClass,
        {
            "class_name": clean_value(QuotaClass, "class_name", class_name),
            "resource": clean_value(QuotaClass, "resource", resource),
            "hard_limit": clean_value(QuotaClass, "hard_limit", limit),
        },
    )


@api(USER)
def quota_class_get(context: Any, class_name: str, resource: str) -> Any:
    """Retrieve a quota class or raise if it does not exist."""
    stmt = model_query(context, QuotaClass, read_deleted="no").where(
        _is(QuotaClass.class_name, key_value(QuotaClass, "class_name", class_name)),
        _is(QuotaClass.resource, key_value(QuotaClass, "resource", resource)),
    )
    row = _first_by_id(stmt, QuotaClass)
    if row is None:
        raise exception.QuotaClassNotFound(class_name=class_name)
    return row


def _class_limits(context: Any, class_name: str | None) -> dict[str, Any]:
    """``{'class_name': c, resource: hard_limit, ...}`` of the class's live rows."""
    rows = execute(
        sa.select(QuotaClass.resource, QuotaClass.hard_limit)
        .where(
            _is(QuotaClass.class_name, key_value(QuotaClass, "class_name", class_name)),
            live(QuotaClass),
        )
        .order_by(QuotaClass.id)
    ).all()
    result: dict[str, Any] = {"class_name": class_name}
    for row in rows:
        result.setdefault(row.resource, row.hard_limit)
    return result


@api(USER)
def quota_class_get_all_by_name(context: Any, class_name: str) -> dict[str, Any]:
    """Retrieve all quotas associated with a given quota class."""
    authorize_quota_class_context(context, class_name)
    return _class_limits(context, class_name)


@api()
def quota_class_get_default(context: Any) -> dict[str, Any]:
    """Retrieve all default quotas."""
    return _class_limits(context, DEFAULT_QUOTA_CLASS)


@api(ADMIN)
def quota_class_update(context: Any, class_name: str, resource: str, limit: int | None) -> None:
    """Update a quota class or raise if it does not exist."""
    limit = clean_value(QuotaClass, "hard_limit", limit)
    updated = execute(
        sa.update(QuotaClass.__table__)
        .where(
            _is(QuotaClass.class_name, key_value(QuotaClass, "class_name", class_name)),
            _is(QuotaClass.resource, key_value(QuotaClass, "resource", resource)),
            live(QuotaClass),
        )
        .values(hard_limit=limit, updated_at=utcnow())
    )
    if not updated.rowcount:
        raise exception.QuotaClassNotFound(class_name=class_name)


# -- project and user limits -----------------------------------------------------------------


@api(ADMIN)
def quota_create(
    context: Any, project_id: str, resource: str, limit: int | None, user_id: str | None = None
) -> Any:
    """Create a quota for the given project and resource."""
    model = ProjectUserQuota if _is_per_user(resource, user_id) else Quota
    values = {
        "project_id": clean_value(model, "project_id", project_id),
        "resource": clean_value(model, "resource", resource),
        "hard_limit": clean_value(model, "hard_limit", limit),
    }
    if model is ProjectUserQuota:
        values["user_id"] = clean_value(model, "user_id", user_id)
    try:
        return create(model, values)
    except DuplicateEntry:
        raise exception.QuotaExists(project_id=project_id, resource=resource) from None


@api(USER)
def quota_get(context: Any, project_id: str, resource: str, user_id: str | None = None) -> Any:
    """Retrieve a quota or raise if it does not exist."""
    model = ProjectUserQuota if user_id else Quota
    stmt = model_query(context, model).where(
        _is(model.project_id, key_value(model, "project_id", project_id)),
        model.resource == key_value(model, "resource", resource),
    )
    if user_id:
        stmt = stmt.where(model.user_id == key_value(model, "user_id", user_id))
    row = _first_by_id(stmt, model)
    if row is None:
        if user_id:
            raise exception.ProjectUserQuotaNotFound(project_id=project_id, user_id=user_id)
        raise exception.ProjectQuotaNotFound(project_id=project_id)
    return row


@api(USER)
def quota_get_all(context: Any, project_id: str) -> list[Any]:
    """Retrieve all user quotas associated with a given project."""
    authorize_project_context(context, project_id)
    M = ProjectUserQuota
    return fetch_all(
        model_query(context, M)
        .where(M.project_id == key_value(M, "project_id", project_id))
        .order_by(M.id)
    )


@api(USER)
def quota_get_all_by_project(context: Any, project_id: str) -> dict[str, Any]:
    """Retrieve all quotas associated with a given project."""
    authorize_project_context(context, project_id)
    rows = execute(
        sa.select(Quota.resource, Quota.hard_limit)
        .where(_is(Quota.project_id, key_value(Quota, "project_id", project_id)), live(Quota))
        .order_by(Quota.id)
    ).all()
    result: dict[str, Any] = {"project_id": project_id}
    for row in rows:
        result.setdefault(row.resource, row.hard_limit)
    return result


@api(USER)
def quota_get_all_by_project_and_user(
    context: Any, project_id: str, user_id: str
) -> dict[str, Any]:
    """Retrieve all quotas associated with a given project and user."""
    authorize_project_context(context, project_id)
    M = ProjectUserQuota
    stmt = sa.select(M.resource, M.hard_limit).where(
        M.project_id == key_value(M, "project_id", project_id),
        M.user_id == key_value(M, "user_id", user_id),
    )
    visible = read_deleted_clause(M, context.read_deleted)
    if visible is not None:
        stmt = stmt.where(visible)
    result: dict[str, Any] = {"project_id": project_id, "user_id": user_id}
    # Live rows first (read_deleted 'yes' also reads deleted ones): the live limit wins.
    for row in execute(stmt.order_by(M.deleted, M.id)).all():
        result.setdefault(row.resource, row.hard_limit)
    return result


@api(ADMIN)
def quota_update(
    context: Any, project_id: str, resource: str, limit: int | None, user_id: str | None = None
) -> None:
    """Update a quota or raise if it does not exist."""
    per_user = _is_per_user(resource, user_id)
    model = ProjectUserQuota if per_user else Quota
    limit = clean_value(model, "hard_limit", limit)
    where = [
        _is(model.project_id, key_value(model, "project_id", project_id)),
        model.resource == key_value(model, "resource", resource),
    ]
    if per_user:
        where.append(model.user_id == key_value(model, "user_id", user_id))
    # nova's UPDATE honoured the context's read_deleted (normally: live rows only).
    visible = read_deleted_clause(model, context.read_deleted)
    if visible is not None:
        where.append(visible)
    updated = execute(
        sa.update(model.__table__).where(*where).values(hard_limit=limit, updated_at=utcnow())
    )
    if not updated.rowcount:
        if per_user:
            raise exception.ProjectUserQuotaNotFound(project_id=project_id, user_id=user_id)
        raise exception.ProjectQuotaNotFound(project_id=project_id)


@api(ADMIN)
def quota_destroy_all_by_project(context: Any, project_id: str) -> None:
    """Destroy all quotas associated with a given project."""
    project = key_value(Quota, "project_id", project_id)
    # Reservations before usages: the order commits and rollbacks lock them in.
    soft_delete_where(Reservation, _is(Reservation.project_id, project))
    soft_delete_where(QuotaUsage, _is(QuotaUsage.project_id, project))
    soft_delete_where(ProjectUserQuota, _is(ProjectUserQuota.project_id, project))
    soft_delete_where(Quota, _is(Quota.project_id, project))


@api(ADMIN)
def quota_destroy_all_by_project_and_user(context: Any, project_id: str, user_id: str) -> None:
    """Destroy all quotas associated with a given project and user."""
    project = key_value(Quota, "project_id", project_id)
    user = key_value(QuotaUsage, "user_id", user_id)
    soft_delete_where(
        Reservation, _is(Reservation.project_id, project), _is(Reservation.user_id, user)
    )
    soft_delete_where(
        QuotaUsage, _is(QuotaUsage.project_id, project), _is(QuotaUsage.user_id, user)
    )
    soft_delete_where(
        ProjectUserQuota,
        _is(ProjectUserQuota.project_id, project),
        _is(ProjectUserQuota.user_id, user),
    )


# -- usages ----------------------------------------------------------------------------------


@api(USER)
def quota_usage_get(
    context: Any, project_id: str, resource: str, user_id: str | None = None
) -> Any:
    """Retrieve a quota usage or raise if it does not exist."""
    U = QuotaUsage
    stmt = model_query(context, U, read_deleted="no").where(
        _is(U.project_id, key_value(U, "project_id", project_id)),
        U.resource == key_value(U, "resource", resource),
    )
    if user_id:
        # A per-project resource's usage is the project's row (user_id NULL).
        owner = None if resource in PER_PROJECT_QUOTAS else key_value(U, "user_id", user_id)
        stmt = stmt.where(_is(U.user_id, owner))
    row = first(stmt.order_by(U.id))
    if row is None:
        raise exception.QuotaUsageNotFound(project_id=project_id)
    return row


def _usage_sums(project_id: str, user_id: str | None) -> dict[str, Any]:
    """``{'project_id'[, 'user_id'], resource: {'in_use', 'reserved'}}`` summed over the
    project's live usage rows (with a user: that user's and the NULL-user rows)."""
    U = QuotaUsage
    stmt = sa.select(U.resource, U.in_use, U.reserved).where(
        _is(U.project_id, key_value(U, "project_id", project_id)), live(U)
    )
    result: dict[str, Any] = {"project_id": project_id}
    if user_id:
        stmt = stmt.where(
            sa.or_(U.user_id == key_value(U, "user_id", user_id), U.user_id.is_(None))
        )
        result["user_id"] = user_id
    for row in execute(stmt.order_by(U.id)).all():
        sums = result.get(row.resource)
        if isinstance(sums, dict):
            sums["in_use"] += row.in_use
            sums["reserved"] += row.reserved
        else:
            result[row.resource] = {"in_use": row.in_use, "reserved": row.reserved}
    return result


@api(USER)
def quota_usage_get_all_by_project(context: Any, project_id: str) -> dict[str, Any]:
    """Retrieve all usage associated with a given resource."""
    authorize_project_context(context, project_id)
    return _usage_sums(project_id, None)


@api(USER)
def quota_usage_get_all_by_project_and_user(
    context: Any, project_id: str, user_id: str
) -> dict[str, Any]:
    """Retrieve all usage associated with a given resource."""
    authorize_project_context(context, project_id)
    return _usage_sums(project_id, user_id)


@api(ADMIN)
def quota_usage_update(
    context: Any, project_id: str, user_id: str | None, resource: str, **kwargs: Any
) -> None:
    """Update a quota usage or raise if it does not exist."""
    U = QuotaUsage
    changes = {k: clean_value(U, k, kwargs[k]) for k in USAGE_UPDATE_KEYS if k in kwargs}
    ignored = sorted(set(kwargs) - set(USAGE_UPDATE_KEYS))
    if ignored:
        LOG.debug("quota_usage_update ignores %s", ", ".join(ignored))
    where = [
        _is(U.project_id, key_value(U, "project_id", project_id)),
        U.resource == key_value(U, "resource", resource),
        sa.or_(_is(U.user_id, key_value(U, "user_id", user_id)), U.user_id.is_(None)),
        live(U),
    ]
    if changes:
        changes["updated_at"] = utcnow()
        found = execute(sa.update(U.__table__).where(*where).values(changes)).rowcount
    else:
        found = execute(sa.select(sa.func.count()).select_from(U.__table__).where(*where)).scalar()
    if not found:
        raise exception.QuotaUsageNotFound(project_id=project_id)


# -- usage refresh: the sync routines --------------------------------------------------------
#
# Each counts live rows and returns {resource: in_use}; quota_reserve calls them with an
# elevated context inside its unit of work, so they read what the transaction sees.

SyncFunction = Callable[[Any, str, "str | None", Any], Mapping[str, int]]


def _count(stmt: sa.Select[Any]) -> int:
    return int(execute(stmt).scalar() or 0)


def _sync_instances(
    context: Any, project_id: str, user_id: str | None, session: Any
) -> dict[str, int]:
    """instances, cores and ram of the project's live instances (the user's, given one)."""
    stmt = sa.select(
        sa.func.count(Instance.id), sa.func.sum(Instance.vcpus), sa.func.sum(Instance.memory_mb)
    ).where(Instance.project_id == project_id, live(Instance))
    if user_id:
        stmt = stmt.where(Instance.user_id == user_id)
    count, cores, ram = execute(stmt).one()
    return {"instances": int(count or 0), "cores": int(cores or 0), "ram": int(ram or 0)}


def _sync_floating_ips(
    context: Any, project_id: str, user_id: str | None, session: Any
) -> dict[str, int]:
    """The project's live floating IPs that were not auto-assigned."""
    stmt = sa.select(sa.func.count(FloatingIp.id)).where(
        FloatingIp.project_id == project_id,
        FloatingIp.auto_assigned == sa.false(),
        live(FloatingIp),
    )
    return {"floating_ips": _count(stmt)}


def _sync_fixed_ips(
    context: Any, project_id: str, user_id: str | None, session: Any
) -> dict[str, int]:
    """The live fixed IPs held by instances of the project (the instance may be deleted)."""
    stmt = (
        sa.select(sa.func.count(FixedIp.id))
        .select_from(FixedIp)
        .join(Instance, Instance.uuid == FixedIp.instance_uuid)
        .where(Instance.project_id == project_id, live(FixedIp))
    )
    return {"fixed_ips": _count(stmt)}


def _sync_security_groups(
    context: Any, project_id: str, user_id: str | None, session: Any
) -> dict[str, int]:
    """The live security groups of the project and user."""
    stmt = sa.select(sa.func.count(SecurityGroup.id)).where(
        SecurityGroup.project_id == project_id,
        _is(SecurityGroup.user_id, user_id),
        live(SecurityGroup),
    )
    return {"security_groups": _count(stmt)}


# nova's registry of sync routines by name (a resource's ``sync``); callers add their own.
QUOTA_SYNC_FUNCTIONS: dict[str, SyncFunction] = {
    "_sync_instances": _sync_instances,
    "_sync_floating_ips": _sync_floating_ips,
    "_sync_fixed_ips": _sync_fixed_ips,
    "_sync_security_groups": _sync_security_groups,
}


@dataclass(frozen=True)
class ReservableResource:
    """A resource quota_reserve can refresh: its name and its sync (a name or a callable)."""

    name: str
    sync: str | SyncFunction


# nova's reservable resources (nova.quota) and their syncs: what resources=None means.
RESERVABLE_RESOURCES: dict[str, ReservableResource] = {
    name: ReservableResource(name, sync)
    for name, sync in (
        ("instances", "_sync_instances"),
        ("cores", "_sync_instances"),
        ("ram", "_sync_instances"),
        ("security_groups", "_sync_security_groups"),
        ("floating_ips", "_sync_floating_ips"),
        ("fixed_ips", "_sync_fixed_ips"),
    )
}


def _sync_for(resources: Mapping[str, Any] | None, resource: str) -> SyncFunction:
    """The routine that refreshes ``resource``'s usage; InvalidQuery when there is none."""
    source = RESERVABLE_RESOURCES if resources is None else resources
    if resource not in source:
        raise InvalidQuery(
            f"quota_reserve must refresh the usage of {resource!r}, but resources has no "
            f"entry for it (entries: {', '.join(map(str, source)) or 'none'})"
        )
    entry = source[resource]
    sync = entry.get("sync") if isinstance(entry, Mapping) else getattr(entry, "sync", entry)
    if isinstance(sync, str):
        routine = QUOTA_SYNC_FUNCTIONS.get(sync)
        if routine is None:
            raise InvalidQuery(
                f"resource {resource!r} names the sync routine {sync!r}, which is not in "
                f"QUOTA_SYNC_FUNCTIONS ({', '.join(sorted(QUOTA_SYNC_FUNCTIONS))})"
            )
        return routine
    if callable(sync):
        return sync
    raise InvalidQuery(
        f"resources[{resource!r}] must be a sync routine, its name, or an object with a "
        f"'sync' attribute; got {entry!r}"
    )


def _synced(
    routine: SyncFunction, context: Any, project_id: str, user_id: str | None
) -> dict[str, int]:
    """Run a sync routine; its answer checked (resource name -> integer in_use)."""
    answer = routine(context.elevated(), project_id, user_id, session())
    if not isinstance(answer, Mapping):
        raise InvalidQuery(f"sync routine {routine!r} returned {answer!r}, not a dict")
    checked = {}
    for resource, in_use in answer.items():
        clean_value(QuotaUsage, "resource", resource)
        checked[resource] = clean_value(QuotaUsage, "in_use", in_use)
    return checked


# -- quota_reserve ---------------------------------------------------------------------------

_USAGES = QuotaUsage.__table__
_RESERVATIONS = Reservation.__table__


@dataclass(slots=True)
class _Usage:
    """One locked usage row as quota_reserve works on it."""

    id: int
    user_id: str | None
    resource: str
    in_use: int
    reserved: int
    until_refresh: int | None
    updated_at: dt.datetime | None = None
    changed: bool = False

    @property
    def total(self) -> int:
        return self.in_use + self.reserved


@dataclass
class _Over:
    """quota_reserve's answer when a delta is over a limit: OverQuota's arguments."""

    kwargs: dict[str, Any] = field(default_factory=dict)


def _lock_usages_query(with_age: bool) -> PreparedQuery:
    """The live usage rows of :project_id, locked, in id order (``updated_at`` only when
    the max_age rule needs it: reading it back costs a parse per row on SQLite)."""
    u = _USAGES
    columns = [u.c.id, u.c.user_id, u.c.resource, u.c.in_use, u.c.reserved, u.c.until_refresh]
    if with_age:
        columns.append(u.c.updated_at)
    return PreparedQuery(
        sa.select(*columns)
        .where(u.c.project_id == sa.bindparam("project_id"), live(u))
        .order_by(u.c.id)
        # PostgreSQL: FOR NO KEY UPDATE, which still lets reservations reference the rows.
        .with_for_update(key_share=True)
    )


_LOCK_USAGES = {with_age: _lock_usages_query(with_age) for with_age in (False, True)}
_PROJECT_LOCK = PreparedQuery(
    sa.select(sa.func.pg_advisory_xact_lock(sa.bindparam("key", type_=sa.BigInteger)))
)
_WRITE_USAGE = PreparedWrite(
    sa.update(_USAGES)
    .where(_USAGES.c.id == sa.bindparam("b_id"))
    .values(
        in_use=sa.bindparam("b_in_use"),
        reserved=sa.bindparam("b_reserved"),
        until_refresh=sa.bindparam("b_until_refresh"),
        updated_at=sa.bindparam("b_now"),
    )
)


_INSERT_RESERVATION = PreparedWrite(
    sa.insert(_RESERVATIONS).values(
        {
            name: sa.bindparam(name)
            for name in (
                "uuid",
                "usage_id",
                "project_id",
                "user_id",
                "resource",
                "delta",
                "expire",
                "created_at",
                "deleted",
            )
        }
    )
)


def _project_lock_key(project_id: str) -> int:
    """The PostgreSQL advisory lock key of a project's quota usages (a signed 64-bit hash)."""
    digest = hashlib.blake2b(f"nova.quota_usages:{project_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_usages(conn: Any, project_id: str, with_age: bool) -> list[dict[str, Any]]:
    """The project's live usage rows, locked, as dicts (only the user's become _Usage
    objects, in _user_view: the rows are read under the lock, so the less work the better)."""
    return _LOCK_USAGES[with_age].run_all(conn, {"project_id": project_id})


def _owner(resource: str, user_id: str | None) -> str | None:
    """The user_id of the usage row that holds ``user_id``'s use of ``resource``."""
    return None if resource in PER_PROJECT_QUOTAS else user_id


def _user_view(
    rows: list[dict[str, Any]], user_id: str | None, own: frozenset[int] = frozenset()
) -> dict[str, _Usage]:
    """resource -> the user's usage row: the oldest, but a row someone else made before one
    this call inserted (``own``)."""
    chosen: dict[str, dict[str, Any]] = {}
    for row in rows:
        resource = row["resource"]
        if row["user_id"] != _owner(resource, user_id):
            continue
        current = chosen.get(resource)
        if current is None or (current["id"] in own and row["id"] not in own):
            chosen[resource] = row
    return {resource: _Usage(**row) for resource, row in chosen.items()}


def _create_usages(
    conn: Any,
    project_id: str,
    user_id: str | None,
    resources: list[str],
    until_refresh: int | None,
    now: dt.datetime,
    own: set[int],
    with_age: bool,
) -> tuple[list[dict[str, Any]], dict[str, _Usage], bool]:
    """Insert the missing usage rows (their ids added to ``own``), lock the project's rows
    again and return them, the user's view, and whether a row thought missing turned out
    to be someone else's.

    The project's rows are read again so that the answer holds every row now committed.
    On MariaDB a creator that raced another one (both saw no row) meets the other's
    uncommitted insert here: they wait for each other, the backend picks a deadlock
    victim and its unit of work is replayed; one that only finds the other's row after
    it committed keeps that row and deletes its own.
    """
    for resource in resources:
        inserted = execute(
            sa.insert(_USAGES).values(
                project_id=project_id,
                user_id=_owner(resource, user_id),
                resource=resource,
                in_use=0,
                reserved=0,
                until_refresh=until_refresh or None,
                created_at=now,
                # nova stamps a new row: the max_age rule goes by its age.
                updated_at=now,
                deleted=0,
            ),
            conn=conn,
        )
        own.add(inserted.inserted_primary_key[0])
    rows = _lock_usages(conn, project_id, with_age)
    view = _user_view(rows, user_id, frozenset(own))
    chosen = {usage.id for usage in view.values()}
    extra = [row["id"] for row in rows if row["id"] in own and row["id"] not in chosen]
    if extra:
        execute(sa.delete(_USAGES).where(_USAGES.c.id.in_(extra)), conn=conn)
        rows = [row for row in rows if row["id"] not in extra]
        own.difference_update(extra)
    displaced = any(view[resource].id not in own for resource in resources)
    return rows, view, displaced


def _needs_refresh(
    row: _Usage | None, until_refresh: int | None, max_age: float | None, now: dt.datetime
) -> bool:
    """nova's rules, in nova's order; counts ``until_refresh`` down on the row."""
    if row is None or row.in_use < 0:
        return True
    if row.until_refresh is not None:
        row.until_refresh -= 1
        row.changed = True
        return row.until_refresh <= 0
    if max_age:
        # What nova meant: refresh a usage not refreshed for max_age seconds.
        return row.updated_at is None or (now - row.updated_at).total_seconds() >= max_age
    return False


def _unlimited(limit: int | None) -> bool:
    return limit is None or limit < 0


def _over_quota(
    deltas: Mapping[str, int],
    project_quotas: Mapping[str, Any],
    user_quotas: Mapping[str, Any],
    rows: list[dict[str, Any]],
    view: dict[str, _Usage],
) -> _Over:
    """OverQuota's arguments for the resources over a limit (none: empty kwargs)."""
    # The project's sums, with the user's rows as this call has them (refreshed).
    mine = {usage.id: usage for usage in view.values()}
    project: dict[str, dict[str, int]] = {}
    for row in rows:
        sums = project.setdefault(row["resource"], {"in_use": 0, "reserved": 0})
        usage = mine.get(row["id"])
        if usage is None:
            sums["in_use"] += row["in_use"]
            sums["reserved"] += row["reserved"]
        else:
            sums["in_use"] += usage.in_use
            sums["reserved"] += usage.reserved
    overs = []
    for resource, delta in deltas.items():
        if delta < 0:
            # Reductions always pass: a project over its quota must be able to shrink.
            continue
        user_limit, project_limit = user_quotas[resource], project_quotas[resource]
        used = project[resource]
        if (not _unlimited(user_limit) and user_limit < delta + view[resource].total) or (
            not _unlimited(project_limit)
            and project_limit < delta + used["in_use"] + used["reserved"]
        ):
            overs.append(resource)
    if not overs:
        return _Over()
    if dict(project_quotas) == dict(user_quotas):
        usages = project
    else:
        usages = {r: {"in_use": u.in_use, "reserved": u.reserved} for r, u in view.items()}
    headroom = {}
    for resource, limit in user_quotas.items():
        used = usages.get(resource, {"in_use": 0, "reserved": 0})
        headroom[resource] = (-1 if limit is None else limit) - (used["in_use"] + used["reserved"])
    # Unlimited cores or ram: their headroom follows the instances' (as nova reported it).
    for resource in ("cores", "ram"):
        if (
            resource in user_quotas
            and _unlimited(user_quotas[resource])
            and "instances" in headroom
        ):
            if deltas.get(resource) and deltas.get("instances"):
                headroom[resource] = headroom["instances"] * deltas[resource] // deltas["instances"]
            else:
                headroom[resource] = headroom["instances"]
    return _Over(
        {
            "overs": sorted(overs),
            "quotas": dict(user_quotas),
            "usages": usages,
            "headroom": headroom,
        }
    )


def _plan(
    context: Any,
    resources: Mapping[str, Any] | None,
    deltas: Mapping[str, int],
    view: dict[str, _Usage],
    own: set[int],
    until_refresh: int | None,
    max_age: float | None,
    now: dt.datetime,
    project_id: str,
    user_id: str | None,
) -> tuple[dict[str, int | None], dict[str, int]]:
    """Which usages to refresh, by nova's rules in nova's order: (the countdowns of the
    rows not refreshed, the refreshed in_use values). A row this call inserted counts
    as missing."""
    countdowns: dict[str, int | None] = {}
    refreshed: dict[str, int] = {}
    for resource in deltas:
        if resource in refreshed:
            continue  # refreshed with another resource by the same sync
        row = view.get(resource)
        if row is not None and row.id in own:
            row = None
        if _needs_refresh(row, until_refresh, max_age, now):
            routine = _sync_for(resources, resource)
            refreshed.update(_synced(routine, context, project_id, user_id))
        elif row is not None and row.changed:
            countdowns[resource] = row.until_refresh
    return countdowns, refreshed


def _reserve(
    conn: Any,
    context: Any,
    resources: Mapping[str, Any] | None,
    project_quotas: Mapping[str, Any],
    user_quotas: Mapping[str, Any],
    deltas: dict[str, int],
    expire: dt.datetime | None,
    until_refresh: int | None,
    max_age: float | None,
    project_id: str,
    user_id: str | None,
    uuids: list[str],
) -> list[str] | _Over:
    """quota_reserve's unit of work: the reservation uuids (``uuids``, made beforehand, one
    per delta), or _Over (the refreshes still committed)."""
    if conn.dialect.name == "postgresql":
        # Every reserver of the project takes its turn here, so that what it reads next is
        # everything committed before (row locks alone miss rows inserted meanwhile).
        _PROJECT_LOCK.first(conn, key=_project_lock_key(project_id))
    now = utcnow()
    with_age = bool(max_age)
    rows = _lock_usages(conn, project_id, with_age)
    view = _user_view(rows, user_id)
    own: set[int] = set()  # usage rows this call inserted
    # Plan the refreshes on the rows read (the syncs run before any write); rows found
    # missing are created, and when one of them turns out to exist after all (made by a
    # concurrent caller), plan again on what is there now.
    for _ in range(len(deltas) + 3):
        countdowns, refreshed = _plan(
            context, resources, deltas, view, own, until_refresh, max_age, now, project_id, user_id
        )
        missing = [r for r in dict.fromkeys([*deltas, *refreshed]) if r not in view]
        if not missing:
            break
        rows, view, displaced = _create_usages(
            conn, project_id, user_id, missing, until_refresh, now, own, with_age
        )
        if not displaced:
            break
    else:
        raise TransientError("quota usage rows kept changing while quota_reserve created them")
    for resource, left in countdowns.items():
        row = view[resource]
        row.until_refresh, row.changed = left, True
    for resource, in_use in refreshed.items():
        row = view[resource]
        if row.in_use != in_use:
            LOG.debug("quota usage of %s refreshed: %s -> %s", resource, row.in_use, in_use)
        row.in_use, row.until_refresh, row.changed = in_use, until_refresh or None, True

    for resource, delta in deltas.items():
        if delta < 0 and delta + view[resource].in_use < 0:
            LOG.warning(
                "quota_reserve: %s usage of project %s would go below zero (%s %+d)",
                resource,
                project_id,
                view[resource].in_use,
                delta,
            )
    over = _over_quota(deltas, project_quotas, user_quotas, rows, view)
    if not over.kwargs:
        reservations = []
        for reservation, (resource, delta) in zip(uuids, deltas.items(), strict=True):
            row = view[resource]
            reservations.append(
                {
                    "uuid": reservation,
                    "usage_id": row.id,
                    "project_id": project_id,
                    "user_id": user_id,
                    "resource": resource,
                    "delta": delta,
                    "expire": expire,
                    "created_at": now,
                    "deleted": 0,
                }
            )
            if delta > 0:
                row.reserved += delta
                row.changed = True
        if reservations:
            _INSERT_RESERVATION.run_many(conn, reservations)
    changed = [row for row in view.values() if row.changed]
    if changed:
        _WRITE_USAGE.run_many(
            conn,
            [
                {
                    "b_id": row.id,
                    "b_in_use": row.in_use,
                    "b_reserved": row.reserved,
                    "b_until_refresh": row.until_refresh,
                    "b_now": now,
                }
                for row in sorted(changed, key=lambda r: r.id)
            ],
        )
    return over if over.kwargs else uuids


_INT32 = 2**31


def _text(function: str, what: str, value: Any, *, nullable: bool = False) -> Any:
    """``value`` if the column of ``what`` (String(255)) can hold it, else InvalidValue.

    The reservation calls check their few values by hand: ``clean_value`` would cost
    them more than their SQL.
    """
    if value is None and nullable:
        return None
    if not isinstance(value, str) or len(value) > 255:
        raise InvalidValue(
            f"{function}: {what} must be a string of at most 255 characters, not {value!r}"
        )
    return value


def _int32(function: str, what: str, value: Any, *, nullable: bool = False) -> Any:
    """``value`` if it is a 32-bit integer (the column of ``what``), else InvalidValue."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -_INT32 <= value < _INT32:
        raise InvalidValue(f"{function}: {what} must be a 32-bit integer, not {value!r}")
    return value


def _project_and_user(
    function: str, context: Any, project_id: Any, user_id: Any
) -> tuple[str, str | None]:
    """The ids a reservation call works for: the given ones, else the context's."""
    if project_id is None:
        project_id = context.project_id
    if user_id is None:
        user_id = context.user_id
    if project_id is None:
        raise InvalidQuery(
            f"{function} needs a project_id: none was given and the context has none"
        )
    return (
        _text(function, "project_id", project_id),
        _text(function, "user_id", user_id, nullable=True),
    )


def _limits(name: str, limits: Any, deltas: Mapping[str, int]) -> Mapping[str, Any]:
    if not isinstance(limits, Mapping):
        raise InvalidQuery(
            f"quota_reserve: {name} must be a dict of resource -> limit, got {limits!r}"
        )
    for resource in deltas:
        if resource not in limits:
            raise InvalidQuery(f"quota_reserve: {name} has no limit for {resource!r}")
        limit = limits[resource]
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise InvalidQuery(
                f"quota_reserve: {name}[{resource!r}] must be an integer or None, not {limit!r}"
            )
    return limits


def quota_reserve(
    context: Any,
    resources: Mapping[str, Any] | None,
    quotas: Mapping[str, Any],
    user_quotas: Mapping[str, Any],
    deltas: Mapping[str, int],
    expire: dt.datetime | None,
    until_refresh: int | None,
    max_age: float | None,
    project_id: str | None = None,
    user_id: str | None = None,
) -> list[str]:
    """Check quotas and create appropriate reservations."""
    check_context(context)
    if not isinstance(deltas, Mapping):
        raise InvalidQuery(
            f"quota_reserve: deltas must be a dict of resource -> int, got {deltas!r}"
        )
    checked: dict[str, int] = {}
    for resource, delta in deltas.items():
        _text("quota_reserve", "a resource", resource)
        checked[resource] = _int32("quota_reserve", f"deltas[{resource!r}]", delta)
    _limits("quotas", quotas, checked)
    _limits("user_quotas", user_quotas, checked)
    if resources is not None and not isinstance(resources, Mapping):
        raise InvalidQuery(f"quota_reserve: resources must be a dict or None, got {resources!r}")
    if expire is not None and not isinstance(expire, dt.datetime):
        raise InvalidQuery(f"quota_reserve: expire must be a datetime or None, got {expire!r}")
    if expire is not None and expire.tzinfo is not None:
        expire = expire.astimezone(dt.UTC).replace(tzinfo=None)
    _int32("quota_reserve", "until_refresh", until_refresh, nullable=True)
    if max_age is not None and (
        isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age < 0
    ):
        raise InvalidQuery(f"quota_reserve: max_age must be a number of seconds, got {max_age!r}")
    project_id, user_id = _project_and_user("quota_reserve", context, project_id, user_id)
    # Only the SQL and the checks on what it read run inside the transaction (the rows stay
    # locked meanwhile): the arguments are checked and the uuids made before it begins. The
    # unit returns _Over rather than raising OverQuota, so that the refreshes commit.
    outcome = get_database().run(
        _reserve,
        context,
        resources,
        quotas,
        user_quotas,
        checked,
        expire,
        until_refresh,
        max_age,
        project_id,
        user_id,
        [str(uuid_module.uuid4()) for _ in checked],
    )
    if isinstance(outcome, _Over):
        # Raised after the unit of work committed: refreshes and new usage rows stay.
        raise exception.OverQuota(**outcome.kwargs)
    return outcome


# -- settling reservations -------------------------------------------------------------------

_LOCK_BATCH = 16  # uuids per locking query (the prepared queries are cached by size)
# The parameter names of _lock_reservations and _soft_delete_reservations, in order.
_UUID_PARAMS = tuple(f"u{i}" for i in range(_LOCK_BATCH))
_ID_PARAMS = tuple(f"i{i}" for i in range(_LOCK_BATCH))

_MOVE_USAGE = PreparedWrite(
    sa.update(_USAGES)
    .where(_USAGES.c.id == sa.bindparam("b_id"), live(_USAGES))
    .values(
        reserved=_USAGES.c.reserved + sa.bindparam("b_reserved"),
        in_use=_USAGES.c.in_use + sa.bindparam("b_in_use"),
        updated_at=sa.bindparam("b_now"),
    )
)
_LOCK_EXPIRED = (
    sa.select(_RESERVATIONS.c.id, _RESERVATIONS.c.usage_id, _RESERVATIONS.c.delta)
    .where(_RESERVATIONS.c.expire < sa.bindparam("now"), live(_RESERVATIONS))
    .order_by(_RESERVATIONS.c.id)
    .with_for_update()
)


@functools.cache
def _lock_reservations(count: int) -> PreparedQuery:
    """The live reservations among ``count`` uuids (:u0, :u1, ...), locked, in id order.

    Only the uuid is asked of the database (project and user are checked on the rows), so
    that every backend finds them by the uuid index: a project's reservations, kept
    soft-deleted until archived, pile up under the project_id index.
    """
    r = _RESERVATIONS
    stmt = sa.select(r.c.id, r.c.usage_id, r.c.delta, r.c.project_id, r.c.user_id).where(
        r.c.uuid.in_([sa.bindparam(name) for name in _UUID_PARAMS[:count]]), live(r)
    )
    return PreparedQuery(stmt.order_by(r.c.id).with_for_update())


@functools.cache
def _soft_delete_reservations(count: int) -> PreparedWrite:
    """Soft-delete the live reservations with ids :i0, :i1, ... (deleted = id, deleted_at =
    :now, updated_at kept, as nova's query soft delete did)."""
    r = _RESERVATIONS
    return PreparedWrite(
        sa.update(r)
        .where(r.c.id.in_([sa.bindparam(name) for name in _ID_PARAMS[:count]]), live(r))
        .values(deleted=r.c.id, deleted_at=sa.bindparam("now"), updated_at=r.c.updated_at)
    )


def _settle(conn: Any, rows: Iterable[Mapping[str, Any]], commit: bool) -> None:
    """Move the locked reservations' amounts (commit: into in_use; else back out of
    reserved) and soft-delete them."""
    ids: list[int] = []
    moves: dict[int, list[int]] = {}
    for row in rows:
        ids.append(row["id"])
        move = moves.setdefault(row["usage_id"], [0, 0])
        if row["delta"] >= 0:
            move[0] -= row["delta"]
        if commit:
            move[1] += row["delta"]
    if not ids:
        return
    now = utcnow()
    changes = [
        {"b_id": usage_id, "b_reserved": r, "b_in_use": u, "b_now": now}
        for usage_id, (r, u) in sorted(moves.items())
        if r or u
    ]
    if changes:
        _MOVE_USAGE.run_many(conn, changes)
    for start in range(0, len(ids), _LOCK_BATCH):
        chunk = ids[start : start + _LOCK_BATCH]
        _soft_delete_reservations(len(chunk)).run_many(
            conn, [{"now": now, **dict(zip(_ID_PARAMS, chunk, strict=False))}]
        )


def _uuid_list(function: str, reservations: Any) -> list[str]:
    if isinstance(reservations, str | bytes) or not isinstance(reservations, Iterable):
        raise InvalidQuery(
            f"{function}: reservations must be a list of uuids, got {reservations!r}"
        )
    uuids = []
    for value in reservations:
        if not isinstance(value, str):
            raise InvalidQuery(f"{function}: a reservation uuid must be a string, got {value!r}")
        uuids.append(value)
    # Sorted: two callers settling the same reservations lock them in the same order.
    return sorted(set(uuids))


def _settle_uuids(
    function: str, context: Any, reservations: Any, project_id: Any, user_id: Any, commit: bool
) -> None:
    """reservation_commit / reservation_rollback: the arguments checked, then one unit of
    work (none for no uuids)."""
    check_context(context)
    uuids = _uuid_list(function, reservations)
    project_id, user_id = _project_and_user(function, context, project_id, user_id)
    if uuids:
        get_database().run(_settle_reservations, uuids, project_id, user_id, commit)


def _settle_reservations(
    conn: Any, uuids: list[str], project_id: str, user_id: str | None, commit: bool
) -> None:
    rows: list[dict[str, Any]] = []
    for start in range(0, len(uuids), _LOCK_BATCH):
        batch = uuids[start : start + _LOCK_BATCH]
        params = dict(zip(_UUID_PARAMS, batch, strict=False))
        rows += _lock_reservations(len(batch)).run_all(conn, params)
    # Another project's (or, when the user is known, another user's) are not this call's.
    _settle(
        conn,
        [
            row
            for row in rows
            if row["project_id"] == project_id and (user_id is None or row["user_id"] == user_id)
        ],
        commit,
    )


def reservation_commit(
    context: Any, reservations: list[str], project_id: str | None = None, user_id: str | None = None
) -> None:
    """Commit quota reservations."""
    _settle_uuids("reservation_commit", context, reservations, project_id, user_id, commit=True)


def reservation_rollback(
    context: Any, reservations: list[str], project_id: str | None = None, user_id: str | None = None
) -> None:
    """Roll back quota reservations."""
    _settle_uuids("reservation_rollback", context, reservations, project_id, user_id, commit=False)


@api(ADMIN)
def reservation_expire(context: Any) -> None:
    """Roll back any expired reservations."""
    conn = connection()
    rows = execute(_LOCK_EXPIRED, {"now": utcnow()}, conn=conn).mappings().all()
    _settle(conn, rows, commit=False)

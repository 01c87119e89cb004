"""nova DB API: compute nodes (notes §2.21 "Compute nodes", §3.10).

``stats``, ``metrics``, ``pci_stats``, ``extra_resources``, ``supported_instances`` and
``cpu_info`` are opaque text (callers JSON-encode them). ``compute_node_get``,
``compute_node_update`` and ``compute_node_search_by_hypervisor`` return nodes with
their ``service`` loaded; ``compute_node_get_all`` returns dicts, each with its live
``nova-compute`` service as a nested dict (or None), read with two Core queries.

``compute_node_statistics`` is one aggregate query over the nodes nova counted: live
nodes whose service has ``disabled = False`` (the service's own ``deleted`` is not
looked at, as in nova). ``compute_node_search_by_hypervisor`` matches the caller's text
literally (``%`` and ``_`` are not wildcards; nova did not escape them, a bug) and
case-sensitively on every backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from dblayer.core import InvalidValue, PreparedQuery, live, utcnow

from .. import exception
from ..facade import get_database
from ..models import ComputeNode, Service
from ._base import (
    ADMIN,
    api,
    create,
    execute,
    fetch_all,
    first,
    model_query,
    parse_datetimes,
    session,
    settle,
    soft_delete_where,
    update,
)
from ._checks import clean_values, key_value, require_keys

__all__ = [
    "compute_node_create",
    "compute_node_delete",
    "compute_node_get",
    "compute_node_get_all",
    "compute_node_get_by_service_id",
    "compute_node_search_by_hypervisor",
    "compute_node_statistics",
    "compute_node_update",
]

CN = ComputeNode
R = TypeVar("R")
# A live row's ``deleted``, rendered as SQL text (see _statistics_query).
LIVE = sa.literal_column("0")

# The datetimes nova normalised in incoming compute node values.
DATETIME_KEYS = ("created_at", "deleted_at", "updated_at")
# What no_date_fields leaves out of compute_node_get_all's dicts.
DATE_FIELDS = frozenset(("created_at", "updated_at", "deleted_at", "deleted"))
# compute_node_statistics' keys: the node count, then the sums, in nova's order.
STATISTICS = (
    "count",
    "vcpus",
    "memory_mb",
    "local_gb",
    "vcpus_used",
    "memory_mb_used",
    "local_gb_used",
    "free_ram_mb",
    "free_disk_gb",
    "current_workload",
    "running_vms",
    "disk_available_least",
)


def read_unit(work: Callable[..., R], *args: Any) -> R:
    """Run ``work(conn, *args)`` in a Core unit of work that only reads (retried like any
    unit; joins the caller's unit when one is open).

    For hot reads, instead of ``api``'s ORM unit: no Session is made, and SQLite begins a
    plain (deferred) transaction instead of taking the write lock. Never on the reader:
    nova read these from the master, so the unit is read-only only when no reader is set.
    """
    db = get_database()
    return db.run(work, *args, readonly=db.reader_engine is None)


def missing_required(model: Any, values: Mapping[str, Any]) -> list[str]:
    """The NOT NULL columns of ``model`` without a default that ``values`` does not give
    (a new row needs them; checked before SQL so every backend says the same)."""
    return [
        column.key
        for column in model.__table__.columns
        if not column.nullable
        and not column.primary_key
        and column.default is None
        and column.server_default is None
        and column.key not in values
    ]


def _check_service(service_id: Any) -> None:
    """ServiceNotFound unless a services row (live or deleted) has ``service_id``; checked
    before writing a node so a bad id is the same error on every backend."""
    if execute(sa.select(Service.id).where(Service.id == service_id)).first() is None:
        raise exception.ServiceNotFound(service_id=service_id)


def _node_id(compute_id: Any) -> Any:
    return key_value(CN, "id", compute_id)


def _node_with_service(context: Any, compute_id: Any) -> Any:
    """The node with ``compute_id`` (context's read_deleted) and its service;
    ComputeHostNotFound (nova named the id as the host)."""
    stmt = (
        model_query(context, CN)
        .where(CN.id == _node_id(compute_id))
        .options(joinedload(CN.service))
    )
    row = first(stmt)
    if row is None:
        raise exception.ComputeHostNotFound(host=compute_id)
    return row


@api(ADMIN)
def compute_node_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a compute node from the values dictionary."""
    require_keys("compute_node_create", values)
    row = clean_values(CN, parse_datetimes(dict(values), DATETIME_KEYS))
    missing = missing_required(CN, row)
    if missing:
        raise InvalidValue(f"compute_node_create: values must give {', '.join(missing)}")
    _check_service(row["service_id"])
    return create(CN, row)


@api(ADMIN)
def compute_node_delete(context: Any, compute_id: int) -> None:
    """Delete a compute node from the database."""
    node_id = _node_id(compute_id)
    visible = model_query(context, CN, CN.id).where(CN.id == node_id)
    if execute(visible.limit(1)).first() is None:
        raise exception.ComputeHostNotFound(host=compute_id)
    # A row the context sees but that is already deleted stays as it was.
    soft_delete_where(CN, CN.id == node_id)


@api()
def compute_node_get(context: Any, compute_id: int) -> Any:
    """Get a compute node by its id."""
    return _node_with_service(context, compute_id)


@api(ADMIN)
def compute_node_get_all(context: Any, no_date_fields: bool = False) -> list[dict[str, Any]]:
    """Get all computeNodes."""
    nodes, services = CN.__table__, Service.__table__
    dropped = DATE_FIELDS if no_date_fields else frozenset()
    node_rows = execute(
        sa.select(*(c for c in nodes.columns if c.name not in dropped))
        .where(live(nodes))
        .order_by(nodes.c.service_id, nodes.c.id)
    ).mappings()
    result = [dict(row) for row in node_rows]
    service_rows = execute(
        sa.select(*(c for c in services.columns if c.name not in dropped))
        .where(live(services), services.c.binary == "nova-compute")
        .order_by(services.c.id)
    ).mappings()
    by_id = {row["id"]: dict(row) for row in service_rows}
    for node in result:
        node["service"] = by_id.get(node["service_id"])
    return result


@api(ADMIN)
def compute_node_get_by_service_id(context: Any, service_id: int) -> Any:
    """Get a compute node by its associated service id."""
    service_id = key_value(CN, "service_id", service_id)
    stmt = model_query(context, CN, read_deleted="no").where(CN.service_id == service_id)
    row = first(stmt.order_by(CN.id))
    if row is None:
        raise exception.ServiceNotFound(service_id=service_id)
    return row


def _contains(column: Any, text: str) -> sa.ColumnElement[bool]:
    """``column`` holds ``text`` literally and case-sensitively, on every backend."""
    # LIKE with % and _ (and the escape character) escaped in the caller's text. It is
    # case-sensitive everywhere: core sets SQLite's case_sensitive_like and gives MariaDB
    # binary collations.
    return column.contains(text, autoescape=True)


@api(ADMIN)
def compute_node_search_by_hypervisor(context: Any, hypervisor_match: str) -> list[Any]:
    """Get compute nodes by hypervisor hostname."""
    if not isinstance(hypervisor_match, str):
        raise InvalidValue(f"hypervisor_match must be a string, not {hypervisor_match!r}")
    stmt = (
        model_query(context, CN)
        .where(_contains(CN.hypervisor_hostname, hypervisor_match))
        .options(joinedload(CN.service))
        .order_by(CN.id)
    )
    return fetch_all(stmt)


@functools.cache
def _statistics_query() -> PreparedQuery:
    nodes, services = CN.__table__, Service.__table__
    sums = [sa.func.sum(nodes.c[name]).label(name) for name in STATISTICS[1:]]
    # deleted = 0 as a literal, not a parameter: PostgreSQL's generic plan for a prepared
    # "deleted = $1" guesses it keeps 0.5% of the nodes and picks a nested loop.
    return PreparedQuery(
        sa.select(sa.func.count(nodes.c.id).label("count"), *sums)
        .select_from(nodes.join(services, services.c.id == nodes.c.service_id))
        .where(nodes.c.deleted == LIVE, services.c.disabled == sa.false())
    )


def compute_node_statistics(context: Any) -> dict[str, int]:
    """Compute statistics over all compute nodes."""
    # No access check (nova had none); one aggregate query in a read-only Core unit.
    row = read_unit(_statistics_query().first)
    # An aggregate always gives one row; a sum over no rows (or only NULLs) is NULL.
    return {name: int(row[name] or 0) for name in STATISTICS}  # type: ignore[index]


@api(ADMIN)
def compute_node_update(context: Any, compute_id: int, values: dict[str, Any]) -> Any:
    """Set the given properties on a compute node and update it."""
    require_keys("compute_node_update", values)
    changes = parse_datetimes(dict(values), DATETIME_KEYS)
    # Always stamped, even when nothing else changes: schedulers see a fresh node.
    changes["updated_at"] = utcnow()
    changes = clean_values(CN, changes)
    row = _node_with_service(context, compute_id)
    moved = "service_id" in changes and changes["service_id"] != row.service_id
    if moved:
        _check_service(changes["service_id"])
    update(row, changes)
    if moved:
        # The service loaded with the node is no longer its service.
        session().refresh(row, ["service"])
        settle(row)
    return row

"""nova DB API: services (notes §2.21 "Services", §3.9). Every call is admin-only.

Two of nova's configuration options are module settings here, read on every call and
process-wide like nova's configuration: ``enable_new_services`` (default True; when
False a new service is created disabled) and ``compute_topic`` (default
``'compute'``, the topic ``service_get_by_compute_host`` looks for). Set them with
``set_enable_new_services`` / ``set_compute_topic`` or by assigning the attributes.

A service's ``compute_node`` is a list (nova's backref was a collection) of its live
compute nodes; where a call loads it, each node's ``service`` is that service.
``service_get_by_compute_host`` is a hot path: one prepared join (service LEFT JOIN
its live compute nodes) in a read-only Core unit of work (no ORM Session), made
straight into detached objects.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from dblayer.core import DuplicateEntry, InvalidValue, PreparedQuery, RowObjects

from .. import exception
from ..context import check_admin
from ..models import ComputeNode, Service
from ._base import (
    ADMIN,
    api,
    connection,
    create,
    execute,
    fetch_all,
    first,
    model_query,
    read_deleted_clause,
    soft_delete_where,
    update,
)
from ._checks import clean_values, key_value, require_keys
from .compute_nodes import LIVE, read_unit

__all__ = [
    "service_create",
    "service_destroy",
    "service_get",
    "service_get_all",
    "service_get_all_by_host",
    "service_get_all_by_topic",
    "service_get_by_args",
    "service_get_by_compute_host",
    "service_get_by_host_and_topic",
    "service_update",
]

# -- nova's configuration options this module reads ------------------------------------------

enable_new_services = True
compute_topic = "compute"


def set_enable_new_services(flag: bool) -> None:
    """Whether new services start enabled (nova's ``enable_new_services``)."""
    global enable_new_services
    if not isinstance(flag, bool):
        raise InvalidValue(f"enable_new_services takes True or False, not {flag!r}")
    enable_new_services = flag


def set_compute_topic(topic: str) -> None:
    """The topic compute services listen on (nova's ``compute_topic``)."""
    global compute_topic
    if not isinstance(topic, str) or not topic:
        raise InvalidValue(f"compute_topic takes a non-empty string, not {topic!r}")
    compute_topic = topic


# -- a service with its live compute nodes, read in one prepared join -------------------------

_SERVICE = RowObjects(Service)
_NODE = RowObjects(ComputeNode, "cn_")


@functools.cache
def _with_nodes_query(by: str, read_deleted: str) -> PreparedQuery:
    """Services (``by`` 'id': :id; 'host_topic': :host and :topic; 'null_host_topic':
    no host and :topic) each with its live compute nodes, by service id then node id."""
    services, nodes = Service.__table__, ComputeNode.__table__
    stmt = sa.select(*_SERVICE.columns(), *_NODE.columns()).select_from(
        services.outerjoin(
            nodes, sa.and_(nodes.c.service_id == services.c.id, nodes.c.deleted == LIVE)
        )
    )
    if by == "id":
        stmt = stmt.where(services.c.id == sa.bindparam("id"))
    else:
        host = services.c.host
        stmt = stmt.where(
            host.is_(None) if by == "null_host_topic" else host == sa.bindparam("host"),
            services.c.topic == sa.bindparam("topic"),
        )
    visible = read_deleted_clause(Service, read_deleted)
    if visible is not None:
        stmt = stmt.where(visible)
    return PreparedQuery(stmt.order_by(services.c.id, nodes.c.id))


def _first_with_nodes(rows: list[dict[str, Any]]) -> Any:
    """The first service of ``rows`` as a detached object with its nodes, or None."""
    if not rows:
        return None
    service_id = rows[0]["id"]
    make = _NODE.make
    nodes = [
        make(row) for row in rows if row["id"] == service_id and row[_NODE.id_label] is not None
    ]
    service = _SERVICE.make(rows[0], {"compute_node": nodes})
    for node in nodes:
        # make() set the committed value None; a scalar's committed value is its __dict__
        # entry, so this sets it without history (set_committed_value costs far more).
        node.__dict__["service"] = service
    return service


# -- helpers ---------------------------------------------------------------------------------


def _service_id(service_id: Any) -> int:
    return key_value(Service, "id", service_id)


def _service_row(context: Any, service_id: Any) -> Any:
    """The service with ``service_id`` as the context sees it (ORM row); ServiceNotFound."""
    row = first(model_query(context, Service).where(Service.id == _service_id(service_id)))
    if row is None:
        raise exception.ServiceNotFound(service_id=service_id)
    return row


def _equals(column: Any, value: Any) -> sa.ColumnElement[bool]:
    # nova's filter_by(col=None) meant IS NULL.
    return column.is_(None) if value is None else column == value


def _duplicate_columns(error: DuplicateEntry) -> list[str]:
    return exception.duplicate_columns(error, table="services")


def _exists_error(error: DuplicateEntry, values: Mapping[str, Any]) -> Exception:
    """nova's error for a duplicate service: the binary one when ``binary`` is involved."""
    if "binary" in _duplicate_columns(error):
        return exception.ServiceBinaryExists(host=values.get("host"), binary=values.get("binary"))
    return exception.ServiceTopicExists(host=values.get("host"), topic=values.get("topic"))


# -- the API ---------------------------------------------------------------------------------


@api(ADMIN)
def service_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a service from the values dictionary."""
    require_keys("service_create", values)
    row = clean_values(Service, values)
    if not enable_new_services:
        row["disabled"] = True
    try:
        return create(Service, row)
    except DuplicateEntry as e:
        raise _exists_error(e, row) from None


@api(ADMIN)
def service_destroy(context: Any, service_id: int) -> None:
    """Destroy the service or raise if it does not exist."""
    service_id = _service_id(service_id)
    visible = model_query(context, Service, Service.id).where(Service.id == service_id)
    if execute(visible.limit(1)).first() is None:
        raise exception.ServiceNotFound(service_id=service_id)
    # A row the context sees but that is already deleted stays as it was.
    soft_delete_where(Service, Service.id == service_id)
    soft_delete_where(ComputeNode, ComputeNode.service_id == service_id)


@api(ADMIN)
def service_get(context: Any, service_id: int, with_compute_node: bool = False) -> Any:
    """Get a service or raise if it does not exist."""
    if not with_compute_node:
        return _service_row(context, service_id)
    query = _with_nodes_query("id", context.read_deleted)
    service = _first_with_nodes(query.all(connection(), id=_service_id(service_id)))
    if service is None:
        raise exception.ServiceNotFound(service_id=service_id)
    return service


@api(ADMIN)
def service_get_all(context: Any, disabled: bool | None = None) -> list[Any]:
    """Get all services."""
    stmt = model_query(context, Service)
    if disabled is not None:
        stmt = stmt.where(Service.disabled == key_value(Service, "disabled", disabled))
    return fetch_all(stmt.order_by(Service.id))


@api(ADMIN)
def service_get_all_by_host(context: Any, host: str) -> list[Any]:
    """Get all services for a given host."""
    host = key_value(Service, "host", host)
    stmt = model_query(context, Service, read_deleted="no").where(_equals(Service.host, host))
    return fetch_all(stmt.order_by(Service.id))


@api(ADMIN)
def service_get_all_by_topic(context: Any, topic: str) -> list[Any]:
    """Get all services for a given topic."""
    topic = key_value(Service, "topic", topic)
    stmt = model_query(context, Service, read_deleted="no").where(
        _equals(Service.topic, topic), Service.disabled == sa.false()
    )
    return fetch_all(stmt.order_by(Service.id))


@api(ADMIN)
def service_get_by_args(context: Any, host: str, binary: str) -> Any:
    """Get the state of a service by node name and binary."""
    host = key_value(Service, "host", host)
    binary = key_value(Service, "binary", binary)
    stmt = model_query(context, Service).where(
        _equals(Service.host, host), _equals(Service.binary, binary)
    )
    row = first(stmt.order_by(Service.id))
    if row is None:
        raise exception.HostBinaryNotFound(host=host, binary=binary)
    return row


def service_get_by_compute_host(context: Any, host: str) -> Any:
    """Get the service entry for a given compute host."""
    # The hot path: admin check, then one prepared join in a read-only Core unit; the
    # objects are made after the transaction ends.
    check_admin(context)
    if host is None:
        query, params = _with_nodes_query("null_host_topic", "no"), {"topic": compute_topic}
    elif isinstance(host, str):
        query, params = (
            _with_nodes_query("host_topic", "no"),
            {"host": host, "topic": compute_topic},
        )
    else:
        raise InvalidValue(f"services.host takes a string, not {host!r}")
    service = _first_with_nodes(read_unit(query.run_all, params))
    if service is None:
        raise exception.ComputeHostNotFound(host=host)
    return service


@api(ADMIN)
def service_get_by_host_and_topic(context: Any, host: str, topic: str) -> Any:
    """Get a service by host it's on and topic it listens to."""
    host = key_value(Service, "host", host)
    topic = key_value(Service, "topic", topic)
    stmt = model_query(context, Service, read_deleted="no").where(
        _equals(Service.host, host), _equals(Service.topic, topic), Service.disabled == sa.false()
    )
    return first(stmt.order_by(Service.id))


@api(ADMIN)
def service_update(context: Any, service_id: int, values: dict[str, Any]) -> Any:
    """Set the given properties on a service and update it."""
    require_keys("service_update", values)
    changes = clean_values(Service, values)
    row = _service_row(context, service_id)
    try:
        return update(row, changes)
    except DuplicateEntry as e:
        # nova let oslo.db's duplicate error escape here.
        raise exception.DBDuplicateEntry(columns=_duplicate_columns(e), inner_exception=e) from None

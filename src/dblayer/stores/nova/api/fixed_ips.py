"""nova DB API: fixed IPs (notes §2.19, §3.11).

Allocation is exclusive on every backend:
- ``fixed_ip_associate_pool`` takes the free address of lowest id the way core's claim
  does (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB, so concurrent callers take
  different rows instead of queueing behind each other; on SQLite the writer holds the
  database from BEGIN IMMEDIATE), in one ``UPDATE ... RETURNING`` where the backend has
  it. A row of no network gets the network asked for (nova meant to set ``network_id``
  there and crashed instead).
- ``fixed_ip_associate`` asks for one address: it locks that row and waits for a
  concurrent caller (no SKIP LOCKED), so the loser sees the winner's instance and gets
  FixedIpAlreadyInUse rather than a misleading "not found".

A user context may read or change a fixed IP of an instance only when the instance is
its project's (Forbidden otherwise), as nova: ``fixed_ip_get``, ``_get_by_address``,
``_update``, ``_disassociate``.

Addresses are strings on every backend (see ``types``): a malformed address is simply
not found; a non-string one is FixedIpInvalid. ``fixed_ip_bulk_create`` inserts the
whole list with the driver's executemany and stores none of it when one address exists
(FixedIpExists); ``fixed_ip_update`` reports a duplicate address as FixedIpExists where
nova let the raw duplicate-key error escape.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import selectinload

from dblayer.core import (
    DuplicateEntry,
    ForeignKeyViolation,
    InvalidQuery,
    PreparedQuery,
    PreparedWrite,
    RowObjects,
    insert_many,
    live,
    translate,
)
from dblayer.core.types import utcnow

from .. import exception
from ..context import authorize_project_context, check_admin, is_user_context
from ..facade import get_database
from ..models import FixedIp, FloatingIp, Instance, Network
from ..types import shorten_ip
from ._base import (
    ADMIN,
    USER,
    api,
    connection,
    create,
    execute,
    fetch_all,
    first,
    join_options,
    model_query,
    parse_datetime,
    require_uuid,
    session,
    settle,
    update,
)
from ._checks import clean_value, clean_values, key_value

__all__ = [
    "fixed_ip_associate",
    "fixed_ip_associate_pool",
    "fixed_ip_bulk_create",
    "fixed_ip_create",
    "fixed_ip_disassociate",
    "fixed_ip_disassociate_all_by_timeout",
    "fixed_ip_get",
    "fixed_ip_get_all",
    "fixed_ip_get_by_address",
    "fixed_ip_get_by_address_detailed",
    "fixed_ip_get_by_floating_address",
    "fixed_ip_get_by_host",
    "fixed_ip_get_by_instance",
    "fixed_ip_get_by_network_host",
    "fixed_ip_update",
    "fixed_ips_by_virtual_interface",
]

_FIXED_IP = RowObjects(FixedIp)
_TABLE = FixedIp.__table__
_CHUNK = 500  # addresses per IN list

# The relationships fixed_ip_get_by_address may load (columns_to_join).
_JOINS = {
    "network": FixedIp.network,
    "instance": FixedIp.instance,
    "floating_ips": FixedIp.floating_ips,
}


# -- helpers ---------------------------------------------------------------------------------


def _address(address: Any) -> str:
    """``address`` as the column stores it; FixedIpInvalid for a non-string."""
    if not isinstance(address, str):
        raise exception.FixedIpInvalid(address=address)
    return shorten_ip(address)


def _network_id(network_id: Any) -> int | None:
    """``network_id`` checked as a 32-bit integer or None (InvalidValue otherwise)."""
    # Inline rather than key_value: this runs on every allocation.
    if network_id is None or (
        type(network_id) is int and -(2**31) <= network_id < 2**31  # noqa: E721 - not bool
    ):
        return network_id
    # Stored on a row of no network, so it must fit the column.
    return clean_value(FixedIp, "network_id", network_id)


def _values(function: str, values: Any) -> dict[str, Any]:
    """A fixed IP's column values, checked (unknown keys InvalidQuery, bad values InvalidValue)."""
    if not isinstance(values, Mapping):
        raise InvalidQuery(f"{function}: values must be a dict, got {values!r}")
    checked = clean_values(FixedIp, values)
    if checked.get("address") is not None:
        # As the column stores it (IPv6 compressed), so the returned row says the same.
        checked["address"] = shorten_ip(checked["address"])
    return checked


def _join_options(columns_to_join: Any) -> list[Any]:
    return join_options("fixed IPs", columns_to_join, _JOINS)


def _authorize(context: Any, fixed_ip: Any) -> None:
    """Forbidden when a user context reaches for a fixed IP of another project's instance."""
    if not fixed_ip.instance_uuid or not is_user_context(context):
        return
    # The owner is read whatever its state (nova: an elevated read_deleted='yes' read).
    owner = execute(
        sa.select(Instance.project_id).where(Instance.uuid == fixed_ip.instance_uuid)
    ).first()
    if owner is None:
        raise exception.InstanceNotFound(instance_id=fixed_ip.instance_uuid)
    authorize_project_context(context, owner.project_id)


def _by_address(context: Any, address: Any, options: Iterable[Any] = ()) -> Any:
    """The fixed IP with ``address`` as ``context`` may see it (FixedIpNotFoundForAddress)."""
    address = _address(address)
    stmt = model_query(context, FixedIp).where(FixedIp.address == address).order_by(FixedIp.id)
    row = first(stmt.options(*options))
    if row is None:
        raise exception.FixedIpNotFoundForAddress(address=address)
    _authorize(context, row)
    return row


def _instance_not_found(instance_uuid: Any) -> Exception:
    """nova's error for a fixed_ips.instance_uuid that names no instance (a foreign key)."""
    return exception.InstanceNotFound(instance_id=instance_uuid)


# -- allocation ------------------------------------------------------------------------------


@api(ADMIN)
def fixed_ip_associate(
    context: Any,
    address: str,
    instance_uuid: str,
    network_id: int | None = None,
    reserved: bool = False,
) -> Any:
    """Associate fixed ip to instance; raises if fixed ip is not available."""
    require_uuid(instance_uuid)
    address = _address(address)
    network_id = _network_id(network_id)
    reserved = key_value(FixedIp, "reserved", reserved)
    network = FixedIp.network_id.is_(None)
    if network_id is not None:
        network = sa.or_(FixedIp.network_id == network_id, network)
    stmt = (
        model_query(context, FixedIp, read_deleted="no")
        .where(FixedIp.address == address, FixedIp.reserved == reserved, network)
        .order_by(FixedIp.id)
        # Waits for a concurrent caller, then sees whether it took the address.
        .with_for_update()
    )
    row = first(stmt)
    if row is None:
        raise exception.FixedIpNotFoundForNetwork(address=address, network_uuid=network_id)
    if row.instance_uuid:
        raise exception.FixedIpAlreadyInUse(address=address, instance_uuid=instance_uuid)
    changes: dict[str, Any] = {"instance_uuid": instance_uuid}
    if row.network_id is None:
        changes["network_id"] = network_id
    try:
        return update(row, changes)
    except ForeignKeyViolation:
        raise _instance_not_found(instance_uuid) from None


# fixed_ip_associate_pool is the hot path of every server creation. Its statements are
# core's prepared statements (compiled once per dialect, run on the driver cursor of the
# unit's connection), and only the SQL runs inside the transaction: the arguments are
# checked before it begins and the returned object is made after it ends, so that the
# lock is held no longer than needed. The technique is core.claim's: the candidate row is
# chosen and locked by one SELECT ... ORDER BY id LIMIT 1 (FOR UPDATE SKIP LOCKED on
# PostgreSQL and MariaDB; SQLite's writer holds the database from BEGIN IMMEDIATE), then
# updated. Where UPDATE ... RETURNING exists (PostgreSQL, SQLite) both happen in one
# statement, UPDATE ... WHERE id = (SELECT ...) RETURNING the row; MariaDB locks the row
# with a SELECT of all its columns, then updates it by id.


def _free_rows(in_network: bool) -> list[Any]:
    """The WHERE clause of a free address (of :network_id or of no network)."""
    c = _TABLE.c
    network = c.network_id.is_(None)
    if in_network:
        network = sa.or_(
            c.network_id == sa.bindparam("network_id", type_=c.network_id.type), network
        )
    return [
        live(_TABLE),
        network,
        c.reserved == sa.false(),
        c.instance_uuid.is_(None),
        c.host.is_(None),
    ]


def _assignments(in_network: bool, set_instance: bool, set_host: bool) -> dict[str, Any]:
    c = _TABLE.c
    values: dict[str, Any] = {"updated_at": sa.bindparam("now", type_=c.updated_at.type)}
    if in_network:
        # A row of no network joins the network it was handed out from.
        values["network_id"] = sa.func.coalesce(
            c.network_id, sa.bindparam("network_id", type_=c.network_id.type)
        )
    if set_instance:
        values["instance_uuid"] = sa.bindparam("instance_uuid", type_=c.instance_uuid.type)
    if set_host:
        values["host"] = sa.bindparam("host", type_=c.host.type)
    return values


# LIMIT 1 written into the text, not bound: a generic plan of a prepared statement
# (psycopg prepares one run five times) otherwise plans for a guessed row count.
_ONE = sa.literal_column("1", sa.Integer)


@functools.cache
def _claim_one(
    in_network: bool, set_instance: bool, set_host: bool, skip_locked: bool
) -> PreparedQuery:
    """UPDATE the first free row (locked by its sub-SELECT) ... RETURNING it."""
    pick = sa.select(_TABLE.c.id).where(*_free_rows(in_network)).order_by(_TABLE.c.id)
    pick = pick.limit(_ONE)
    if skip_locked:
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        sa.update(_TABLE)
        .where(_TABLE.c.id == pick.scalar_subquery())
        .values(_assignments(in_network, set_instance, set_host))
        .returning(*_TABLE.c)
    )
    return PreparedQuery(stmt)


@functools.cache
def _lock_one(in_network: bool, skip_locked: bool) -> PreparedQuery:
    """SELECT the first free row, locked (the first step where there is no RETURNING)."""
    pick = sa.select(*_TABLE.c).where(*_free_rows(in_network)).order_by(_TABLE.c.id).limit(_ONE)
    return PreparedQuery(pick.with_for_update(skip_locked=skip_locked))


@functools.cache
def _update_one(in_network: bool, set_instance: bool, set_host: bool) -> PreparedWrite:
    """UPDATE the row :id (locked by _lock_one)."""
    return PreparedWrite(
        sa.update(_TABLE)
        .where(_TABLE.c.id == sa.bindparam("id", type_=_TABLE.c.id.type))
        .values(_assignments(in_network, set_instance, set_host))
    )


def _allocate(
    conn: Connection,
    shape: tuple[bool, bool, bool],
    params: dict[str, Any],
    returning: bool,
    skip_locked: bool,
) -> dict[str, Any] | None:
    """The unit of work: hand the first free address to the instance and/or host
    (``params``); its row, or None when none is left."""
    params["now"] = utcnow()
    if returning:
        return _claim_one(*shape, skip_locked).first(conn, **params)
    row = _lock_one(shape[0], skip_locked).first(conn, **params)
    if row is None:
        return None
    _update_one(*shape).run(conn, id=row["id"], **params)
    row["updated_at"] = params["now"]
    if row["network_id"] is None:
        row["network_id"] = params.get("network_id")
    for key in ("instance_uuid", "host"):
        if key in params:
            row[key] = params[key]
    return row


def fixed_ip_associate_pool(
    context: Any, network_id: int | None, instance_uuid: str | None = None, host: str | None = None
) -> Any:
    """Find free ip in network and associate it to instance or host; raises if none is left."""
    check_admin(context)
    params: dict[str, Any] = {}
    if instance_uuid is not None:
        params["instance_uuid"] = require_uuid(instance_uuid)
    network_id = _network_id(network_id)
    if network_id is not None:
        params["network_id"] = network_id
    if host is not None:
        params["host"] = key_value(FixedIp, "host", host)
    shape = (network_id is not None, instance_uuid is not None, host is not None)
    db = get_database()
    facts = db.facts
    try:
        row = db.run(_allocate, shape, params, facts.update_returning, facts.supports_skip_locked)
    except ForeignKeyViolation:
        raise _instance_not_found(instance_uuid) from None
    if row is None:
        raise exception.NoMoreFixedIps()
    return _FIXED_IP.make(row)


# -- creating --------------------------------------------------------------------------------


def _instances_exist(uuids: set[str]) -> None:
    """InstanceNotFound for the first of ``uuids`` that names no instance row."""
    wanted = sorted(uuids)
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found.update(execute(sa.select(Instance.uuid).where(Instance.uuid.in_(chunk))).scalars())
    for instance_uuid in wanted:
        if instance_uuid not in found:
            raise exception.InstanceNotFound(instance_id=instance_uuid)


@api(USER)
def fixed_ip_bulk_create(context: Any, ips: list[dict[str, Any]]) -> None:
    """Create a lot of fixed ips from the values dictionary."""
    if isinstance(ips, str | bytes | Mapping) or not isinstance(ips, Iterable):
        raise InvalidQuery(f"fixed_ip_bulk_create: ips must be a list of dicts, got {ips!r}")
    now = utcnow()
    rows = []
    seen: set[Any] = set()
    for values in ips:
        row = _values("fixed_ip_bulk_create", values)
        row.setdefault("created_at", now)
        row.setdefault("deleted", 0)
        for flag in ("allocated", "leased", "reserved"):
            row.setdefault(flag, False)
        address = row.get("address")
        if address is not None and row["deleted"] == 0:
            # Two of the list itself: refused before anything is sent.
            if address in seen:
                raise exception.FixedIpExists(address=address)
            seen.add(address)
        rows.append(row)
    if not rows:
        return
    _raise_if_exists(sorted(seen))
    _instances_exist({r["instance_uuid"] for r in rows if r.get("instance_uuid") is not None})
    try:
        insert_many(connection(), _TABLE, rows)
    except DuplicateEntry:
        # A concurrent writer stored one of them since the check: the unit rolls back.
        raise exception.FixedIpExists(address=", ".join(sorted(seen))) from None


def _raise_if_exists(addresses: list[str]) -> None:
    """FixedIpExists for the first of ``addresses`` a live fixed IP already has."""
    for start in range(0, len(addresses), _CHUNK):
        chunk = addresses[start : start + _CHUNK]
        taken = execute(
            sa.select(_TABLE.c.address)
            .where(_TABLE.c.address.in_(chunk), live(_TABLE))
            .order_by(_TABLE.c.address)
            .limit(1)
        ).first()
        if taken is not None:
            raise exception.FixedIpExists(address=taken.address)


@api(USER)
def fixed_ip_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a fixed ip from the values dictionary."""
    row = _values("fixed_ip_create", values)
    try:
        return create(FixedIp, row)
    except DuplicateEntry:
        raise exception.FixedIpExists(address=row.get("address")) from None
    except ForeignKeyViolation:
        raise _instance_not_found(row.get("instance_uuid")) from None


# -- changing --------------------------------------------------------------------------------


@api(USER)
def fixed_ip_disassociate(context: Any, address: str) -> None:
    """Disassociate a fixed ip from an instance by address."""
    row = _by_address(context, address)
    update(row, {"instance_uuid": None, "virtual_interface_id": None})


@api(ADMIN)
def fixed_ip_disassociate_all_by_timeout(context: Any, host: str, time: dt.datetime) -> int:
    """Disassociate old fixed ips from host; return how many."""
    host = key_value(Network, "host", host)
    time = parse_datetime(time)
    if not isinstance(time, dt.datetime):
        raise InvalidQuery(f"time must be a datetime, got {time!r}")
    networks, instances = Network.__table__, Instance.__table__
    candidates = (
        sa.select(_TABLE.c.id)
        .select_from(
            _TABLE.join(networks, networks.c.id == _TABLE.c.network_id).join(
                instances, instances.c.uuid == _TABLE.c.instance_uuid
            )
        )
        .where(
            live(_TABLE),
            _TABLE.c.allocated == sa.false(),
            _TABLE.c.updated_at < time,
            sa.or_(
                sa.and_(instances.c.host == host, networks.c.multi_host == sa.true()),
                networks.c.host == host,
            ),
        )
    )
    ids = list(execute(candidates).scalars())
    count = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        result = execute(
            sa.update(_TABLE)
            .where(_TABLE.c.id.in_(chunk))
            .values(instance_uuid=None, leased=False, updated_at=utcnow())
        )
        count += result.rowcount
    return count


@api(USER)
def fixed_ip_update(context: Any, address: str, values: dict[str, Any]) -> None:
    """Update the fixed ip with ``address`` from the values dictionary."""
    changes = _values("fixed_ip_update", values)
    row = _by_address(context, address)
    try:
        update(row, changes)
    except DuplicateEntry:
        raise exception.FixedIpExists(address=changes.get("address")) from None
    except ForeignKeyViolation:
        raise _instance_not_found(changes.get("instance_uuid")) from None


# -- reading ---------------------------------------------------------------------------------


@api(USER)
def fixed_ip_get(context: Any, id: int, get_network: bool = False) -> Any:  # noqa: A002 - nova's name
    """Get fixed ip by id or raise if it does not exist (with its network if asked)."""
    fixed_ip_id = key_value(FixedIp, "id", id)
    stmt = model_query(context, FixedIp).where(FixedIp.id == fixed_ip_id)
    if get_network:
        stmt = stmt.options(selectinload(FixedIp.network))
    row = first(stmt)
    if row is None:
        raise exception.FixedIpNotFound(id=id)
    _authorize(context, row)
    return row


@api(ADMIN)
def fixed_ip_get_all(context: Any) -> list[Any]:
    """Get all defined fixed ips (deleted ones too)."""
    rows = fetch_all(model_query(context, FixedIp, read_deleted="yes").order_by(FixedIp.id))
    if not rows:
        raise exception.NoFixedIpsDefined()
    return rows


@api(USER)
def fixed_ip_get_by_address(
    context: Any, address: str, columns_to_join: list[str] | None = None
) -> Any:
    """Get a fixed ip by address or raise if it does not exist."""
    return _by_address(context, address, _join_options(columns_to_join))


@api(ADMIN)
def fixed_ip_get_by_address_detailed(context: Any, address: str) -> tuple[Any, Any, Any]:
    """Get detailed fixed ip info by address: (fixed ip, network or None, instance or None)."""
    address = _address(address)
    stmt = (
        model_query(context, FixedIp, FixedIp, Network, Instance, base_model=FixedIp)
        .outerjoin(Network, Network.id == FixedIp.network_id)
        .outerjoin(Instance, Instance.uuid == FixedIp.instance_uuid)
        .where(FixedIp.address == address)
        .order_by(FixedIp.id)
        .limit(1)
    )
    found = _first_row(stmt)
    if found is None:
        raise exception.FixedIpNotFoundForAddress(address=address)
    fixed_ip, network, instance = found
    return settle(fixed_ip), settle(network), settle(instance)


def _first_row(stmt: sa.Select[Any]) -> Any:
    """The first result row of ``stmt`` (a tuple of objects) on the unit's Session, or None."""
    try:
        return session().execute(stmt).first()
    except sa_exc.SQLAlchemyError as e:
        raise translate(e) from e


@api(USER)
def fixed_ip_get_by_floating_address(context: Any, floating_address: str) -> Any:
    """Get a fixed ip by a floating address (None when there is none)."""
    floating_address = _address(floating_address)
    stmt = (
        model_query(context, FixedIp)
        .join(FloatingIp, FloatingIp.fixed_ip_id == FixedIp.id)
        .where(FloatingIp.address == floating_address)
        .order_by(FixedIp.id)
    )
    return first(stmt)


@api(ADMIN)
def fixed_ip_get_by_host(context: Any, host: str) -> list[Any]:
    """Get fixed ips by compute host (the host of their live instances)."""
    host = key_value(Instance, "host", host)
    on_host = sa.select(Instance.uuid).where(Instance.host == host, live(Instance.__table__))
    stmt = model_query(context, FixedIp).where(FixedIp.instance_uuid.in_(on_host))
    return fetch_all(stmt.order_by(FixedIp.id))


@api(USER)
def fixed_ip_get_by_instance(context: Any, instance_uuid: str) -> list[Any]:
    """Get fixed ips by instance or raise if none exist."""
    require_uuid(instance_uuid)
    stmt = model_query(context, FixedIp, read_deleted="no").where(
        FixedIp.instance_uuid == instance_uuid
    )
    rows = fetch_all(stmt.order_by(FixedIp.id))
    if not rows:
        raise exception.FixedIpNotFoundForInstance(instance_uuid=instance_uuid)
    return rows


@api(USER)
def fixed_ip_get_by_network_host(context: Any, network_uuid: int, host: str) -> Any:
    """Get fixed ip for a host in a network (``network_uuid`` is the network's integer id)."""
    network_id = key_value(FixedIp, "network_id", network_uuid)
    host = key_value(FixedIp, "host", host)
    stmt = (
        model_query(context, FixedIp, read_deleted="no")
        .where(FixedIp.network_id == network_id, FixedIp.host == host)
        .order_by(FixedIp.id)
    )
    row = first(stmt)
    if row is None:
        raise exception.FixedIpNotFoundForNetworkHost(network_id=network_uuid, host=host)
    return row


@api(USER)
def fixed_ips_by_virtual_interface(context: Any, vif_id: int) -> list[Any]:
    """Get the live fixed ips of a virtual interface."""
    vif_id = key_value(FixedIp, "virtual_interface_id", vif_id)
    stmt = model_query(context, FixedIp, read_deleted="no").where(
        FixedIp.virtual_interface_id == vif_id
    )
    return fetch_all(stmt.order_by(FixedIp.id))

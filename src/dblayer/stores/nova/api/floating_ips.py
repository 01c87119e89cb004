"""nova DB API: floating IPs (notes §2.19 "Floating IPs", §3.12).

Allocation takes a free address with core's ``claim`` (a row lock, SKIP LOCKED on
PostgreSQL/MariaDB, SQLite's write lock from BEGIN IMMEDIATE), so concurrent callers
never get the same address. Bulk creation sends batches through ``insert_many`` inside
a savepoint: a duplicate address stores nothing and is reported as FloatingIpExists.
Bulk destruction releases the projects' ``floating_ips`` quota usage in the same
transaction, as nova's quota engine did with a negative reservation and its commit.

Lookups by address follow nova's ``_floating_ip_get_by_address``: an empty address looks
for NULL, and a user context may only see a project-assigned address of its own project.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from dblayer.core import DuplicateEntry, InvalidQuery, InvalidValue, claim, insert_many, live
from dblayer.core.types import utcnow

from .. import exception
from ..context import authorize_project_context, is_user_context
from ..facade import get_database
from ..models import FixedIp, FloatingIp, QuotaUsage, VirtualInterface
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
    model_query,
    read_deleted_clause,
    require_uuid,
    soft_delete_where,
    update,
)
from ._checks import clean_value, clean_values, integer_id, key_value, require_keys

__all__ = [
    "floating_ip_allocate_address",
    "floating_ip_bulk_create",
    "floating_ip_bulk_destroy",
    "floating_ip_create",
    "floating_ip_deallocate",
    "floating_ip_destroy",
    "floating_ip_disassociate",
    "floating_ip_fixed_ip_associate",
    "floating_ip_get",
    "floating_ip_get_all",
    "floating_ip_get_all_by_host",
    "floating_ip_get_all_by_project",
    "floating_ip_get_by_address",
    "floating_ip_get_by_fixed_address",
    "floating_ip_get_by_fixed_ip_id",
    "floating_ip_get_pools",
    "floating_ip_set_auto_assigned",
    "floating_ip_update",
    "instance_floating_address_get_all",
    "instance_get_floating_address",
]

FIP = FloatingIp
_TABLE = FloatingIp.__table__

# Addresses per IN list (nova destroyed in blocks of 256); far below every backend's limit.
_BLOCK = 256

# What nova loaded with a floating IP it returned: its fixed IP and that IP's instance.
_WITH_INSTANCE = selectinload(FIP.fixed_ip).selectinload(FixedIp.instance)

# The quota resource whose usage floating IPs count in (per project: user_id NULL).
_RESOURCE = "floating_ips"


# -- lookups ---------------------------------------------------------------------------------


def _address(address: Any) -> Any:
    """``address`` checked for a lookup (InvalidValue unless a string or None)."""
    return key_value(FIP, "address", address)


def _by_address(context: Any, address: Any, *, lock: bool = False) -> Any:
    """nova's ``_floating_ip_get_by_address``: the row (context's read_deleted) with
    ``address`` ('' looks for NULL); FloatingIpNotFoundForAddress; Forbidden when a user
    context asks for another project's address.

    ``lock`` holds the row until the call ends (and loads no relationships: PostgreSQL
    refuses FOR UPDATE next to an outer join); otherwise its fixed IP and that IP's
    instance come with it.
    """
    address = _address(address) or None
    stmt = model_query(context, FIP).where(FIP.address == address).order_by(FIP.id)
    stmt = stmt.with_for_update(of=FIP) if lock else stmt.options(_WITH_INSTANCE)
    row = first(stmt)
    if row is None:
        raise exception.FloatingIpNotFoundForAddress(address=address)
    if row.project_id and is_user_context(context):
        authorize_project_context(context, row.project_id)
    return row


def _fixed_ip_by_address(context: Any, address: Any) -> Any:
    """The fixed IP (context's read_deleted) with ``address``, its network loaded;
    FixedIpNotFoundForAddress (nova crashed with a TypeError here)."""
    address = key_value(FixedIp, "address", address)
    stmt = (
        model_query(context, FixedIp)
        .where(FixedIp.address == address)
        .order_by(FixedIp.id)
        .options(selectinload(FixedIp.network))
    )
    row = first(stmt)
    if row is None:
        raise exception.FixedIpNotFoundForAddress(address=address)
    return row


@api(USER)
def floating_ip_get(context: Any, id: int) -> Any:  # noqa: A002 - nova's name
    """The floating ip with ``id`` (a user's: of its project); FloatingIpNotFound."""
    number = integer_id(id)
    row = None
    if number is not None:
        stmt = model_query(context, FIP, project_only=True).where(FIP.id == number)
        row = first(stmt.options(_WITH_INSTANCE))
    if row is None:
        raise exception.FloatingIpNotFound(id=id)
    return row


@api(USER)
def floating_ip_get_by_address(context: Any, address: str) -> Any:
    """Get a floating ip by address or raise if it doesn't exist."""
    return _by_address(context, address)


@api(USER)
def floating_ip_get_pools(context: Any) -> list[dict[str, Any]]:
    """Returns a list of floating ip pools."""
    stmt = model_query(context, FIP, FIP.pool, base_model=FIP).distinct()
    pools = execute(stmt).scalars().all()
    # One order on every backend: no pool (NULL) first, then by name.
    return [{"name": pool} for pool in sorted(pools, key=lambda p: (p is not None, p or ""))]


def _live_rows(*where: Any, options: Iterable[Any] = ()) -> list[Any]:
    stmt = sa.select(FIP).where(live(FIP), *where).order_by(FIP.id)
    return fetch_all(stmt.options(*options))


@api(ADMIN)
def floating_ip_get_all(context: Any) -> list[Any]:
    """Get all floating ips; NoFloatingIpsDefined when there is none."""
    rows = _live_rows()
    if not rows:
        raise exception.NoFloatingIpsDefined()
    return rows


@api(ADMIN)
def floating_ip_get_all_by_host(context: Any, host: str) -> list[Any]:
    """Get all floating ips by host; FloatingIpNotFoundForHost when there is none."""
    rows = _live_rows(FIP.host == key_value(FIP, "host", host))
    if not rows:
        raise exception.FloatingIpNotFoundForHost(host=host)
    return rows


@api(USER)
def floating_ip_get_all_by_project(context: Any, project_id: str) -> list[Any]:
    """Get all floating ips by project (those not auto-assigned), with fixed IP and instance."""
    authorize_project_context(context, project_id)
    project_id = key_value(FIP, "project_id", project_id)
    return _live_rows(
        FIP.project_id == project_id, FIP.auto_assigned.is_(False), options=[_WITH_INSTANCE]
    )


@api(USER)
def floating_ip_get_by_fixed_address(context: Any, fixed_address: str) -> list[Any]:
    """Get a floating ips by fixed address."""
    fixed_address = key_value(FixedIp, "address", fixed_address)
    stmt = (
        model_query(context, FIP)
        .join(FixedIp, FixedIp.id == FIP.fixed_ip_id)
        .where(FixedIp.address == fixed_address)
        .order_by(FIP.id)
    )
    return fetch_all(stmt)


@api(USER)
def floating_ip_get_by_fixed_ip_id(context: Any, fixed_ip_id: int) -> list[Any]:
    """Get a floating ips by fixed address."""
    fixed_ip_id = key_value(FIP, "fixed_ip_id", fixed_ip_id)
    stmt = model_query(context, FIP).where(FIP.fixed_ip_id == fixed_ip_id).order_by(FIP.id)
    return fetch_all(stmt)


# -- allocation ------------------------------------------------------------------------------


@api(USER)
def floating_ip_allocate_address(
    context: Any, project_id: str, pool: str, auto_assigned: bool = False
) -> str:
    """Allocate free floating ip from specified pool and return the address (or raise)."""
    authorize_project_context(context, project_id)
    if project_id is None:
        # A row allocated to no project would still look free and be handed out again.
        raise InvalidValue("floating_ip_allocate_address needs a project_id")
    values = {
        "project_id": clean_value(FIP, "project_id", project_id),
        "auto_assigned": clean_value(FIP, "auto_assigned", auto_assigned),
    }
    pool = key_value(FIP, "pool", pool)
    taken = claim(
        get_database(),
        FIP,
        values,
        where=[live(FIP), FIP.fixed_ip_id.is_(None), FIP.project_id.is_(None), FIP.pool == pool],
        order_by=[FIP.id],
    )
    if not taken:
        raise exception.NoMoreFloatingIps()
    return taken[0]["address"]


@api(USER)
def floating_ip_deallocate(context: Any, address: str) -> Any:
    """Deallocate a floating ip by address; the row, or None if none was allocated."""
    address = _address(address)
    stmt = (
        model_query(context, FIP)
        .where(FIP.address == address, FIP.project_id.is_not(None))
        .order_by(FIP.id)
        .with_for_update()
    )
    row = first(stmt)
    if row is None:
        return None
    return update(row, {"project_id": None, "host": None, "auto_assigned": False})


@api(USER)
def floating_ip_fixed_ip_associate(
    context: Any, floating_address: str, fixed_address: str, host: str
) -> Any:
    """Associate a floating ip to a fixed_ip by address (the fixed ip, or None if it was)."""
    host = clean_value(FIP, "host", host)
    floating = _by_address(context, floating_address, lock=True)
    fixed = _fixed_ip_by_address(context, fixed_address)
    if floating.fixed_ip_id == fixed.id:
        return None
    update(floating, {"fixed_ip_id": fixed.id, "host": host})
    return fixed


@api(USER)
def floating_ip_disassociate(context: Any, address: str) -> Any:
    """Disassociate a floating ip from a fixed ip by address (the fixed ip, or None)."""
    address = _address(address)
    stmt = model_query(context, FIP).where(FIP.address == address).order_by(FIP.id)
    floating = first(stmt.with_for_update())
    if floating is None:
        raise exception.FloatingIpNotFoundForAddress(address=address)
    fixed = None
    if floating.fixed_ip_id is not None:
        fixed = first(
            model_query(context, FixedIp)
            .where(FixedIp.id == floating.fixed_ip_id)
            .options(selectinload(FixedIp.network))
        )
    update(floating, {"fixed_ip_id": None, "host": None})
    return fixed


@api(USER)
def floating_ip_set_auto_assigned(context: Any, address: str) -> None:
    """Set auto_assigned flag to floating ip."""
    address = _address(address)
    stmt = sa.update(FIP).where(FIP.address == address)
    clause = read_deleted_clause(FIP, context.read_deleted)
    if clause is not None:
        stmt = stmt.where(clause)
    execute(stmt.values(auto_assigned=True))


@api(USER)
def floating_ip_update(context: Any, address: str, values: dict[str, Any]) -> None:
    """Update a floating ip by address or raise if it doesn't exist."""
    require_keys("floating_ip_update", values)
    changes = clean_values(FIP, values)
    row = _by_address(context, address, lock=True)
    try:
        update(row, changes)
    except DuplicateEntry as e:
        if "address" in exception.duplicate_columns(e, table="floating_ips"):
            raise exception.FloatingIpExists(address=changes.get("address")) from None
        raise


# -- creation and destruction ----------------------------------------------------------------


@api(USER)
def floating_ip_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a floating ip from the values dictionary."""
    require_keys("floating_ip_create", values)
    row = clean_values(FIP, values)
    try:
        return create(FIP, row)
    except DuplicateEntry as e:
        if "address" in exception.duplicate_columns(e, table="floating_ips"):
            raise exception.FloatingIpExists(address=row.get("address")) from None
        raise


def _bulk_rows(ips: Any) -> list[dict[str, Any]]:
    """The rows ``floating_ip_bulk_create`` inserts: each dict checked, every column but
    ``id`` given (so the batch goes to the driver as one executemany)."""
    if isinstance(ips, Mapping | str | bytes) or not isinstance(ips, Iterable):
        raise InvalidQuery(f"floating_ip_bulk_create: ips must be a list of dicts, got {ips!r}")
    now = utcnow()
    defaults = {"created_at": now, "deleted": 0, "auto_assigned": False}
    columns = [c.key for c in _TABLE.c if c.key != "id"]
    rows = []
    for ip in ips:
        require_keys("floating_ip_bulk_create", ip, "address")
        if ip["address"] is None:
            raise InvalidValue("floating_ip_bulk_create: every floating IP needs an address")
        checked = clean_values(FIP, ip)
        row = {key: checked.get(key, defaults.get(key)) for key in columns}
        if "id" in checked:
            row["id"] = checked["id"]
        rows.append(row)
    return rows


def _first_duplicate(rows: list[dict[str, Any]]) -> str | None:
    """The first address of ``rows`` (in their order) that a live row already holds or an
    earlier row repeats; a locking read, so that it sees rows committed since this
    transaction's snapshot was taken (MariaDB)."""
    stored: set[str] = set()
    wanted = [shorten_ip(r["address"]) for r in rows]
    for start in range(0, len(wanted), _BLOCK):
        stmt = (
            sa.select(FIP.address)
            .where(live(FIP), FIP.address.in_(wanted[start : start + _BLOCK]))
            .with_for_update(read=True)
        )
        stored.update(execute(stmt).scalars())
    seen: set[str] = set()
    for row, key in zip(rows, wanted, strict=True):
        if key in stored or key in seen:
            return row["address"]
        seen.add(key)
    return None


@api(USER)
def floating_ip_bulk_create(context: Any, ips: list[dict[str, Any]]) -> list[Any]:
    """Create a lot of floating ips from the values dictionary (all or none)."""
    # FloatingIpExists (nothing stored) when an address is taken by a live row or
    # repeated in ``ips``; the new rows come back in the order given.
    rows = _bulk_rows(ips)
    if not rows:
        return []
    conn = connection()
    try:
        with conn.begin_nested():
            insert_many(conn, _TABLE, rows)
    except DuplicateEntry:
        # The savepoint is gone with every row of the batch; tell which address clashed.
        address = _first_duplicate(rows)
        if address is None:
            raise
        raise exception.FloatingIpExists(address=address) from None
    created: dict[Any, Any] = {}
    keys = [shorten_ip(r["address"]) for r in rows]
    for start in range(0, len(keys), _BLOCK):
        block = keys[start : start + _BLOCK]
        for row in fetch_all(sa.select(FIP).where(live(FIP), FIP.address.in_(block))):
            created[row.address] = row
    return [created[key] for key in keys]


@api(USER)
def floating_ip_bulk_destroy(context: Any, ips: list[dict[str, Any]]) -> None:
    """Destroy a lot of floating ips from the values dictionary."""
    # The live rows with the addresses are soft-deleted and those not auto-assigned
    # taken off their project's floating_ips usage; a user context may only release its
    # own project's quota (Forbidden, nothing changed).
    if isinstance(ips, Mapping | str | bytes) or not isinstance(ips, Iterable):
        raise InvalidQuery(f"floating_ip_bulk_destroy: ips must be a list of dicts, got {ips!r}")
    addresses = []
    for ip in ips:
        require_keys("floating_ip_bulk_destroy", ip, "address")
        addresses.append(_address(ip["address"]))
    # The rows are locked before they are counted: of two callers destroying the same
    # addresses, the second finds them deleted and releases no quota twice.
    ids: list[int] = []
    released: Counter[str] = Counter()
    for start in range(0, len(addresses), _BLOCK):
        block = addresses[start : start + _BLOCK]
        stmt = (
            sa.select(FIP.id, FIP.project_id, FIP.auto_assigned)
            .where(live(FIP), FIP.address.in_(block))
            .order_by(FIP.id)
            .with_for_update()
        )
        for row in execute(stmt):
            ids.append(row.id)
            # An address of no project was never counted in any quota.
            if not row.auto_assigned and row.project_id is not None:
                released[row.project_id] += 1
    for project_id in released:
        # nova's quota engine refused a user context another project's quota.
        authorize_project_context(context, project_id)
    for start in range(0, len(ids), _BLOCK):
        soft_delete_where(FIP, FIP.id.in_(ids[start : start + _BLOCK]))
    for project_id in sorted(released):
        _release_quota(project_id, released[project_id])


def _release_quota(project_id: str, count: int) -> None:
    """Take ``count`` floating IPs off the project's usage, as nova's quota engine did with
    ``reserve(floating_ips=-count)`` and ``commit``.

    A usage that needs a refresh (negative, or its ``until_refresh`` countdown ending)
    is set to the project's live floating IPs not auto-assigned, as the engine's sync
    did. With no usage row nothing is written: the engine creates and syncs the row
    the first time it is used, which gives the same count.
    """
    usages = QuotaUsage.__table__
    stmt = (
        sa.select(usages.c.id, usages.c.in_use, usages.c.until_refresh)
        .where(
            usages.c.project_id == project_id,
            usages.c.user_id.is_(None),
            usages.c.resource == _RESOURCE,
            live(usages),
        )
        .order_by(usages.c.id)
        .limit(1)
        .with_for_update()
    )
    usage = execute(stmt).first()
    if usage is None:
        return
    until_refresh = usage.until_refresh
    refresh = usage.in_use < 0
    if not refresh and until_refresh is not None:
        until_refresh -= 1
        refresh = until_refresh <= 0
    if refresh:
        # The engine's default until_refresh (0) stores None after a refresh.
        values: dict[str, Any] = {
            "in_use": _counted_floating_ips(project_id),
            "until_refresh": None,
        }
    else:
        values = {"in_use": usages.c.in_use - count, "until_refresh": until_refresh}
    execute(sa.update(usages).where(usages.c.id == usage.id).values(**values))


def _counted_floating_ips(project_id: str) -> int:
    """How many live floating IPs of the project count in its quota (not auto-assigned)."""
    stmt = sa.select(sa.func.count()).where(
        live(FIP), FIP.project_id == project_id, FIP.auto_assigned.is_(False)
    )
    return int(execute(stmt).scalar_one())


@api(USER)
def floating_ip_destroy(context: Any, address: str) -> None:
    """Destroy the floating_ip (a HARD delete); no error when it does not exist."""
    address = _address(address)
    stmt = sa.delete(FIP).where(FIP.address == address)
    clause = read_deleted_clause(FIP, context.read_deleted)
    if clause is not None:
        stmt = stmt.where(clause)
    execute(stmt)


# -- by instance -----------------------------------------------------------------------------


@api(USER)
def instance_floating_address_get_all(context: Any, instance_uuid: str) -> list[str]:
    """Get all floating ip addresses of an instance."""
    require_uuid(instance_uuid)
    stmt = model_query(context, FixedIp, FixedIp.id, base_model=FixedIp)
    fixed_ids = execute(stmt.where(FixedIp.instance_uuid == instance_uuid)).scalars().all()
    if not fixed_ids:
        raise exception.FixedIpNotFoundForInstance(instance_uuid=instance_uuid)
    stmt = (
        model_query(context, FIP, FIP.address, base_model=FIP)
        .where(FIP.fixed_ip_id.in_(fixed_ids))
        .order_by(FIP.id)
    )
    return list(execute(stmt).scalars())


@api(USER)
def instance_get_floating_address(context: Any, instance_id: int) -> str | None:
    """Get the first floating ip address of an instance (of its first fixed IP)."""
    from .instances import instance_get

    instance = instance_get(context, instance_id, columns_to_join=[])
    # nova's fixed_ip_get_by_instance: live fixed IPs in the order of their live virtual
    # interfaces (created_at, id; none first, as NULL sorts first everywhere here).
    vif = sa.and_(VirtualInterface.id == FixedIp.virtual_interface_id, live(VirtualInterface))
    stmt = (
        sa.select(FixedIp.address)
        .outerjoin(VirtualInterface, vif)
        .where(live(FixedIp), FixedIp.instance_uuid == instance.uuid)
        .order_by(
            VirtualInterface.created_at.is_not(None),
            VirtualInterface.created_at,
            VirtualInterface.id.is_not(None),
            VirtualInterface.id,
            FixedIp.id,
        )
        .limit(1)
    )
    first_fixed = execute(stmt).first()
    if first_fixed is None:
        raise exception.FixedIpNotFoundForInstance(instance_uuid=instance.uuid)
    stmt = (
        model_query(context, FIP, FIP.address, base_model=FIP)
        .join(FixedIp, FixedIp.id == FIP.fixed_ip_id)
        .where(FixedIp.address == first_fixed.address)
        .order_by(FIP.id)
        .limit(1)
    )
    return execute(stmt).scalar()

"""nova DB API: consoles and console pools (notes §3.24, §2.21).

No call checks the context's rights (nova did not). Console getters see deleted rows
too and load the console's ``pool``; pool getters see live pools and load their
``consoles`` (every console of the pool, as nova's relationship did). A console is
transient: ``console_delete`` removes the row (a HARD delete).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from dblayer.core import DuplicateEntry, ForeignKeyViolation

from .. import exception
from ..models import Console, ConsolePool
from ._base import api, create, execute, fetch_all, first, join_options, model_query
from ._checks import clean_values, key_value, require_instance, require_keys

__all__ = [
    "console_create",
    "console_delete",
    "console_get",
    "console_get_all_by_instance",
    "console_get_by_pool_instance",
    "console_pool_create",
    "console_pool_get_all_by_host_type",
    "console_pool_get_by_host_type",
]

# The relationships console_get_all_by_instance may load (columns_to_join).
_CONSOLE_JOINS = {"pool": Console.pool}

_IP_OBJECTS = (ipaddress.IPv4Address, ipaddress.IPv6Address)


# -- pools -----------------------------------------------------------------------------------


@api()
def console_pool_create(context: Any, values: dict[str, Any]) -> Any:
    """Create console pool."""
    require_keys("console_pool_create", values)
    pool = dict(values)
    if isinstance(pool.get("address"), _IP_OBJECTS):
        pool["address"] = str(pool["address"])
    pool = clean_values(ConsolePool, pool)
    try:
        return create(ConsolePool, pool)
    except DuplicateEntry:
        raise exception.ConsolePoolExists(
            host=pool.get("host"),
            console_type=pool.get("console_type"),
            compute_host=pool.get("compute_host"),
        ) from None


def _pools(context: Any, host: Any, console_type: Any) -> Any:
    """Live pools of proxy ``host`` and ``console_type``, with their consoles."""
    return (
        model_query(context, ConsolePool, read_deleted="no")
        .where(
            ConsolePool.host == key_value(ConsolePool, "host", host),
            ConsolePool.console_type == key_value(ConsolePool, "console_type", console_type),
        )
        .options(selectinload(ConsolePool.consoles))
        .order_by(ConsolePool.id)
    )


@api()
def console_pool_get_by_host_type(
    context: Any, compute_host: str, proxy_host: str, console_type: str
) -> Any:
    """Fetch a console pool for a given proxy host, compute host, and type."""
    compute = key_value(ConsolePool, "compute_host", compute_host)
    pool = first(
        _pools(context, proxy_host, console_type).where(ConsolePool.compute_host == compute)
    )
    if pool is None:
        raise exception.ConsolePoolNotFoundForHostType(
            host=proxy_host, console_type=console_type, compute_host=compute_host
        )
    return pool


@api()
def console_pool_get_all_by_host_type(context: Any, host: str, console_type: str) -> list[Any]:
    """Fetch all pools for given proxy host and type."""
    return fetch_all(_pools(context, host, console_type))


# -- consoles --------------------------------------------------------------------------------


@api()
def console_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a console."""
    require_keys("console_create", values)
    console = clean_values(Console, values)
    require_instance(console.get("instance_uuid"))
    pool_id = console.get("pool_id")
    if pool_id is not None:
        found = execute(sa.select(ConsolePool.id).where(ConsolePool.id == pool_id)).first()
        if found is None:
            raise ForeignKeyViolation(f"console_create: there is no console pool {pool_id}")
    return create(Console, console)


@api()
def console_delete(context: Any, console_id: int) -> None:
    """Delete a console."""
    console_id = key_value(Console, "id", console_id)
    execute(sa.delete(Console).where(Console.id == console_id))


def _consoles(context: Any) -> Any:
    """Consoles, deleted ones too."""
    return model_query(context, Console, read_deleted="yes")


@api()
def console_get(context: Any, console_id: int, instance_uuid: str | None = None) -> Any:
    """Get a specific console (possibly on a given instance)."""
    stmt = _consoles(context).where(Console.id == key_value(Console, "id", console_id))
    if instance_uuid is not None:
        stmt = stmt.where(
            Console.instance_uuid == key_value(Console, "instance_uuid", instance_uuid)
        )
    console = first(stmt.options(selectinload(Console.pool)))
    if console is None:
        if instance_uuid:
            raise exception.ConsoleNotFoundForInstance(
                console_id=console_id, instance_uuid=instance_uuid
            )
        raise exception.ConsoleNotFound(console_id=console_id)
    return console


@api()
def console_get_all_by_instance(
    context: Any, instance_uuid: str, columns_to_join: list[str] | None = None
) -> list[Any]:
    """Get consoles for a given instance."""
    instance_uuid = key_value(Console, "instance_uuid", instance_uuid)
    stmt = _consoles(context).where(Console.instance_uuid == instance_uuid)
    return fetch_all(stmt.options(*_join_options(columns_to_join)).order_by(Console.id))


def _join_options(columns_to_join: Any) -> list[Any]:
    return join_options("consoles", columns_to_join, _CONSOLE_JOINS)


@api()
def console_get_by_pool_instance(context: Any, pool_id: int, instance_uuid: str) -> Any:
    """Get console entry for a given instance and pool."""
    stmt = (
        _consoles(context)
        .where(
            Console.pool_id == key_value(Console, "pool_id", pool_id),
            Console.instance_uuid == key_value(Console, "instance_uuid", instance_uuid),
        )
        .options(selectinload(Console.pool))
        .order_by(Console.id)
    )
    console = first(stmt)
    if console is None:
        raise exception.ConsoleNotFoundInPoolForInstance(
            pool_id=pool_id, instance_uuid=instance_uuid
        )
    return console

"""nova DB API: DNS domains (notes §3.28).

A domain is keyed by its name (no id) and its ``deleted`` flag is a boolean, so
domains are never soft-deleted by the API: ``dnsdomain_unregister`` deletes the row.
Registering is a get-or-create under a row lock that is safe when callers race: the
row is inserted if absent (ON CONFLICT DO NOTHING, or its MariaDB equivalent), then
locked and updated, so no duplicate-key error escapes and the last writer wins.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dblayer.core import InvalidValue, insert_ignore, live
from dblayer.core.types import utcnow

from ..models import DNSDomain
from ._base import (
    ADMIN,
    USER,
    api,
    connection,
    execute,
    fetch_all,
    first,
    read_deleted_clause,
    update,
)
from ._checks import clean_value, key_value

__all__ = [
    "dnsdomain_get",
    "dnsdomain_get_all",
    "dnsdomain_list",
    "dnsdomain_register_for_project",
    "dnsdomain_register_for_zone",
    "dnsdomain_unregister",
]

_TABLE = DNSDomain.__table__

# Tries of insert-then-lock before giving up: a row can only vanish in between when an
# unregister of the same domain commits at that very moment.
_TRIES = 3


def _domain(fqdomain: Any) -> str:
    """``fqdomain`` checked as a domain name to store (InvalidValue otherwise)."""
    if fqdomain is None:
        raise InvalidValue("dns_domains.domain cannot be None")
    return clean_value(DNSDomain, "domain", fqdomain)


def _live_locked(fqdomain: Any) -> Any:
    """nova's ``_dnsdomain_get``: the live row of ``fqdomain``, locked, or None."""
    fqdomain = key_value(DNSDomain, "domain", fqdomain)
    return first(
        sa.select(DNSDomain).where(DNSDomain.domain == fqdomain, live(DNSDomain)).with_for_update()
    )


@api(USER)
def dnsdomain_get(context: Any, fqdomain: str) -> Any:
    """Get the db record for the specified domain (None when it is not registered)."""
    return _live_locked(fqdomain)


@api()
def dnsdomain_get_all(context: Any) -> list[Any]:
    """Get a list of all dnsdomains in our database."""
    return fetch_all(sa.select(DNSDomain).where(live(DNSDomain)).order_by(DNSDomain.domain))


@api(USER)
def dnsdomain_list(context: Any) -> list[str]:
    """Get a list of all zones in our database, public and private."""
    stmt = sa.select(DNSDomain.domain).where(live(DNSDomain)).order_by(DNSDomain.domain)
    return list(execute(stmt).scalars())


def _register(fqdomain: Any, values: dict[str, Any]) -> None:
    """Make ``fqdomain`` a live domain with ``values`` set: a new row holds only them (as
    nova's new record did); an existing live one keeps its other columns."""
    domain = _domain(fqdomain)
    fresh = {
        "domain": domain,
        "deleted": False,
        "created_at": utcnow(),
        "scope": None,
        "availability_zone": None,
        "project_id": None,
        **values,
    }
    for _ in range(_TRIES):
        if insert_ignore(connection(), _TABLE, fresh, key=["domain"]):
            return
        row = first(sa.select(DNSDomain).where(DNSDomain.domain == domain).with_for_update())
        if row is None:
            continue
        if row.deleted:
            # The name is the key: a deleted record comes back as a new registration.
            revived = {k: v for k, v in fresh.items() if k != "domain"}
            update(row, {**revived, "deleted_at": None})
        else:
            update(row, values)
        return
    raise InvalidValue(f"DNS domain {domain!r} kept being removed while it was registered")


@api(ADMIN)
def dnsdomain_register_for_zone(context: Any, fqdomain: str, zone: str) -> None:
    """Associated a DNS domain with an availability zone."""
    zone = clean_value(DNSDomain, "availability_zone", zone)
    _register(fqdomain, {"scope": "private", "availability_zone": zone})


@api(ADMIN)
def dnsdomain_register_for_project(context: Any, fqdomain: str, project: str) -> None:
    """Associated a DNS domain with a project id."""
    project = clean_value(DNSDomain, "project_id", project)
    _register(fqdomain, {"scope": "public", "project_id": project})


@api(ADMIN)
def dnsdomain_unregister(context: Any, fqdomain: str) -> None:
    """Purge associations for the specified DNS zone (a HARD delete of its row)."""
    fqdomain = key_value(DNSDomain, "domain", fqdomain)
    stmt = sa.delete(DNSDomain).where(DNSDomain.domain == fqdomain)
    clause = read_deleted_clause(DNSDomain, context.read_deleted)
    if clause is not None:
        stmt = stmt.where(clause)
    execute(stmt)

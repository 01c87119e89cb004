"""What a lease is made of: its columns on a table, the database's clock, the SET values of
a leased claim. Claims and leases (extend, requeue) both build on it; it builds on neither.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Table

from .errors import InvalidQuery, InvalidValue

if TYPE_CHECKING:
    from .database import Database

# The database's clock as seconds since the epoch (a double), per backend. Fixed text,
# each evaluated once per statement, so every row of one UPDATE gets the same time.
_CLOCKS = {
    # julianday('now') keeps milliseconds; unixepoch('subsec') needs SQLite 3.42.
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS DOUBLE PRECISION)",
    # UTC_TIMESTAMP, not NOW(): the session's time zone plays no part.
    "mysql": "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) / 1e6)",
}


@dataclass(frozen=True)
class Lease:
    """The columns a leased claim writes, named by the caller.

    ``worker``: who holds the row (a string column). ``expires``: when the lease ends,
    in seconds since the epoch on the database's clock (a float column). ``restore``:
    for each column a claim changes and a requeue must put back, the column keeping its
    value from before the claim (``{"status": "claimed_from"}``). Leave it empty to give
    ``requeue_expired`` the values to put back instead.
    """

    worker: str
    expires: str
    restore: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LeaseColumns:
    """A Lease's columns, checked against a table."""

    worker: sa.Column[Any]
    expires: sa.Column[Any]
    restore: list[tuple[sa.Column[Any], sa.Column[Any]]]  # (state column, its copy)

    @property
    def names(self) -> set[str]:
        """Every column the lease itself writes."""
        return {self.worker.key, self.expires.key, *(saved.key for _, saved in self.restore)}


def lease_columns_of(table: Table, lease: Any) -> LeaseColumns:
    if not isinstance(lease, Lease):
        raise InvalidQuery(f"lease must be a dblayer.core.Lease, got {lease!r}")
    restore = lease.restore
    if not isinstance(restore, Mapping):
        raise InvalidQuery(f"Lease.restore must be a dict of column: saved column, got {restore!r}")
    names = [lease.worker, lease.expires, *restore.keys(), *restore.values()]
    unknown = [n for n in names if not isinstance(n, str) or n not in table.c]
    if unknown:
        allowed = ", ".join(c.key for c in table.c)
        raise InvalidQuery(
            f"lease columns {unknown!r} are not columns of {table.name!r}; allowed: {allowed}"
        )
    own = [lease.worker, lease.expires, *restore.values()]
    keys = {c.key for c in table.primary_key.columns}
    if len(set(own)) != len(own) or set(own) & set(restore) or keys & {*own, *restore}:
        raise InvalidQuery(
            f"a lease needs distinct columns for its worker, its expiry and each saved "
            f"value, none of them the primary key or a restored column; got {lease!r}"
        )
    c = table.c
    return LeaseColumns(
        c[lease.worker], c[lease.expires], [(c[s], c[v]) for s, v in restore.items()]
    )


def clock(backend: str) -> ColumnElement[float]:
    """``backend``'s current time as seconds since the Unix epoch (a SQL expression)."""
    return sa.literal_column(_CLOCKS[backend], sa.Double())


def check_worker(worker: Any) -> str:
    """``worker`` if it is a worker id (a non-empty string), else InvalidValue."""
    if not isinstance(worker, str) or not worker:
        raise InvalidValue(f"a lease needs a worker id (a non-empty string), got {worker!r}")
    return worker


def check_lease_seconds(seconds: Any) -> float:
    """``seconds`` as a float if it is a lease length (a positive number), else InvalidValue."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise InvalidValue(f"lease_seconds must be a positive number, got {seconds!r}")
    return float(seconds)


def check_own(columns: LeaseColumns, values: Mapping[str, Any], what: str) -> None:
    taken = sorted(columns.names.intersection(values))
    if taken:
        raise InvalidQuery(f"{what} cannot set the lease's own columns {taken}")


def leased_values(
    db: Database,
    table: Table,
    values: dict[str, Any],
    lease: Lease | None,
    worker: str | None,
    lease_seconds: float | None,
) -> dict[str, Any]:
    """A claim's SET values with its lease: saved copies first, then ``values``, holder, expiry."""
    if lease is None:
        raise InvalidQuery("worker and lease_seconds go with a lease (lease=Lease(...))")
    columns = claim_lease_columns(table, lease, values)
    worker = check_worker(worker)
    seconds = check_lease_seconds(lease_seconds)
    return leased(columns, values, worker, clock(db.facts.backend) + seconds)


def claim_lease_columns(table: Table, lease: Lease, values: Mapping[str, Any]) -> LeaseColumns:
    """``lease``'s columns of ``table``, checked, for a claim setting ``values``."""
    columns = lease_columns_of(table, lease)
    check_own(columns, values, "a leased claim")
    return columns


def leased(
    columns: LeaseColumns, values: Mapping[str, Any], worker: Any, expires: Any
) -> dict[str, Any]:
    """A claim's SET values with its lease, in the order MariaDB needs (it assigns left to
    right): saved copies first, then ``values``, the holder and the lease's end."""
    result: dict[str, Any] = {saved.key: state for state, saved in columns.restore}
    result.update(values)
    result[columns.worker.key] = worker
    result[columns.expires.key] = expires
    return result

"""Leases on claimed rows: crash-safe claims.

A leased claim (``claim(..., lease=..., worker=..., lease_seconds=...)``) records who
holds each row it takes and when that lease ends. A live worker extends the leases of
the rows it still holds (``extend_leases``); a worker that dies stops extending, and
``requeue_expired`` puts its rows back in the state they were claimed from, so another
worker claims them. Each expired row is requeued once, however many sweepers run: they
lock the rows they take (``FOR UPDATE SKIP LOCKED``; SQLite's BEGIN IMMEDIATE), as
claims do.

Lease times are seconds since the Unix epoch on the database's clock, never a host's:
workers and sweepers on machines whose clocks disagree still agree on when a lease
ends. The expiry column must hold such a number (a FLOAT/double column).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Table

from .claims import (
    _CHUNK,
    _check_limit,
    _check_values,
    _claim,
    _clauses,
    _single_primary_key,
    _table,
)
from .database import Database
from .errors import InvalidQuery, InvalidValue

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
class _Columns:
    """A Lease's columns, checked against a table."""

    worker: sa.Column[Any]
    expires: sa.Column[Any]
    restore: list[tuple[sa.Column[Any], sa.Column[Any]]]  # (state column, its copy)

    @property
    def names(self) -> set[str]:
        """Every column the lease itself writes."""
        return {self.worker.key, self.expires.key, *(saved.key for _, saved in self.restore)}


def _columns(table: Table, lease: Any) -> _Columns:
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
    pk = _single_primary_key(table).key
    if len(set(own)) != len(own) or set(own) & set(restore) or pk in own + list(restore):
        raise InvalidQuery(
            f"a lease needs distinct columns for its worker, its expiry and each saved "
            f"value, none of them the primary key or a restored column; got {lease!r}"
        )
    c = table.c
    return _Columns(c[lease.worker], c[lease.expires], [(c[s], c[v]) for s, v in restore.items()])


def _clock(backend: str) -> ColumnElement[float]:
    """``backend``'s current time as seconds since the Unix epoch (a SQL expression)."""
    return sa.literal_column(_CLOCKS[backend], sa.Double())


def database_clock(db: Database) -> ColumnElement[float]:
    """The database's current time as seconds since the Unix epoch (a SQL expression)."""
    return _clock(db.facts.backend)


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


def _check_own(columns: _Columns, values: Mapping[str, Any], what: str) -> None:
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
    columns = _lease_columns(table, lease, values)
    worker = check_worker(worker)
    seconds = check_lease_seconds(lease_seconds)
    return _leased(columns, values, worker, database_clock(db) + seconds)


def _lease_columns(table: Table, lease: Lease, values: Mapping[str, Any]) -> _Columns:
    """``lease``'s columns of ``table``, checked, for a claim setting ``values``."""
    columns = _columns(table, lease)
    _check_own(columns, values, "a leased claim")
    return columns


def _leased(
    columns: _Columns, values: Mapping[str, Any], worker: Any, expires: Any
) -> dict[str, Any]:
    """A claim's SET values with its lease, in the order MariaDB needs (it assigns left to
    right): saved copies first, then ``values``, the holder and the lease's end."""
    result: dict[str, Any] = {saved.key: state for state, saved in columns.restore}
    result.update(values)
    result[columns.worker.key] = worker
    result[columns.expires.key] = expires
    return result


def extend_leases(
    db: Database,
    table: Any,
    lease: Lease,
    worker: str,
    lease_seconds: float,
    *,
    ids: Sequence[Any] | None = None,
) -> list[Any]:
    """Make the leases ``worker`` holds on rows of ``table`` (those with primary key in
    ``ids``; None: all of them) end ``lease_seconds`` from now; return the primary keys
    of the rows extended. A row whose lease has ended, or that another worker holds, is
    not extended: it is not the worker's any more.

    Inside an open unit of work the extended rows stay locked until it ends, so a worker
    can check that it still holds rows and finish them with no sweeper in between.
    """
    table = _table(table)
    columns = _columns(table, lease)
    worker = check_worker(worker)
    seconds = check_lease_seconds(lease_seconds)
    pk = _single_primary_key(table)
    if ids is not None and (
        isinstance(ids, (str, bytes, Mapping)) or not isinstance(ids, Sequence)
    ):
        raise InvalidQuery(f"ids must be a list of primary keys or None (all), got {ids!r}")
    now = database_clock(db)
    values = {columns.expires.key: now + seconds}
    held = [columns.worker == worker, columns.expires >= now]

    def extend(conn: sa.Connection) -> list[Any]:
        if ids is None:
            chunks: list[list[ColumnElement[bool]]] = [[]]
        else:
            unique = list(dict.fromkeys(ids))
            chunks = [[pk.in_(unique[i : i + _CHUNK])] for i in range(0, len(unique), _CHUNK)]
        extended: list[Any] = []
        for chunk in chunks:
            # Waits for a row a sweeper holds, then sees it requeued: never extends it.
            rows = _claim(conn, table, values, [*held, *chunk], [pk], None, db.facts, False)
            extended.extend(row[pk.key] for row in rows)
        return extended

    if ids is not None and not ids:
        return []
    return db.run(extend)


def requeue_expired(
    db: Database,
    table: Any,
    lease: Lease,
    *,
    values: Mapping[str, Any] | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Put the rows of ``table`` whose lease has ended (and that match ``where``) back as
    they were claimed: each restored column gets its saved value back, ``values`` are set,
    and the lease's columns are cleared. Returns those rows as they are afterwards, oldest
    lease first (at most ``limit``; None: all).

    Each expired row is requeued once even with several sweepers at once. A row keeps its
    lease columns until requeued: pass ``where`` (``status == 'CLAIMED'``) so that rows a
    worker finished without clearing them are left alone.
    """
    _check_limit(limit)
    table = _table(table)
    columns = _columns(table, lease)
    empty = values is None or (isinstance(values, Mapping) and not values)
    extra = {} if empty else _check_values(table, values)
    _check_own(columns, extra, "requeue_expired")
    restored = sorted({state.key for state, _ in columns.restore}.intersection(extra))
    if restored:
        raise InvalidQuery(f"requeue_expired restores {restored} itself; do not set them in values")
    where_list = _clauses(where, "where")
    if limit == 0:
        return []
    # Restores first: MariaDB assigns left to right (see claims._update).
    reset: dict[str, Any] = {state.key: saved for state, saved in columns.restore}
    reset.update({saved.key: None for _, saved in columns.restore})
    reset.update(extra)
    reset[columns.worker.key] = None
    reset[columns.expires.key] = None
    expired = [columns.expires < database_clock(db), *where_list]
    pk = _single_primary_key(table)
    order = [columns.expires, pk]
    return db.run(_claim, table, reset, expired, order, limit, db.facts)

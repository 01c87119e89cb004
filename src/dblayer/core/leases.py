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

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement

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
from .errors import InvalidQuery
from .lease_spec import (
    Lease,
    check_lease_seconds,
    check_own,
    check_worker,
    clock,
    lease_columns_of,
)

__all__ = ["Lease", "database_clock", "extend_leases", "requeue_expired"]


def database_clock(db: Database) -> ColumnElement[float]:
    """The database's current time as seconds since the Unix epoch (a SQL expression)."""
    return clock(db.facts.backend)


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
    columns = lease_columns_of(table, lease)
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
    columns = lease_columns_of(table, lease)
    empty = values is None or (isinstance(values, Mapping) and not values)
    extra = {} if empty else _check_values(table, values)
    check_own(columns, extra, "requeue_expired")
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

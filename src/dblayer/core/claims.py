"""Atomic claims: move up to N matching rows to a new state and return exactly those rows.

Two workers never get the same row. The candidates are chosen and locked in one
``SELECT ... ORDER BY ... LIMIT`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and
MariaDB/MySQL, so concurrent claimers pass each other's rows by; SQLite holds its
write lock from BEGIN IMMEDIATE, so no other writer can run in between), then
those ids are updated (``RETURNING`` the rows where the backend can) and the rows
come back in the order the select chose them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection, Table

from .database import Database, DialectFacts
from .errors import InvalidQuery, translate

# Ids per IN list: far below every backend's limit on bound parameters.
_CHUNK = 500


def _table(target: Any) -> Table:
    table = getattr(target, "__table__", target)
    if not isinstance(table, Table):
        raise InvalidQuery(f"can only claim rows of a Table or mapped class, got {target!r}")
    return table


def _single_primary_key(table: Table) -> sa.Column[Any]:
    columns = list(table.primary_key.columns)
    if len(columns) != 1:
        raise InvalidQuery(
            f"claims need a single-column primary key; {table.name!r} has {len(columns)}"
        )
    return columns[0]


def _clauses(value: Any, what: str) -> list[Any]:
    """``where`` / ``order_by`` as a list, given one clause or a sequence of them."""
    items = [value] if _is_clause(value) else value
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise InvalidQuery(
            f"{what} must be a list of SQLAlchemy clauses, got {type(value).__name__}"
        )
    wrong = [item for item in items if not _is_clause(item)]
    if wrong:
        raise InvalidQuery(f"{what} must hold SQLAlchemy clauses, got {wrong!r}")
    return list(items)


def _is_clause(value: Any) -> bool:
    return isinstance(value, sa.ClauseElement) or hasattr(value, "__clause_element__")


def _check_values(table: Table, values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping) or not values:
        raise InvalidQuery(f"a claim must set at least one column, given as a dict; got {values!r}")
    unknown = [name for name in values if not isinstance(name, str) or name not in table.c]
    if unknown:
        allowed = ", ".join(c.key for c in table.c)
        raise InvalidQuery(
            f"unknown columns {unknown!r} for table {table.name!r}; allowed: {allowed}"
        )
    pk = _single_primary_key(table)
    if pk.key in values:
        raise InvalidQuery(f"a claim cannot change the primary key {pk.key!r}")
    return dict(values)


def _chunks(ids: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _update(
    conn: Connection,
    table: Table,
    pk: sa.Column[Any],
    ids: list[Any],
    values: dict[str, Any],
    facts: DialectFacts,
) -> list[dict[str, Any]]:
    """Set ``values`` on the rows ``ids`` (already locked) and return them after the update."""
    # One expanding parameter, not a literal per id: the statement's cache key stays the
    # same from batch to batch, and no id is coerced into a clause of its own.
    in_ids = pk.in_(sa.bindparam("dblayer_claim_ids", expanding=True))
    stmt = sa.update(table).where(in_ids).values(values)
    params = {"dblayer_claim_ids": ids}
    if facts.update_returning:
        return _dicts(conn.execute(stmt.returning(*table.c), params))
    conn.execute(stmt, params)
    return _dicts(conn.execute(sa.select(table).where(in_ids), params))


def _dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    """The rows of ``result`` as dicts (zipping plain rows with the keys: a claim returns
    whole batches, and a RowMapping per row costs several times as much)."""
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def _claim(
    conn: Connection,
    table: Table,
    values: dict[str, Any],
    where: list[Any],
    order_by: list[Any],
    limit: int | None,
    facts: DialectFacts,
) -> list[dict[str, Any]]:
    pk = _single_primary_key(table)
    candidates = sa.select(pk).where(*where).order_by(*order_by).limit(limit)
    if facts.supports_skip_locked:
        candidates = candidates.with_for_update(skip_locked=True)
    try:
        ids = list(conn.execute(candidates).scalars().all())
        rows: dict[Any, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            rows.update(
                (row[pk.name], row) for row in _update(conn, table, pk, chunk, values, facts)
            )
    except sa.exc.SQLAlchemyError as e:
        raise translate(e) from e
    return [rows[i] for i in ids if i in rows]


def claim(
    db: Database,
    table: Any,
    values: Mapping[str, Any],
    *,
    where: Sequence[ColumnElement[bool]] = (),
    order_by: Sequence[Any] = (),
    limit: int | None = 1,
) -> list[dict[str, Any]]:
    """Set ``values`` on up to ``limit`` rows of ``table`` (a Table or mapped class) matching
    ``where`` (first by ``order_by``) and return those rows as dicts, as they are after the
    update, in that order. No row is returned to two callers. Inside an open unit of work it
    joins that transaction.

    The state change must make a claimed row stop matching ``where`` (for example
    ``status = 'PENDING'`` -> ``'CLAIMED'``), or the same row may be claimed again later.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidQuery(f"limit must be a non-negative integer or None (all), got {limit!r}")
    table = _table(table)
    checked = _check_values(table, values)
    where_list = _clauses(where, "where")
    order_list = _clauses(order_by, "order_by")
    if limit == 0:
        return []
    return db.run(_claim, table, checked, where_list, order_list, limit, db.facts)

"""Atomic claims: move up to N matching rows to a new state and return exactly those rows.

Two workers never get the same row. PostgreSQL does it in one statement
(``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``);
MariaDB/MySQL selects with ``FOR UPDATE SKIP LOCKED`` and updates the ids it
locked; SQLite holds its write lock from BEGIN IMMEDIATE, so no other writer can
run between the select and the update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection, Table

from .database import Database, DialectFacts
from .errors import InvalidQuery


def _single_primary_key(table: Table) -> sa.Column[Any]:
    columns = list(table.primary_key.columns)
    if len(columns) != 1:
        raise InvalidQuery(f"claims need a single-column primary key; {table.name!r} has {len(columns)}")
    return columns[0]


def _claim(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any],
    where: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any],
    limit: int,
    facts: DialectFacts,
) -> list[dict[str, Any]]:
    pk = _single_primary_key(table)
    candidates = sa.select(pk).where(*where).order_by(*order_by).limit(limit)
    if facts.supports_skip_locked:
        candidates = candidates.with_for_update(skip_locked=True)
    if facts.backend == "postgresql":
        stmt = (
            sa.update(table)
            .where(pk.in_(candidates.scalar_subquery()))
            .values(dict(values))
            .returning(*table.c)
        )
        return [dict(row) for row in conn.execute(stmt).mappings()]
    ids = list(conn.execute(candidates).scalars())
    if not ids:
        return []
    conn.execute(sa.update(table).where(pk.in_(ids)).values(dict(values)))
    rows = {row[pk.key]: dict(row) for row in conn.execute(sa.select(table).where(pk.in_(ids))).mappings()}
    return [rows[i] for i in ids if i in rows]


def claim(
    db: Database,
    table: Table,
    values: Mapping[str, Any],
    *,
    where: Sequence[ColumnElement[bool]] = (),
    order_by: Sequence[Any] = (),
    limit: int = 1,
) -> list[dict[str, Any]]:
    """Set ``values`` on up to ``limit`` rows matching ``where`` (first by ``order_by``) and
    return those rows as dicts, as they are after the update. No row is returned to two callers.

    The state change must make a claimed row stop matching ``where`` (for example
    ``status = 'PENDING'`` -> ``'CLAIMED'``), or the same row may be claimed again later.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidQuery(f"limit must be a non-negative integer, got {limit!r}")
    if not values:
        raise InvalidQuery("a claim must set at least one column")
    unknown = [name for name in values if name not in table.c]
    if unknown:
        raise InvalidQuery(f"unknown columns {unknown!r} for table {table.name!r}")
    if limit == 0:
        return []
    facts = db.facts
    return db.run(_claim, table, values, list(where), list(order_by), limit, facts)

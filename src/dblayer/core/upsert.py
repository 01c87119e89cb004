"""Portable bulk writes: insert many, insert-or-update (upsert) and insert-if-absent.

Each uses the dialect's own statement (``ON CONFLICT`` on SQLite and PostgreSQL,
``ON DUPLICATE KEY UPDATE`` on MariaDB/MySQL) and a list of parameter dicts, so
the driver's executemany does the work and no RETURNING slows it down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from .errors import DuplicateEntry, InvalidQuery, translate


def _rows(rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [rows] if isinstance(rows, Mapping) else list(rows)


def _key(table: Table, key: Sequence[str] | None) -> list[str]:
    names = list(key) if key else [c.key for c in table.primary_key.columns]
    unknown = [n for n in names if n not in table.c]
    if unknown or not names:
        raise InvalidQuery(f"conflict key {names!r} is not a set of columns of {table.name!r}")
    return names


def insert_many(conn: Connection | Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """INSERT every row through the driver's executemany; return how many rows were sent."""
    rows = _rows(rows)
    if rows:
        conn.execute(sa.insert(table), rows)
    return len(rows)


def _dialect_insert(conn: Connection | Session, table: Table) -> Any:
    name = conn.get_bind().dialect.name if isinstance(conn, Session) else conn.dialect.name
    if name == "postgresql":
        return name, postgresql.insert(table)
    if name in ("mysql", "mariadb"):
        return name, mysql.insert(table)
    if name == "sqlite":
        return name, sqlite.insert(table)
    raise InvalidQuery(f"upsert is not supported on {name!r}")


def upsert(
    conn: Connection | Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    key: Sequence[str] | None = None,
    update: Sequence[str] | None = None,
) -> int:
    """Insert rows, replacing the ``update`` columns (default: all but the key) of rows whose
    ``key`` (default: the primary key) already exists. Returns how many rows were sent.

    On MariaDB/MySQL any unique key of the table counts as a conflict, not only ``key``.
    """
    rows = _rows(rows)
    if not rows:
        return 0
    key_names = _key(table, key)
    columns = set().union(*(r.keys() for r in rows))
    if update is None:
        update = [c.key for c in table.c if c.key in columns and c.key not in key_names]
    name, stmt = _dialect_insert(conn, table)
    if name in ("mysql", "mariadb"):
        if update:
            stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update})
        else:
            stmt = stmt.prefix_with("IGNORE")
    elif update:
        stmt = stmt.on_conflict_do_update(
            index_elements=key_names, set_={c: stmt.excluded[c] for c in update}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=key_names)
    conn.execute(stmt, rows)
    return len(rows)


def insert_ignore(
    conn: Connection | Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    key: Sequence[str] | None = None,
) -> int:
    """Insert the rows whose ``key`` does not exist yet; return how many were inserted."""
    rows = _rows(rows)
    if not rows:
        return 0
    key_names = _key(table, key)
    name, stmt = _dialect_insert(conn, table)
    if name in ("mysql", "mariadb"):
        return _insert_ignore_savepoints(conn, table, rows)
    stmt = stmt.on_conflict_do_nothing(index_elements=key_names)
    return sum(conn.execute(stmt, row).rowcount for row in rows)


def _insert_ignore_savepoints(conn: Connection | Session, table: Table, rows: list[Any]) -> int:
    # MariaDB has no ON CONFLICT DO NOTHING with an exact count (FOUND_ROWS counts a matched
    # duplicate as 1) and INSERT IGNORE would also hide data errors: one savepoint per row.
    inserted = 0
    stmt = sa.insert(table)
    for row in rows:
        try:
            with conn.begin_nested():
                conn.execute(stmt, row)
            inserted += 1
        except sa.exc.IntegrityError as e:
            if not isinstance(translate(e), DuplicateEntry):
                raise
    return inserted

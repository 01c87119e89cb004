"""The id counters backends keep for integer keys (PostgreSQL's sequences, MariaDB's
AUTO_INCREMENT, SQLite's AUTOINCREMENT): read them, and move them past rows written with
their ids given (a copy, an adoption), so ids are never handed out twice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Table


def _family(conn: Connection) -> str:
    name = conn.dialect.name
    return "mysql" if name == "mariadb" else name


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _counter_column(table: Table) -> sa.Column[Any] | None:
    """The key whose values the backend hands out (a one-column integer primary key)."""
    column = table.autoincrement_column
    return column if column is not None and not column.foreign_keys else None


def _next_id(conn: Connection, table: Table, column: sa.Column[Any]) -> int | None:
    """The id the database would hand out next for ``table``, where it keeps a counter
    (PostgreSQL's sequence, MariaDB's AUTO_INCREMENT, SQLite's AUTOINCREMENT): ids of
    rows since deleted or archived are never handed out again, in the copy either."""
    family = _family(conn)
    if family == "postgresql":
        sequence = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": _quote(conn, table.name), "column": column.name},
        ).scalar()
        if sequence is None:
            return None
        # The name comes from the server, quoted where it needs to be.
        last, called = conn.exec_driver_sql(f"SELECT last_value, is_called FROM {sequence}").one()
        return int(last) + 1 if called else int(last)
    if family == "mysql":
        value = conn.execute(
            sa.text(
                "SELECT AUTO_INCREMENT FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
            ),
            {"table": table.name},
        ).scalar()
        return None if value is None else int(value)
    if family == "sqlite" and _sqlite_autoincrement(conn, table):
        seq = conn.execute(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = :table"), {"table": table.name}
        ).scalar()
        return None if seq is None else int(seq) + 1
    return None


def _sqlite_autoincrement(conn: Connection, table: Table) -> bool:
    sql = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :table"),
        {"table": table.name},
    ).scalar()
    return "AUTOINCREMENT" in (sql or "").upper()


def id_counters(conn: Connection, tables: Sequence[Table]) -> dict[str, int]:
    """The next id each of ``tables`` would be given, where the backend keeps a counter."""
    counters = {}
    for table in tables:
        column = _counter_column(table)
        value = None if column is None else _next_id(conn, table, column)
        if value is not None:
            counters[table.name] = value
    return counters


def advance_id_counters(
    out: Connection, tables: Sequence[Table], at_least: Mapping[str, int] | None = None
) -> list[str]:
    """Move each table's id counter past its highest id (after rows were written with
    their ids given) and to at least ``at_least[table]``. Returns the statements that must
    run after COMMIT (MariaDB's ALTER TABLE commits by itself)."""
    counters = at_least or {}
    later = []
    family = _family(out)
    for table in tables:
        column = _counter_column(table)
        if column is None:
            continue
        name = _quote(out, table.name)
        highest = out.execute(sa.select(sa.func.max(column))).scalar()
        wanted = max(int(highest or 0) + 1, counters.get(table.name, 1))
        if family == "postgresql":
            out.execute(
                sa.text("SELECT setval(pg_get_serial_sequence(:table, :column), :next, false)"),
                {"table": name, "column": column.name, "next": wanted},
            )
        elif family == "mysql" and wanted > int(highest or 0) + 1:
            # InnoDB moved its counter past the ids inserted; only a source counter further
            # on (rows deleted or archived there) needs saying.
            later.append(f"ALTER TABLE {name} AUTO_INCREMENT = {int(wanted)}")
        elif family == "sqlite" and _sqlite_autoincrement(out, table):
            out.execute(
                sa.text("DELETE FROM sqlite_sequence WHERE name = :table"), {"table": table.name}
            )
            out.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:table, :seq)"),
                {"table": table.name, "seq": wanted - 1},
            )
    return later

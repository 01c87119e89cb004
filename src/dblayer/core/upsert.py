"""Portable bulk writes: insert many, insert-or-update (upsert) and insert-if-absent.

Each uses the dialect's own statement (``ON CONFLICT`` on SQLite and PostgreSQL,
``ON DUPLICATE KEY UPDATE`` on MariaDB/MySQL) and a list of parameter dicts, so
the driver's executemany does the work (insert_ignore alone asks for RETURNING of
the key, to count what it inserted). Rows are checked against the table before any
SQL is sent, and driver errors come out as dblayer's own (DuplicateEntry, ...).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from .driver import bind_processor, cursor_execute
from .errors import DuplicateEntry, InvalidQuery, translate

Rows = Sequence[Mapping[str, Any]] | Mapping[str, Any]

_CHUNK = 500  # keys per IN list: far below every backend's limit on bound parameters


def _check_columns(table: Table, names: Iterable[Any], what: str) -> None:
    unknown = [n for n in names if not isinstance(n, str) or n not in table.c]
    if unknown:
        allowed = ", ".join(c.key for c in table.c)
        raise InvalidQuery(
            f"unknown {what} {unknown!r} for table {table.name!r}; allowed: {allowed}"
        )


def _runs(table: Table, rows: Rows) -> list[list[Mapping[str, Any]]]:
    """The rows, checked, cut into consecutive runs that name the same columns.

    One executemany compiles its statement from the first row's columns and silently
    drops any other column a later row names, so each run is sent on its own.
    """
    if isinstance(rows, Mapping):
        rows = [rows]
    elif isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise InvalidQuery(f"rows must be a dict or a list of dicts, got {type(rows).__name__}")
    runs: list[list[Mapping[str, Any]]] = []
    current: Any = None
    for row in rows:
        if not isinstance(row, Mapping):
            raise InvalidQuery(f"each row must be a dict, got {type(row).__name__}")
        keys = row.keys()
        if current is None or keys != current:
            _check_columns(table, keys, "columns")
            runs.append([])
            current = keys
        runs[-1].append(row)
    return runs


def _execute(conn: Connection | Session, stmt: Any, params: Any) -> Any:
    try:
        return conn.execute(stmt, params)
    except sa.exc.SQLAlchemyError as e:
        raise translate(e) from e


def _unique_column_sets(table: Table) -> list[set[str]]:
    sets = [{c.key for c in table.primary_key.columns}]
    sets += [
        {c.key for c in u.columns} for u in table.constraints if isinstance(u, sa.UniqueConstraint)
    ]
    sets += [{c.key for c in i.columns} for i in table.indexes if i.unique]
    return [s for s in sets if s]


def _key(table: Table, key: Sequence[str] | None) -> list[str]:
    """The conflict key's column names: ``key``, else the primary key; it must be unique."""
    if isinstance(key, str):
        key = [key]
    names = list(key) if key else [c.key for c in table.primary_key.columns]
    _check_columns(table, names, "key columns")
    if set(names) not in _unique_column_sets(table):
        raise InvalidQuery(
            f"conflict key {names!r} of {table.name!r} is not its primary key or a unique constraint"
        )
    return names


def _update_columns(table: Table, update: Sequence[str]) -> list[str]:
    names = [update] if isinstance(update, str) else list(update)
    _check_columns(table, names, "update columns")
    return names


def insert_many(conn: Connection | Session, table: Table, rows: Rows) -> int:
    """INSERT every row through the driver's executemany; return how many rows were sent.

    A row whose key exists raises DuplicateEntry; inside one transaction nothing
    of the batch is then kept (the caller's transaction rolls back).
    """
    runs = _runs(table, rows)
    stmt = sa.insert(table)
    for run in runs:
        plan = _direct_insert_plan(conn, table, tuple(run[0].keys())) if len(run) > 1 else None
        if plan is None:
            _execute(conn, stmt, run)
        else:
            plan.send(conn, run)
    return sum(len(run) for run in runs)


@dataclass(frozen=True)
class _InsertPlan:
    """An INSERT compiled once for one table, set of columns and dialect."""

    sql: str
    keys: tuple[str, ...]
    positional: bool
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, column type's bind)

    def send(self, conn: Connection, rows: list[Mapping[str, Any]]) -> None:
        """executemany on the driver, each value converted by its column type."""
        values = operator.itemgetter(*self.keys)
        if len(self.keys) == 1:
            args: list[Any] = [[values(r)] for r in rows]
        else:
            args = [list(values(r)) for r in rows]
        for i, convert in self.convert:
            for row in args:
                if row[i] is not None:
                    row[i] = convert(row[i])
        if not self.positional:
            args = [dict(zip(self.keys, row, strict=True)) for row in args]
        cursor_execute(conn, self.sql, args, many=True).close()


def _direct_insert_plan(
    conn: Connection | Session, table: Table, keys: tuple[str, ...]
) -> _InsertPlan | None:
    """A plan for sending rows straight to the driver, or None where SQLAlchemy must do it:
    inside an ORM Session, or when a column left out has a Python-side default to compute."""
    if isinstance(conn, Session):
        return None
    if any(c.default is not None and c.key not in keys for c in table.c):
        return None
    return _insert_plan(table, keys, conn.dialect)


@functools.lru_cache(maxsize=256)
def _insert_plan(table: Table, keys: tuple[str, ...], dialect: Any) -> _InsertPlan:
    compiled = sa.insert(table).compile(dialect=dialect, column_keys=list(keys))
    order = tuple(compiled.positiontup) if compiled.positional else keys
    return _InsertPlan(
        sql=compiled.string,
        keys=order,
        positional=compiled.positional,
        convert=tuple(
            (i, f) for i, k in enumerate(order) if (f := bind_processor(table.c[k].type, dialect))
        ),
    )


def _dialect_name(conn: Connection | Session) -> str:
    return conn.get_bind().dialect.name if isinstance(conn, Session) else conn.dialect.name


def _dialect_insert(conn: Connection | Session, table: Table) -> Any:
    name = _dialect_name(conn)
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
    rows: Rows,
    *,
    key: Sequence[str] | None = None,
    update: Sequence[str] | None = None,
) -> int:
    """Insert rows, replacing the ``update`` columns (default: all but the key) of rows whose
    ``key`` (default: the primary key) already exists. Returns how many rows were sent.

    ``update=[]`` keeps existing rows as they are. On MariaDB/MySQL any unique key of
    the table counts as a conflict, not only ``key``.
    """
    key_names = _key(table, key)
    runs = _runs(table, rows)
    explicit = None if update is None else _update_columns(table, update)
    if not runs:
        return 0
    name, base = _dialect_insert(conn, table)
    for run in runs:
        names = explicit
        if names is None:
            names = [c.key for c in table.c if c.key in run[0] and c.key not in key_names]
        _execute(conn, _upsert_statement(name, base, table, key_names, names), run)
    return sum(len(run) for run in runs)


def _upsert_statement(
    name: str, stmt: Any, table: Table, key_names: list[str], update: list[str]
) -> Any:
    if name in ("mysql", "mariadb"):
        # "Update nothing" as a no-op assignment, not INSERT IGNORE: IGNORE would also turn
        # data errors (NULL into NOT NULL, truncation) into warnings and store the row.
        first = key_names[0]
        assignments = {c: stmt.inserted[c] for c in update} or {first: table.c[first]}
        return stmt.on_duplicate_key_update(assignments)
    index = [table.c[k] for k in key_names]
    if update:
        return stmt.on_conflict_do_update(
            index_elements=index, set_={c: stmt.excluded[c] for c in update}
        )
    return stmt.on_conflict_do_nothing(index_elements=index)


def insert_ignore(
    conn: Connection | Session,
    table: Table,
    rows: Rows,
    *,
    key: Sequence[str] | None = None,
) -> int:
    """Insert the rows whose ``key`` does not exist yet; return how many were inserted.

    On MariaDB/MySQL any unique key of the table counts as a conflict, not only ``key``.
    """
    key_names = _key(table, key)
    runs = _runs(table, rows)
    if not runs:
        return 0
    name, stmt = _dialect_insert(conn, table)
    if name in ("mysql", "mariadb"):
        return sum(_insert_ignore_mysql(conn, table, run, key_names) for run in runs)
    # The rowcount of an INSERT is not reported (-1) by every driver: count RETURNING rows.
    index = [table.c[k] for k in key_names]
    stmt = stmt.on_conflict_do_nothing(index_elements=index).returning(*index)
    return sum(len(_execute(conn, stmt, run).all()) for run in runs)


# MariaDB has no ON CONFLICT DO NOTHING with an exact count (FOUND_ROWS counts a matched
# duplicate as 1) and INSERT IGNORE would also hide data errors (NULL into NOT NULL,
# truncation). So: drop the rows whose key exists, insert the rest in one executemany,
# and only if that still meets a duplicate (a racing writer, another unique key, a
# collation that folds case) fall back to one savepoint per row. Always exact.


def _insert_ignore_mysql(
    conn: Connection | Session, table: Table, rows: list[Mapping[str, Any]], key_names: list[str]
) -> int:
    fresh = _without_existing(conn, table, rows, key_names)
    if _insert_or_roll_back(conn, table, fresh):
        return len(fresh)
    return _insert_ignore_savepoints(conn, table, fresh)


def _without_existing(
    conn: Connection | Session, table: Table, rows: list[Mapping[str, Any]], key_names: list[str]
) -> list[Mapping[str, Any]]:
    """``rows`` less those whose key is stored or came earlier in ``rows``."""
    keyed = [(tuple(r.get(k) for k in key_names), r) for r in rows]
    wanted = list({key for key, _ in keyed if None not in key})
    columns = [table.c[k] for k in key_names]
    seen: set[tuple[Any, ...]] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = sa.select(*columns).where(sa.tuple_(*columns).in_(chunk))
        seen.update(tuple(r) for r in _execute(conn, query, {}))
    fresh = []
    for key, row in keyed:
        if None in key:
            fresh.append(row)
        elif key not in seen:
            seen.add(key)
            fresh.append(row)
    return fresh


def _insert_or_roll_back(conn: Connection | Session, table: Table, rows: list[Any]) -> bool:
    """Insert all of ``rows`` in a savepoint; False (and nothing inserted) on a duplicate."""
    if not rows:
        return True
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(table), rows)
    except sa.exc.SQLAlchemyError as e:
        error = translate(e)
        if not isinstance(error, DuplicateEntry):
            raise error from e
        return False
    return True


def _insert_ignore_savepoints(conn: Connection | Session, table: Table, rows: list[Any]) -> int:
    inserted = 0
    for row in rows:
        if _insert_or_roll_back(conn, table, [row]):
            inserted += 1
    return inserted

"""Portable bulk writes: insert many (optionally returning the new keys in order),
insert-or-update (upsert) and insert-if-absent.

Each uses the dialect's own statement (``ON CONFLICT`` on SQLite and PostgreSQL,
``ON DUPLICATE KEY UPDATE`` on MariaDB/MySQL) and a list of parameter dicts, so
the driver's executemany does the work (insert_ignore alone asks for RETURNING of
the key, to count what it inserted). Rows are checked against the table before any
SQL is sent, and driver errors come out as dblayer's own (DuplicateEntry, ...).
"""

from __future__ import annotations

import functools
import gc
import json
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from .driver import bind_processor, cursor_execute, positional_dialect
from .errors import DatabaseError, DuplicateEntry, InvalidQuery, translate
from .types import JSON, json_dumps

Rows = Sequence[Mapping[str, Any]] | Mapping[str, Any]

_CHUNK = 500  # keys per IN list: far below every backend's limit on bound parameters

# paused_gc's bookkeeping: how many pauses are open (any thread), and whether the first
# of them disabled the collector (so that the last one enables it again).
_GC_LOCK = threading.Lock()
_gc_pauses = 0
_gc_disabled_by_us = False


@contextmanager
def paused_gc(pause: bool = True) -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block, if ``pause``.

    For a bulk call that creates many objects that outlive it (ORM states and their
    identity keys, records returned to the caller): each batch of new survivors would
    otherwise make the collector scan every live object again, which took 40% of a
    100,000-object add. Process-wide by nature, so kept safe: pauses from several threads
    nest (the collector comes back when the last one ends, exceptions included), and one
    that the application disabled itself is left disabled. Not gc.freeze(): its unfreeze
    would thaw what the application froze (a pre-fork server's shared pages).
    """
    global _gc_pauses, _gc_disabled_by_us
    if not pause:
        yield
        return
    with _GC_LOCK:
        if _gc_pauses == 0 and gc.isenabled():
            gc.disable()
            _gc_disabled_by_us = True
        _gc_pauses += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_disabled_by_us:
                _gc_disabled_by_us = False
                gc.enable()


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


def _same_keys(table: Table, rows: Any) -> tuple[str, ...] | None:
    """The first row's column names, checked, when ``rows`` is a list of several dicts: the
    bulk fast path, which finds out itself whether every row names the same columns."""
    if type(rows) is not list or len(rows) < 2 or type(rows[0]) is not dict:
        return None
    keys = tuple(rows[0])
    _check_columns(table, keys, "columns")
    return keys


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


def _send_values(
    conn: Connection, plan: _InsertPlan, keys: tuple[str, ...], rows: list[Any]
) -> int:
    """executemany of value rows given in ``keys`` order, through ``plan``."""
    if rows:
        plan.send(conn, plan.reorder(keys, rows))
    return len(rows)


def _value_dicts(
    table: Table, names: tuple[str, ...], rows: list[Any], json_text: bool
) -> list[dict[str, Any]]:
    """Checked value rows in ``names`` order as dicts (JSON text decoded if ``json_text``),
    for the paths that take dicts."""
    dicts = [dict(zip(names, row, strict=True)) for row in rows]
    if json_text:
        for name in names:
            if _is_json(table.c[name].type):
                for row in dicts:
                    if row[name] is not None:
                        row[name] = json.loads(row[name])
    return dicts


def insert_many(
    conn: Connection | Session,
    table: Table,
    rows: Rows | Sequence[Sequence[Any]],
    *,
    columns: Sequence[str] | None = None,
    json_text: bool = False,
) -> int:
    """INSERT every row through the driver's executemany; return how many rows were sent.

    A row whose key exists raises DuplicateEntry; inside one transaction nothing
    of the batch is then kept (the caller's transaction rolls back).

    With ``columns``, each row is a sequence of values in that order instead of a dict
    (no dict per row to build); with ``json_text`` as well, the values of JSON columns
    are JSON text already (as ``json_dumps`` writes it) and are sent as they are.
    """
    if columns is not None:
        names, values = _value_rows(table, rows, columns)
        plan = _direct_insert_plan(conn, table, names, json_text)
        if plan is None:
            return insert_many(conn, table, _value_dicts(table, names, values, json_text))
        return _send_values(conn, plan, names, values)
    if json_text:
        raise InvalidQuery("json_text=True needs the rows' columns")
    keys = _same_keys(table, rows)
    if keys is not None:
        plan = _direct_insert_plan(conn, table, keys)
        if plan is not None and plan.send_dicts(conn, rows):  # type: ignore[arg-type]
            return len(rows)  # type: ignore[arg-type]
    runs = _runs(table, rows)
    stmt = sa.insert(table)
    for run in runs:
        plan = _direct_insert_plan(conn, table, tuple(run[0].keys())) if len(run) > 1 else None
        if plan is None:
            _execute(conn, stmt, run)
        else:
            plan.send(conn, plan.values(run), owned=True)
    return sum(len(run) for run in runs)


def insert_many_ids(
    conn: Connection | Session,
    table: Table,
    rows: Rows | Sequence[Sequence[Any]],
    *,
    columns: Sequence[str] | None = None,
) -> list[Any]:
    """INSERT the rows like insert_many and return their primary key values in input order.

    ``rows`` are dicts, or, with ``columns``, sequences of values in that column order
    (no dict per row). A key the row gives is kept; a missing or None key comes from
    the backend: PostgreSQL's sequence is asked for them up front; SQLite numbers the
    rows of one executemany consecutively (its write lock excludes other writers), read
    back with last_insert_rowid(); MariaDB/MySQL (PyMySQL, innodb_autoinc_lock_mode 0
    or 1) number each multi-row INSERT consecutively from its LAST_INSERT_ID();
    elsewhere INSERT ... RETURNING in parameter order does it. The table needs a
    one-column primary key.
    """
    key = _single_key(table)
    ids: list[Any] = []
    for keys, values in _value_runs(table, rows, columns):
        ids.extend(_insert_run_ids(conn, table, key, keys, values))
    return ids


def _single_key(table: Table) -> sa.Column[Any]:
    pk = list(table.primary_key.columns)
    if len(pk) != 1:
        names = [c.key for c in pk]
        raise InvalidQuery(
            f"insert_many_ids needs a one-column primary key; {table.name!r} has {names!r}"
        )
    return pk[0]


def _value_runs(
    table: Table, rows: Any, columns: Sequence[str] | None
) -> list[tuple[tuple[str, ...], list[Sequence[Any]]]]:
    """The rows as runs of (column names, value sequences), checked."""
    if columns is None:
        return [
            (keys, [values(r) for r in run] if len(keys) > 1 else [(r[keys[0]],) for r in run])
            for run in _runs(table, rows)
            for keys in [tuple(run[0].keys())]
            for values in [operator.itemgetter(*keys)]
        ]
    keys, values = _value_rows(table, rows, columns)
    return [(keys, values)] if values else []


def _value_rows(
    table: Table, rows: Any, columns: Sequence[str]
) -> tuple[tuple[str, ...], list[Sequence[Any]]]:
    """(column names, value sequences) of rows given as values in ``columns`` order, checked:
    each column known and named once, each row a sequence of one value per column."""
    if isinstance(columns, str) or not isinstance(columns, Iterable):
        raise InvalidQuery(f"columns must be a list of column names, got {columns!r}")
    keys = tuple(columns)
    _check_columns(table, keys, "columns")
    if not keys or len(set(keys)) != len(keys):
        raise InvalidQuery(f"columns must name each column once, got {list(keys)!r}")
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise InvalidQuery(f"rows must be a list of value sequences, got {type(rows).__name__}")
    values = rows if isinstance(rows, list) else list(rows)
    width = len(keys)
    for row in values:
        kind = type(row)
        if (
            kind is not tuple
            and kind is not list
            and (isinstance(row, (str, bytes, Mapping)) or not isinstance(row, Sequence))
        ):
            raise InvalidQuery(f"each row must be a sequence of values, got {kind.__name__}")
        if len(row) != width:
            raise InvalidQuery(
                f"each row must have {width} values (for {list(keys)!r}), got {row!r}"
            )
    return keys, values


def _insert_run_ids(
    conn: Connection | Session,
    table: Table,
    key: sa.Column[Any],
    keys: tuple[str, ...],
    values: list[Sequence[Any]],
) -> list[Any]:
    """Insert one run of rows naming the same columns; return their keys in order."""
    n = len(values)
    if key.key in keys:
        at = keys.index(key.key)
        given = [row[at] for row in values]
        if None not in given:
            plan = _direct_insert_plan(conn, table, keys)
            if plan is None:
                _execute(
                    conn, sa.insert(table), [dict(zip(keys, row, strict=True)) for row in values]
                )
            else:
                plan.send(conn, plan.reorder(keys, values))
            return given
        # A None key means "number this row": send those rows without the key column.
        rest = keys[:at] + keys[at + 1 :]
        kept = [row for row, v in zip(values, given, strict=True) if v is not None]
        if kept:
            _insert_run_ids(conn, table, key, keys, kept)
        unkeyed = [
            (*row[:at], *row[at + 1 :]) for row, v in zip(values, given, strict=True) if v is None
        ]
        new = iter(_insert_run_ids(conn, table, key, rest, unkeyed))
        return [next(new) if v is None else v for v in given]
    if not keys:
        stmt = sa.insert(table)  # every column from its default: one row at a time
        return [_execute(conn, stmt, {}).inserted_primary_key[0] for _ in values]
    plan = _direct_insert_plan(conn, table, keys)
    if plan is None or n == 1:
        return _insert_returning(conn, table, key, keys, values)
    assert isinstance(conn, Connection)
    name = conn.dialect.name
    if name == "postgresql":
        ids = _reserve_sequence_ids(conn, table, key, n)
        if ids is None:
            return _insert_returning(conn, table, key, keys, values)
        full = _insert_plan(table, (key.key, *keys), conn.dialect)
        rows = [(i, *row) for i, row in zip(ids, values, strict=True)]
        full.send(conn, full.reorder((key.key, *keys), rows))
        return ids
    if name == "sqlite" and _is_rowid(key, conn.dialect):
        plan.send(conn, plan.reorder(keys, values))
        cursor = cursor_execute(conn, "SELECT last_insert_rowid()", ())
        last = cursor.fetchone()[0]
        cursor.close()
        return list(range(last - n + 1, last + 1))
    if name in ("mysql", "mariadb") and conn.dialect.driver == "pymysql":
        step = _mysql_autoinc_step(conn)
        if step:
            return _mysql_insert_ids(conn, plan, plan.reorder(keys, values), step)
    return _insert_returning(conn, table, key, keys, values)


_MAX_STATEMENT = 1_000_000  # bytes per multi-row INSERT (PyMySQL's executemany uses 1,024,000)


def _mysql_autoinc_step(conn: Connection) -> int | None:
    """The step between consecutive AUTO_INCREMENT values of one multi-row INSERT, or None
    where they need not be consecutive (innodb_autoinc_lock_mode 2 interleaves them)."""
    cursor = cursor_execute(
        conn, "SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment", ()
    )
    mode, step = cursor.fetchone()
    cursor.close()
    return int(step) if int(mode) < 2 else None


def _mysql_insert_ids(conn: Connection, plan: _InsertPlan, args: list[Any], step: int) -> list[int]:
    """Multi-row INSERTs (as PyMySQL's executemany writes them), each one's keys from its
    LAST_INSERT_ID() (the first key; the rest follow by ``step``: lock mode 0 or 1)."""
    args = plan.converted(args)
    head, _, template = plan.sql.rpartition(" VALUES ")
    cursor = conn.connection.dbapi_connection.cursor()
    encoding = cursor.connection.encoding
    prefix = f"{head % ()} VALUES ".encode(encoding)  # "%%" in a name back to "%"
    ids: list[int] = []

    def flush(sql: bytearray, count: int) -> None:
        try:
            cursor.execute(bytes(sql))
        except Exception as e:
            cursor.close()
            dbapi_error = conn.dialect.loaded_dbapi.Error
            if isinstance(e, dbapi_error):
                wrapped = sa.exc.DBAPIError.instance(plan.sql, None, e, dbapi_error)
                raise translate(wrapped) from e
            raise
        if cursor.rowcount != count or not cursor.lastrowid:
            cursor.close()
            raise DatabaseError(f"INSERT numbered {cursor.rowcount} of {count} rows")
        first = cursor.lastrowid
        ids.extend(range(first, first + count * step, step))

    sql = bytearray(prefix)
    count = 0
    for row in args:
        value = cursor.mogrify(template, row).encode(encoding)
        if count and len(sql) + len(value) + 1 > _MAX_STATEMENT:
            flush(sql, count)
            sql = bytearray(prefix)
            count = 0
        if count:
            sql += b","
        sql += value
        count += 1
    if count:
        flush(sql, count)
    cursor.close()
    return ids


def _insert_returning(
    conn: Connection | Session,
    table: Table,
    key: sa.Column[Any],
    keys: tuple[str, ...],
    values: list[Sequence[Any]],
) -> list[Any]:
    dicts = [dict(zip(keys, row, strict=True)) for row in values]
    dialect = conn.get_bind().dialect if isinstance(conn, Session) else conn.dialect
    if dialect.insert_executemany_returning_sort_by_parameter_order:
        stmt = sa.insert(table).returning(key, sort_by_parameter_order=True)
        return list(_execute(conn, stmt, dicts).scalars())
    # No ordered RETURNING (MySQL): one statement per row, its key from the driver.
    stmt = sa.insert(table)
    return [_execute(conn, stmt, row).inserted_primary_key[0] for row in dicts]


def _reserve_sequence_ids(
    conn: Connection, table: Table, key: sa.Column[Any], count: int
) -> list[Any] | None:
    """``count`` new values from the key column's sequence (PostgreSQL), or None if it has none."""
    quoted = conn.dialect.identifier_preparer.format_table(table)
    sequence = conn.execute(sa.select(sa.func.pg_get_serial_sequence(quoted, key.name))).scalar()
    if sequence is None:
        return None
    stmt = sa.select(sa.func.nextval(sequence)).select_from(sa.func.generate_series(1, count))
    return sorted(conn.execute(stmt).scalars())


def _is_rowid(key: sa.Column[Any], dialect: Any) -> bool:
    """Whether a SQLite key column is the rowid (an INTEGER PRIMARY KEY)."""
    with_rowid = key.table.kwargs.get("sqlite_with_rowid", True)
    return with_rowid is not False and key.type.compile(dialect=dialect) == "INTEGER"


class _OtherKeys(Exception):
    """A row does not name exactly the plan's columns."""


def _other_keys() -> Any:
    raise _OtherKeys


def _tuples_maker(
    keys: tuple[str, ...], convert: tuple[tuple[int, Callable[[Any], Any]], ...]
) -> Callable[[list[Any]], list[tuple[Any, ...]]]:
    """A function turning dict rows into value tuples in ``keys`` order, each value
    converted by its column type, in one pass. It raises _OtherKeys (or KeyError) for a
    row that does not name exactly ``keys``.

    Generated (one list comprehension, like PreparedQuery's row maker); the text holds only
    the identifiers k0.., c0.., v0.., never a column name: those are passed in as values.
    Tuples, not lists: the cyclic garbage collector stops tracking a tuple of plain values,
    so a bulk load does not make it scan every row again and again.
    """
    converters = dict(convert)
    items = [
        f"(None if (v{i} := r[k{i}]) is None else c{i}(v{i}))" if i in converters else f"r[k{i}]"
        for i in range(len(keys))
    ]
    source = (
        "def make(rows):\n"
        f"    return [({', '.join(items)},) if len(r) == n else other() for r in rows]\n"
    )
    namespace: dict[str, Any] = {f"k{i}": k for i, k in enumerate(keys)}
    namespace.update({f"c{i}": f for i, f in converters.items()})
    namespace.update(n=len(keys), other=_other_keys)
    exec(source, namespace)  # noqa: S102 - generated from indices only, see above
    return namespace["make"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _InsertPlan:
    """An INSERT compiled once for one table, set of columns and dialect, positional."""

    sql: str
    keys: tuple[str, ...]
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, column type's bind)

    @functools.cached_property
    def _tuples(self) -> Callable[[list[Any]], list[tuple[Any, ...]]]:
        return _tuples_maker(self.keys, self.convert)

    def send_dicts(self, conn: Connection, rows: list[Any]) -> bool:
        """executemany of dict rows that all name exactly the plan's columns, converted;
        False (and nothing sent) when some row does not."""
        try:
            args = self._tuples(rows)
        except (_OtherKeys, KeyError, TypeError):
            return False  # the general path sorts the rows out (or raises the error)
        cursor_execute(conn, self.sql, args, many=True).close()
        return True

    def values(self, rows: list[Mapping[str, Any]]) -> list[Any]:
        """The rows' values in the plan's column order."""
        values = operator.itemgetter(*self.keys)
        if len(self.keys) == 1:
            return [[values(r)] for r in rows]
        if self.convert:  # lists, converted in place by send (no second copy)
            return [list(values(r)) for r in rows]
        return [values(r) for r in rows]

    def reorder(self, keys: tuple[str, ...], rows: list[Sequence[Any]]) -> list[Any]:
        """Rows of values in ``keys`` order, put in the plan's column order."""
        if keys == self.keys:
            return rows
        pick = operator.itemgetter(*[keys.index(k) for k in self.keys])
        if len(self.keys) == 1:
            return [(pick(r),) for r in rows]
        return [pick(r) for r in rows]

    def converted(self, args: list[Any], *, owned: bool = False) -> list[Any]:
        """Rows of values with each value converted by its column type (in place if
        ``owned``: the rows are lists made for this call)."""
        if self.convert:
            if not owned:
                args = [list(row) for row in args]
            for i, convert in self.convert:
                for row in args:
                    if row[i] is not None:
                        row[i] = convert(row[i])
        return args

    def send(self, conn: Connection, args: list[Any], *, owned: bool = False) -> None:
        """executemany of value sequences on the driver, each value converted by its type."""
        cursor_execute(conn, self.sql, self.converted(args, owned=owned), many=True).close()


def _direct_insert_plan(
    conn: Connection | Session, table: Table, keys: tuple[str, ...], json_text: bool = False
) -> _InsertPlan | None:
    """A plan for sending rows straight to the driver, or None where SQLAlchemy must do it:
    inside an ORM Session, or when a column left out has a Python-side default to compute."""
    if isinstance(conn, Session):
        return None
    if any(c.default is not None and c.key not in keys for c in table.c):
        return None
    return _insert_plan(table, keys, conn.dialect, json_text)


@functools.lru_cache(maxsize=256)
def _insert_plan(
    table: Table, keys: tuple[str, ...], dialect: Any, json_text: bool = False
) -> _InsertPlan:
    compiled = sa.insert(table).compile(
        dialect=positional_dialect(dialect), column_keys=list(keys), for_executemany=True
    )
    order = tuple(compiled.positiontup)
    return _InsertPlan(
        sql=compiled.string,
        keys=order,
        convert=_converters(table, order, dialect, json_text),
    )


def _is_json(column_type: Any) -> bool:
    return isinstance(column_type, (JSON, sa.JSON))


def _converters(
    table: Table, order: tuple[str, ...], dialect: Any, json_text: bool = False
) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """(position, conversion) of each column in ``order`` whose type converts values;
    with ``json_text`` JSON columns convert nothing (their values are JSON text already)."""
    found = []
    for i, name in enumerate(order):
        column_type = table.c[name].type
        if json_text and _is_json(column_type):
            continue
        if dialect.name == "postgresql" and _is_json(column_type):
            # JSON text: the statement casts it (%s::JSONB), so psycopg needs no Jsonb
            # wrapper per value and sends what a hand-written INSERT sends.
            convert: Callable[[Any], Any] | None = _json_text
        else:
            convert = bind_processor(column_type, dialect)
        if convert is not None:
            found.append((i, convert))
    return tuple(found)


def _json_text(value: Any) -> str:
    return "null" if value is sa.JSON.NULL else json_dumps(value)


@functools.lru_cache(maxsize=16)
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
    rows: Rows | Sequence[Sequence[Any]],
    *,
    key: Sequence[str] | None = None,
    update: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    json_text: bool = False,
) -> int:
    """Insert rows, replacing the ``update`` columns (default: all but the key) of rows whose
    ``key`` (default: the primary key) already exists. Returns how many rows were sent.

    ``update=[]`` keeps existing rows as they are. On MariaDB/MySQL any unique key of
    the table counts as a conflict, not only ``key``. ``columns`` and ``json_text`` are
    as for ``insert_many``.
    """
    key_names = _key(table, key)
    explicit = None if update is None else _update_columns(table, update)
    if columns is not None:
        names, values = _value_rows(table, rows, columns)
        plan = None
        if isinstance(conn, Connection):
            if explicit is None:
                explicit = [c.key for c in table.c if c.key in names and c.key not in key_names]
            plan = _upsert_plan(
                table, names, tuple(key_names), tuple(explicit), conn.dialect, json_text
            )
        if plan is None:
            dicts = _value_dicts(table, names, values, json_text)
            return upsert(conn, table, dicts, key=key_names, update=explicit)
        return _send_values(conn, plan, names, values)
    if json_text:
        raise InvalidQuery("json_text=True needs the rows' columns")
    keys = _same_keys(table, rows)
    if keys is not None and isinstance(conn, Connection):
        names = explicit
        if names is None:
            names = [c.key for c in table.c if c.key in keys and c.key not in key_names]
        plan = _upsert_plan(table, keys, tuple(key_names), tuple(names), conn.dialect)
        if plan is not None and plan.send_dicts(conn, rows):  # type: ignore[arg-type]
            return len(rows)  # type: ignore[arg-type]
    runs = _runs(table, rows)
    if not runs:
        return 0
    name, base = _dialect_insert(conn, table)
    for run in runs:
        names = explicit
        if names is None:
            names = [c.key for c in table.c if c.key in run[0] and c.key not in key_names]
        _execute(conn, _upsert_statement(name, base, table, key_names, names), run)
    return sum(len(run) for run in runs)


@functools.lru_cache(maxsize=256)
def _upsert_plan(
    table: Table,
    keys: tuple[str, ...],
    key_names: tuple[str, ...],
    update: tuple[str, ...],
    dialect: Any,
    json_text: bool = False,
) -> _InsertPlan | None:
    """The upsert of rows naming ``keys``, compiled for the driver's executemany; None where
    SQLAlchemy must fill in values itself (a Python-side default or onupdate)."""
    name = dialect.name
    if any(c.default is not None and c.key not in keys for c in table.c):
        return None
    if name in ("mysql", "mariadb"):
        base = mysql.insert(table)
    elif name in ("postgresql", "sqlite"):
        base = (postgresql if name == "postgresql" else sqlite).insert(table)
    else:
        return None
    stmt = _upsert_statement(name, base, table, list(key_names), list(update))
    compiled = stmt.compile(
        dialect=positional_dialect(dialect), column_keys=list(keys), for_executemany=True
    )
    order = tuple(compiled.positiontup)
    if sorted(order) != sorted(keys):  # an onupdate value, or a column twice: not ours to fill
        return None
    return _InsertPlan(
        sql=compiled.string,
        keys=order,
        convert=_converters(table, order, dialect, json_text),
    )


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

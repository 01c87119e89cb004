"""Copying tables between databases (any backend to any backend), verified.

``copy_tables(source, target, metadata)`` copies every row of the tables, parents
before children, ids as they are, in batches: reads stream through the driver's
server-side cursor (PostgreSQL, MariaDB) or SQLite's own stepping, so a million rows
never sit in memory; writes go through PostgreSQL's COPY, elsewhere the driver's
executemany. The whole copy is one transaction on the target: a refusal, an error or a
failed verification leaves the target as it was.

Values move in the driver's own form wherever both backends take it (text, numbers,
JSON as its text, which PostgreSQL is asked for too, SQLite's datetime text into a
server's DATETIME, 0/1 into a boolean); only where they differ (PostgreSQL's native
UUIDs, datetimes into SQLite) does a value go through the column type's conversions.

Into PostgreSQL, a table whose every column is an integer, a double, text, jsonb or a
boolean is verified on the server (``copy_staged``: the COPY stream parsed a second time
into a scratch table, both hashed by the server; no row comes back into Python). Other
tables, and every table into SQLite or MariaDB, are verified as follows.

Verification counts the rows and compares a checksum computed the same way on both
sides: each row's values are normalised (JSON as the text PostgreSQL's jsonb prints for
it, datetimes as ``YYYY-MM-DD HH:MM:SS.ffffff``, booleans as 0/1, UUIDs as 32 hex digits,
single-precision floats to 6 significant digits), the row (marshal's version-0 bytes of
its values) is hashed (BLAKE2b, 128 bits) and the hashes are added modulo 2**128. The sum
does not depend on row order (so no ORDER BY, no collation differences) and the checksum
of a table is the sum of its parts, which lets a copy into a non-empty table verify too.

Where the time goes: the source's rows are hashed as they stream through the copy (no
second read of the source), in a thread behind the copy, a batch's rows hashed without a
Python loop. JSON is the one costly value: PostgreSQL prints jsonb's text itself (so
reading it back parses nothing in Python), and into PostgreSQL the source's JSON text is
put in that form by the target server, a batch per round trip on a connection of its own
(two batches in flight: one waits on the server while the other is hashed); elsewhere
Python writes the same text (parsed once, keys sorted as jsonb sorts them, numbers as
numeric prints them).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import itertools
import json
import marshal
import operator
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, MetaData, Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from . import copy_staged
from .copy_staged import Staging
from .database import Database
from .driver import bind_processor, result_processor
from .errors import CopyMismatch, DBLayerError, InvalidValue, TargetNotEmpty, translate
from .id_counters import advance_id_counters, id_counters

Progress = Callable[[str, int], None]
_MOD = 1 << 128
_DEFAULT_BATCH = 10_000


@dataclass(frozen=True)
class TableCopy:
    """One copied table: its name, the rows copied, their checksum and how it was verified.

    ``verified_by`` is "checksum" (the checksum is ``table_checksum``'s, 32 hex digits, the
    same on every backend), "server" (into PostgreSQL, for tables of exact values: the
    server's hash of the rows, 16 hex digits, see ``copy_staged``) or "count" (no checksum).
    """

    table: str
    rows: int
    checksum: str
    verified_by: str = "checksum"


# -- column kinds --------------------------------------------------------------------------


@functools.cache
def _reference_dialect() -> Dialect:
    # A column's logical kind is read from its PostgreSQL form, where types are most native
    # (a JSON that is VARCHAR on SQLite is JSON there).
    return postgresql.dialect()


def storage_type(type_: TypeEngine[Any], dialect: Dialect) -> TypeEngine[Any]:
    """The type ``type_`` is stored as on ``dialect`` (TypeDecorators unwrapped)."""
    impl = type_.dialect_impl(dialect)
    while isinstance(impl, TypeDecorator):
        impl = impl.impl_instance
    return impl


# Storage types and the kind of value they hold, checked in this order (Float before
# Numeric, its base class).
_KINDS: tuple[tuple[type[Any], str], ...] = (
    (sa.JSON, "json"),
    (sa.Uuid, "uuid"),
    (sa.DateTime, "datetime"),
    (sa.Date, "date"),
    (sa.Time, "time"),
    (sa.Boolean, "bool"),
    (sa.Float, "float"),
    (sa.Numeric, "decimal"),
    (sa.Integer, "int"),
    (sa.LargeBinary, "bytes"),
    (sa.String, "text"),
)


def _kind(type_: TypeEngine[Any]) -> str:
    """What a column holds: json, uuid, datetime, date, time, bool, float, float6, decimal,
    int, bytes, text or other."""
    ref = storage_type(type_, _reference_dialect())
    kind = next((name for cls, name in _KINDS if isinstance(ref, cls)), "other")
    if kind == "datetime" and ref.timezone:  # type: ignore[attr-defined]
        return "other"
    if kind == "float":
        # sa.Float() is single precision on MariaDB (FLOAT): compare what it keeps.
        declared = type_.impl_instance if isinstance(type_, TypeDecorator) else type_
        precise = isinstance(declared, sa.Double) or (getattr(declared, "precision", 0) or 0) > 24
        return "float" if precise else "float6"
    return kind


def _family(dialect: Dialect) -> str:
    return "mysql" if dialect.name == "mariadb" else dialect.name


def _datetime_text(value: Any) -> str:
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " ":  # SQLAlchemy's SQLite form already
            return value
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _iso(value: Any) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _uuid_hex(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, bytes):
        return uuid.UUID(bytes=value).hex
    return str(value).replace("-", "").lower()


# A row is hashed as marshal's version-0 bytes of its tuple of normalised values (str, int,
# float, None): one C call per row that depends on the values and their types only (no
# interning flags or back-references, which later versions write).
_blake16 = functools.partial(hashlib.blake2b, digest_size=16)
_digest = operator.methodcaller("digest")


def _rows_hash(rows: Iterable[tuple[Any, ...]]) -> int:
    """The sum of the rows' hashes (BLAKE2b, 128 bits), without a Python loop."""
    rows = list(rows)
    try:
        texts = list(map(marshal.dumps, rows, itertools.repeat(0)))
    except ValueError:  # a value of a subclass (or stranger type): as its plain self
        texts = [marshal.dumps(tuple(map(_plain, row)), 0) for row in rows]
    return sum(map(int.from_bytes, map(_digest, map(_blake16, texts))))


def _plain(value: Any) -> Any:
    for kind in (str, bool, int, float, bytes):
        if isinstance(value, kind):
            return kind(value)
    return value if value is None else repr(value)


_encoder = json.JSONEncoder(ensure_ascii=False, check_circular=False)
_c_encoder = getattr(json.encoder, "c_make_encoder", None)

# JSON is hashed as PostgreSQL's jsonb prints it (keys by byte length then bytes, the last of
# repeated keys, ", " and ": ", numbers as numeric keeps them): PostgreSQL gives that text
# itself, so the largest side of a copy into PostgreSQL parses no JSON in Python at all.
_pg_encode = (
    _c_encoder(
        None, _encoder.default, json.encoder.encode_basestring, None, ": ", ", ", False, False, True
    )
    if _c_encoder is not None
    else json.JSONEncoder(ensure_ascii=False, check_circular=False).iterencode
)
_NUMBER = "\x01"  # stands for a number while encoding (its token: '"\\u0001"')
_NUMBER_TOKEN = '"\\u0001"'


def _pg_key(key: str) -> tuple[int, bytes]:
    data = key.encode()
    return len(data), data


def _pg_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) < 2:
        return dict(pairs)
    value = dict(pairs)  # the last of a repeated key, as jsonb keeps
    keys = sorted(value)
    if all(map(str.isascii, keys)):
        keys.sort(key=len)  # stable: by length, then by code point (= bytes for ASCII)
    else:
        keys.sort(key=_pg_key)
    return dict(zip(keys, map(value.__getitem__, keys), strict=True))


def _pg_number(text: str) -> str:
    """A JSON number as PostgreSQL's numeric prints it (no exponent, its scale kept)."""
    number = decimal.Decimal(text)
    return format(number.copy_abs() if number.is_zero() else number, "f")


class _PgJson:
    """JSON text (str or bytes) into the text PostgreSQL's jsonb prints for it."""

    def __init__(self) -> None:
        self._numbers: list[str] = []
        self._decode = json.JSONDecoder(
            object_pairs_hook=_pg_object, parse_float=self._number
        ).decode
        self._exact = json.JSONDecoder(object_pairs_hook=_pg_object, parse_float=_PgNumber).decode

    def _number(self, text: str) -> str:
        self._numbers.append(text)
        return _NUMBER

    def __call__(self, text: Any) -> str:
        if isinstance(text, bytes):
            text = text.decode()
        try:
            if _NUMBER_TOKEN in text:  # a string "\x01" of its own: the slow way
                return _pg_dump(self._exact(text))
            numbers = self._numbers
            numbers.clear()
            out = "".join(_pg_encode(self._decode(text), 0))
        except ValueError as e:
            raise InvalidValue(f"a JSON column holds text that is not JSON: {e}") from None
        if not numbers:
            return out
        pieces = out.split(_NUMBER_TOKEN)
        parts = [pieces[0]]
        for number, piece in zip(numbers, pieces[1:], strict=True):
            parts += (_pg_number(number), piece)
        return "".join(parts)


class _PgNumber(str):
    """A JSON number's text, kept as it was written."""


def _pg_dump(value: Any) -> str:
    """``value`` (parsed by _PgJson) as jsonb prints it, written out in Python."""
    if isinstance(value, _PgNumber):
        return _pg_number(value)
    if isinstance(value, dict):
        items = (f"{json.encoder.encode_basestring(k)}: {_pg_dump(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_pg_dump(v) for v in value) + "]"
    return "".join(_pg_encode(value, 0))


class _PgCanon:
    """JSON texts into jsonb's text by a PostgreSQL server, a batch per round trip."""

    # chr(30) cannot stand in JSON text (a control character), nor can None (str(None),
    # which stands for NULL here): every step a C loop, none in Python.
    _SQL = (
        "SELECT array_to_string(array("
        "SELECT coalesce(NULLIF(v, 'None')::jsonb::text, '') "
        "FROM unnest(string_to_array(%s, chr(30))) WITH ORDINALITY AS t(v, n) ORDER BY n"
        "), chr(30))"
    )
    _NULL = {"": None}

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def __call__(self, values: Sequence[Any]) -> list[str | None]:
        if bytes in set(map(type, values)):  # (C loops: a Python one costs more here)
            values = [v.decode() if isinstance(v, bytes) else v for v in values]
        with closing(self.raw.cursor()) as cursor:
            # A leading "0": string_to_array makes no element of an empty string.
            cursor.execute(self._SQL, ("0\x1e" + "\x1e".join(map(str, values)),))
            out = cursor.fetchone()[0].split("\x1e")[1:]
        if len(out) != len(values):
            raise InvalidValue("a JSON column holds text that is not JSON")
        return list(map(self._NULL.get, out, out))


def _decimal_text(value: Any) -> str:
    return format(decimal.Decimal(str(value)).normalize(), "f")


def _normaliser(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """What turns a driver value of this column on ``dialect`` into the value hashed (None:
    the value as it is). Equal data gives equal values whatever the backend."""
    kind = _kind(type_)
    if kind == "json":
        # Read as text on every backend (see _select_sql): jsonb's is the text hashed.
        return None if _is_jsonb(type_, dialect) else _PgJson()
    simple: dict[str, Callable[[Any], Any]] = {
        "uuid": _uuid_hex,
        "datetime": _datetime_text,
        "date": _iso,
        "time": _iso,
        "bool": int,
        "float6": lambda v: format(float(v), ".6g"),
        "decimal": _decimal_text,
        "bytes": lambda v: bytes(v).hex(),
    }
    if kind in simple:
        return simple[kind]
    if kind == "other":
        to_python = result_processor(type_, dialect)
        return repr if to_python is None else (lambda v: repr(to_python(v)))
    return None  # int, float, text: JSON keeps them as they are


def _is_jsonb(type_: TypeEngine[Any], dialect: Dialect) -> bool:
    return _family(dialect) == "postgresql" and isinstance(
        storage_type(type_, dialect), postgresql.JSONB
    )


def _converter(
    type_: TypeEngine[Any], source: Dialect, target: Dialect
) -> Callable[[Any], Any] | None:
    """What turns a source driver value into the target driver's (None: as it is)."""
    kind = _kind(type_)
    src, tgt = _family(source), _family(target)
    if kind == "json":
        return None  # read as text on every backend (see _select_sql), and taken as text
    if src == tgt or kind in ("int", "text", "float", "float6", "bytes", "bool"):
        return None
    if kind == "uuid" and src != "postgresql":
        return None  # hex text: PostgreSQL reads it, the others store it as it is
    if kind == "datetime" and tgt != "sqlite":
        return None  # SQLite's text and datetimes alike are read by the servers
    if kind == "decimal" and tgt != "sqlite":
        return None
    to_python = result_processor(type_, source)
    to_target = bind_processor(type_, target)

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if to_python is not None:
            value = to_python(value)
        return value if to_target is None else to_target(value)

    return convert


def _row_function(
    functions: Sequence[Callable[[Any], Any] | None],
) -> Callable[[Sequence[Any]], tuple[Any, ...]] | None:
    """A function applying one function per column (NULLs left alone), or None when none
    applies."""
    if not any(functions):
        return None
    pairs = [(i, f) for i, f in enumerate(functions) if f is not None]

    def apply(row: Sequence[Any]) -> tuple[Any, ...]:
        values = list(row)
        for i, f in pairs:
            value = values[i]
            if value is not None:
                values[i] = f(value)
        return tuple(values)

    return apply


# -- checksums -----------------------------------------------------------------------------


class _Checksum:
    """Order-independent: the sum of each row's hash, modulo 2**128. With ``canon`` (a
    PostgreSQL server's jsonb), JSON columns not read from jsonb are put in jsonb's text by
    that server, a batch at a time, rather than in Python."""

    def __init__(
        self,
        table: Table,
        dialect: Dialect,
        canon: Callable[[Sequence[Any]], list[Any]] | None = None,
    ) -> None:
        normalisers = [_normaliser(c.type, dialect) for c in table.columns]
        self.batched = [
            i for i, f in enumerate(normalisers) if canon is not None and isinstance(f, _PgJson)
        ]
        for i in self.batched:
            normalisers[i] = None
        self.canon = canon
        self.normalise = _row_function(normalisers)
        self._lock = threading.Lock()
        self.rows = 0
        self.total = 0

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        count = len(rows)
        if self.batched:
            columns: list[Any] = list(zip(*rows, strict=True))
            texts = self.canon(
                list(itertools.chain.from_iterable(columns[i] for i in self.batched))
            )  # type: ignore[misc]
            for k, i in enumerate(self.batched):
                columns[i] = texts[k * count : (k + 1) * count]
            rows = zip(*columns, strict=True)  # type: ignore[assignment]
        if self.normalise is not None:
            rows = map(self.normalise, rows)  # type: ignore[assignment]
        hashed = _rows_hash(rows)
        with self._lock:  # batches may be hashed in two threads (see _Hasher)
            self.total = (self.total + hashed) % _MOD
            self.rows += count

    @property
    def hexdigest(self) -> str:
        return format(self.total, "032x")


def _checksum_of(conn: Connection, table: Table, batch_size: int) -> _Checksum:
    checksum = _Checksum(table, conn.dialect)
    with _Hasher(checksum) as hasher:
        for rows in _stream(conn, table, batch_size):
            hasher.add(rows)
    return checksum


class _Hasher:
    """Hashes batches into a checksum in a thread, behind the caller: reading the next batch
    (and writing this one) waits on the driver or a server meanwhile. Batches whose JSON a
    server puts in jsonb's form go two at a time: one waits on the server while the other
    is hashed (the other normalisers keep no state, so that is safe)."""

    def __init__(self, checksum: _Checksum | None) -> None:
        self.checksum = checksum
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()
        self._in_flight = 2 if checksum is not None and checksum.batched else 1

    def __enter__(self) -> _Hasher:
        if self.checksum is not None:
            self._pool = ThreadPoolExecutor(self._in_flight, thread_name_prefix="dblayer-copy-hash")
        return self

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if self._pool is None or self.checksum is None:
            return
        while len(self._pending) >= self._in_flight:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self.checksum.add, rows))

    def wait(self) -> None:
        """Wait for the batches in flight (an error raised here)."""
        while self._pending:
            self._pending.popleft().result()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)


def table_checksum(
    db: Database, table: Table, *, batch_size: int = _DEFAULT_BATCH
) -> tuple[int, str]:
    """``(rows, checksum)`` of ``table`` in ``db``, as copy_tables computes them."""
    _check_batch(batch_size)
    with db.transaction(readonly=True) as conn, _driver_errors(conn):
        checksum = _checksum_of(conn, table, batch_size)
    return checksum.rows, checksum.hexdigest


# -- driver-level reading and writing -------------------------------------------------------


@contextmanager
def _driver_errors(conn: Connection) -> Iterator[None]:
    """Driver (DB-API) errors raised on the raw connection come out as dblayer's."""
    try:
        yield
    except DBLayerError:
        raise
    except sa_exc.SQLAlchemyError as e:
        raise translate(e, secret=conn.engine.url.password) from e
    except Exception as e:
        dbapi_error = conn.dialect.loaded_dbapi.Error
        if not isinstance(e, dbapi_error):
            raise
        wrapped = sa_exc.DBAPIError.instance("", None, e, dbapi_error)
        raise translate(wrapped, secret=conn.engine.url.password) from e


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _select_sql(conn: Connection, table: Table) -> str:
    names = [_quote(conn, c.name) for c in table.columns]
    if _family(conn.dialect) == "postgresql":
        # JSON as its text, as the other backends give it: psycopg's own parsing would cost
        # more than the whole copy, and every backend takes the text back.
        names = [
            f"{name}::text" if _kind(c.type) == "json" else name
            for name, c in zip(names, table.columns, strict=True)
        ]
    columns = ", ".join(names)
    sql = f"SELECT {columns} FROM {_quote(conn, table.name)}"
    if any(fk.column.table is table for fk in table.foreign_keys):
        # A tree: parents (smaller ids, as a rule) before the rows that refer to them.
        sql += " ORDER BY " + ", ".join(_quote(conn, c.name) for c in table.primary_key.columns)
    return sql


def _stream(conn: Connection, table: Table, batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``table`` as driver tuples, ``batch_size`` at a time, read through a
    server-side cursor (PostgreSQL, MariaDB/MySQL) inside ``conn``'s transaction."""
    raw = conn.connection.dbapi_connection
    family = _family(conn.dialect)
    if family == "postgresql" and conn.dialect.driver == "psycopg":
        cursor = raw.cursor(name=f"dblayer_copy_{table.name}"[:63])
        cursor.itersize = batch_size
    elif family == "mysql" and conn.dialect.driver == "pymysql":
        import pymysql.cursors

        cursor = raw.cursor(pymysql.cursors.SSCursor)
    else:
        cursor = raw.cursor()
    try:
        cursor.execute(_select_sql(conn, table))
        while rows := cursor.fetchmany(batch_size):
            yield rows
    finally:
        cursor.close()


class _Writer:
    """Rows into one target table: COPY on PostgreSQL (psycopg 3), else executemany."""

    def __init__(self, conn: Connection, table: Table, staging: Staging | None = None) -> None:
        self.conn = conn
        self.raw = conn.connection.dbapi_connection
        self.staging = staging
        names = [_quote(conn, c.name) for c in table.columns]
        self.target = f"{_quote(conn, table.name)} ({', '.join(names)})"
        dialect = conn.dialect
        self.copy = _family(dialect) == "postgresql" and dialect.driver == "psycopg"
        marks = {"qmark": "?", "format": "%s", "pyformat": "%s"}
        if not self.copy and dialect.paramstyle not in marks:
            raise InvalidValue(f"copy_tables cannot write through the {dialect.driver} driver")
        mark = marks.get(dialect.paramstyle, "?")
        self.insert = f"INSERT INTO {self.target} VALUES ({', '.join([mark] * len(names))})"
        self._cursor: Any = None
        self._copy: Any = None
        self._stack = ExitStack()

    def __enter__(self) -> _Writer:
        self._cursor = self._stack.enter_context(closing(self.raw.cursor()))
        if self.copy:
            writer = None if self.staging is None else self.staging.writer(self._cursor)
            self._copy = self._stack.enter_context(
                self._cursor.copy(f"COPY {self.target} FROM STDIN", writer=writer)
            )
        return self

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if self._copy is not None:
            write_row = self._copy.write_row
            for row in rows:
                write_row(row)
        else:
            self._cursor.executemany(self.insert, rows)

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)


# -- the copy ------------------------------------------------------------------------------


def _check_batch(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidValue(f"batch_size must be an integer >= 1, got {batch_size!r}")


def _tables_of(tables: MetaData | Sequence[Table]) -> list[Table]:
    if isinstance(tables, MetaData):
        return list(tables.sorted_tables)
    if isinstance(tables, (str, bytes)) or not isinstance(tables, Sequence):
        raise InvalidValue(f"tables must be a MetaData or a list of Tables, got {tables!r}")
    for table in tables:
        if not isinstance(table, Table):
            raise InvalidValue(f"tables must be a MetaData or a list of Tables, got {table!r}")
    return list(sa.schema.sort_tables(tables))


def _check_target(conn: Connection, tables: list[Table], allow_nonempty: bool) -> list[str]:
    """The target tables that already hold rows; refuse missing tables, and non-empty ones
    unless allowed."""
    present = set(sa.inspect(conn).get_table_names())
    missing = [t.name for t in tables if t.name not in present]
    if missing:
        raise InvalidValue(f"the target has no table {', '.join(missing)}: create the schema first")
    filled = [
        t.name
        for t in tables
        if conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is not None
    ]
    if filled and not allow_nonempty:
        raise TargetNotEmpty(
            f"the target's tables already hold rows: {', '.join(filled)} "
            "(nothing was copied; allow a non-empty target to copy anyway)"
        )
    return filled


@contextmanager
def _session_settings(conn: Connection) -> Iterator[None]:
    """Target session settings for the copy, restored afterwards."""
    family = _family(conn.dialect)
    if family == "sqlite":
        # Checked at COMMIT: a self-referencing row may come before the row it names.
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        yield
        return
    if family != "mysql":
        yield
        return
    mode = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar_one()
    # A copied id 0 stays 0 rather than taking the next AUTO_INCREMENT value.
    conn.exec_driver_sql(
        "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'NO_AUTO_VALUE_ON_ZERO')"
    )
    try:
        yield
    finally:
        conn.exec_driver_sql("SET SESSION sql_mode = %s", (mode,))


@contextmanager
def _snapshot(db: Database) -> Iterator[Connection]:
    """A read transaction on ``db`` that sees one state of the whole database."""
    try:
        with db.engine.connect() as conn:
            if db.backend != "sqlite":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
    except sa_exc.SQLAlchemyError as e:
        raise translate(e, secret=db.engine.url.password) from e


def copy_tables(
    source: Database,
    target: Database,
    tables: MetaData | Sequence[Table],
    *,
    batch_size: int = _DEFAULT_BATCH,
    allow_nonempty: bool = False,
    progress: Progress | None = None,
    verify: bool = True,
) -> dict[str, TableCopy]:
    """Copy every row of ``tables`` from ``source`` into the same tables of ``target``
    (parents before children, ids kept); return what was copied, table by table.

    One transaction on the target: it is refused (TargetNotEmpty, nothing written) when
    a target table already has rows, unless ``allow_nonempty``; a missing target table is
    InvalidValue. ``progress(table, rows)`` is called after each batch. At the end the
    row counts and checksums are compared on both sides (CopyMismatch, nothing kept) and
    each id counter (PostgreSQL's sequences, MariaDB's AUTO_INCREMENT, SQLite's
    AUTOINCREMENT) is set past both the highest id copied and the source's own counter. With ``verify=False`` only
    the counts are compared (each TableCopy's checksum is then empty).
    """
    _check_batch(batch_size)
    if progress is not None and not callable(progress):
        raise InvalidValue(f"progress must be callable, got {progress!r}")
    ordered = _tables_of(tables)
    copied: dict[str, TableCopy] = {}
    with target.transaction() as out, _driver_errors(out):
        filled = _check_target(out, ordered, allow_nonempty)
        methods = {t.name: _method(t, source.engine.dialect, out, verify) for t in ordered}
        # Checksums are additive: what was there before is subtracted when verifying.
        before = {
            t.name: _before(out, t, methods[t.name], batch_size)
            for t in ordered
            if t.name in filled
        }
        with (
            _session_settings(out),
            _snapshot(source) as src,
            _driver_errors(src),
            _json_canon(target, "checksum" in methods.values()) as canon,
        ):
            counters = id_counters(src, ordered)
            for table in ordered:
                method = methods[table.name]
                if method == "server":
                    copied[table.name] = _copy_table_staged(
                        src, out, table, batch_size, progress, before.get(table.name)
                    )
                else:
                    copied[table.name] = _copy_table(
                        src, out, table, batch_size, progress, method == "checksum", canon
                    )
        after_commit = advance_id_counters(out, ordered, counters)
        for table in ordered:
            if methods[table.name] != "server":  # (checked as it was copied)
                _verify(out, table, copied[table.name], before.get(table.name), batch_size)
    if after_commit:
        with target.transaction() as out, _driver_errors(out):
            for statement in after_commit:
                out.exec_driver_sql(statement)
    return copied


@contextmanager
def _json_canon(target: Database, verify: bool) -> Iterator[_PgCanon | None]:
    """Into PostgreSQL (psycopg), the source's JSON text is put in jsonb's by the target
    server, over a connection of its own (the copy's is busy with COPY)."""
    dialect = target.engine.dialect
    if not verify or _family(dialect) != "postgresql" or dialect.driver != "psycopg":
        yield None
        return
    with target.engine.connect() as conn, _driver_errors(conn):
        yield _PgCanon(conn.connection.dbapi_connection)


def _copy_table(
    src: Connection,
    out: Connection,
    table: Table,
    batch_size: int,
    progress: Progress | None,
    verify: bool,
    canon: _PgCanon | None,
) -> TableCopy:
    convert = _row_function([_converter(c.type, src.dialect, out.dialect) for c in table.columns])
    checksum = _Checksum(table, src.dialect, canon)
    with _Hasher(checksum if verify else None) as hasher, _Writer(out, table) as writer:
        count = _copy_rows(src, table, batch_size, progress, writer, hasher, convert)
    if not verify:
        return TableCopy(table.name, count, "", "count")
    return TableCopy(table.name, count, checksum.hexdigest)


def _copy_rows(
    src: Connection,
    table: Table,
    batch_size: int,
    progress: Progress | None,
    writer: _Writer,
    hasher: _Hasher | None = None,
    convert: Callable[[Sequence[Any]], tuple[Any, ...]] | None = None,
) -> int:
    """Stream ``table``'s rows from ``src`` into ``writer`` (each batch hashed by ``hasher``
    as it goes); the number of rows."""
    count = 0
    for rows in _stream(src, table, batch_size):
        if hasher is not None:
            hasher.add(rows)
        count += len(rows)
        writer.write(rows if convert is None else [convert(r) for r in rows])
        if progress is not None:
            progress(table.name, len(rows))
    return count


def _method(table: Table, source: Dialect, out: Connection, verify: bool) -> str:
    """How a table's copy into ``out`` is verified: "server", "checksum" or "count"."""
    if not verify:
        return "count"
    kinds = [_kind(c.type) for c in table.columns]
    jsonb = all(_is_jsonb(c.type, out.dialect) for c in table.columns if _kind(c.type) == "json")
    exact = all(_converter(c.type, source, out.dialect) is None for c in table.columns)
    return "server" if exact and copy_staged.applies(out, kinds, jsonb) else "checksum"


def _before(conn: Connection, table: Table, method: str, batch_size: int) -> Any:
    """What a non-empty target table holds before the copy, as ``method`` counts it."""
    if method == "server":
        return copy_staged.digest(*_digest_args(conn, table))
    if method == "checksum":
        return _checksum_of(conn, table, batch_size)
    return _count_of(conn, table)


def _digest_args(conn: Connection, table: Table) -> tuple[Any, str, list[str]]:
    columns = [_quote(conn, c.name) for c in table.columns]
    return conn.connection.dbapi_connection, _quote(conn, table.name), columns


def _copy_table_staged(
    src: Connection,
    out: Connection,
    table: Table,
    batch_size: int,
    progress: Progress | None,
    before: tuple[int, int] | None,
) -> TableCopy:
    """Copy one table into PostgreSQL, verified on the server (see copy_staged)."""
    raw, name, columns = _digest_args(out, table)
    with copy_staged.Staging(out.engine, name, columns) as staging:
        with _Writer(out, table, staging) as writer:
            count = _copy_rows(src, table, batch_size, progress, writer)
        (sent, sent_sum), (after, after_sum) = staging.digests(raw)
    old_rows, old_sum = before or (0, 0)
    arrived, arrived_sum = after - old_rows, (after_sum - old_sum) % copy_staged.MOD
    _compare_counts(table, count, arrived)
    if sent != count:
        raise CopyMismatch(f"{table.name}: {count} rows were sent but {sent} were received")
    if arrived_sum != sent_sum:
        _checksum_differs(table, format(sent_sum, "016x"))
    return TableCopy(table.name, count, format(sent_sum, "016x"), "server")


def _count_of(conn: Connection, table: Table) -> _Checksum:
    """The rows of ``table`` counted (a checksum without its sum)."""
    counted = _Checksum(table, conn.dialect)
    counted.rows = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    return counted


def _verify(
    out: Connection,
    table: Table,
    copied: TableCopy,
    before: _Checksum | None,
    batch_size: int,
) -> None:
    checksum = copied.verified_by == "checksum"
    after = _checksum_of(out, table, batch_size) if checksum else _count_of(out, table)
    rows = after.rows - (before.rows if before else 0)
    total = (after.total - (before.total if before else 0)) % _MOD
    _compare_counts(table, copied.rows, rows)
    if checksum and format(total, "032x") != copied.checksum:
        _checksum_differs(table, copied.checksum)


def _compare_counts(table: Table, read: int, arrived: int) -> None:
    if arrived != read:
        raise CopyMismatch(
            f"{table.name}: {read} rows read from the source but {arrived} arrived "
            "(nothing was copied)"
        )


def _checksum_differs(table: Table, checksum: str) -> None:
    raise CopyMismatch(
        f"{table.name}: the checksum of the copied rows differs from the source's "
        f"({checksum}); a value did not survive the trip (nothing was copied)"
    )

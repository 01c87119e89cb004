"""Running compiled SQL on the driver's own cursor, for the hot paths that skip
SQLAlchemy's per-statement work (PreparedQuery, insert_many). Errors still come out
as dblayer's own."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, processors
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import TypeEngine

from .errors import translate


def bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The conversion a column type applies to a value before the driver sees it."""
    return type_.dialect_impl(dialect).bind_processor(dialect)


# Each dialect's positional twin, made once: a new dialect per compiled statement costs.
_POSITIONAL: weakref.WeakKeyDictionary[Dialect, Dialect] = weakref.WeakKeyDictionary()


def positional_dialect(dialect: Dialect) -> Dialect:
    """``dialect`` or, if its paramstyle is named, a twin compiling ``%s`` placeholders
    (psycopg and PyMySQL take both): the driver then gets a tuple per row, not a dict."""
    if dialect.positional:
        return dialect
    twin = _POSITIONAL.get(dialect)
    if twin is None:
        twin = type(dialect)(paramstyle="format")
        twin.server_version_info = dialect.server_version_info
        if hasattr(dialect, "is_mariadb"):
            twin.is_mariadb = dialect.is_mariadb
        _POSITIONAL[dialect] = twin
    return twin


# Float and Numeric share this base in SQLAlchemy 2.1; in 2.0 Float is a Numeric.
_NUMERIC = getattr(sqltypes, "NumericCommon", sqltypes.Numeric)


def result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The conversion a column type applies to a value the driver returns."""
    impl = type_.dialect_impl(dialect)
    if dialect.name == "postgresql" and isinstance(impl, _NUMERIC):
        # psycopg's numeric types pick a conversion by the server type of the result column
        # (float8 or numeric), known only once a row arrives: decide by the value instead.
        return _numeric_by_value(impl)
    return impl.result_processor(dialect, None)


def _numeric_by_value(type_: Any) -> Callable[[Any], Any]:
    """Decimal or float as ``type_.asdecimal`` asks, whatever the driver returned."""
    if type_.asdecimal:
        to_decimal = processors.to_decimal_processor_factory(
            Decimal, type_._effective_decimal_return_scale
        )
        return lambda value: to_decimal(value) if type(value) is float else value
    return lambda value: value if type(value) is float else float(value)


# Drivers whose cursors a connection keeps between statements (see _HeldCursor).
_HOLD_CURSOR = frozenset({"psycopg"})
_HELD = "dblayer_held_cursor"  # its key in the pooled connection's info
# A held cursor with more rows than this is closed, not kept: it would hold them in memory.
_HOLD_MAX_ROWS = 1000


class _HeldCursor:
    """A psycopg cursor its connection keeps between statements: a new cursor re-resolves
    the adapters of every parameter and column, about 30 µs a statement. It stands in for
    the cursor; ``close()`` hands it back to the connection instead of closing it. While a
    caller has it (not closed yet) the next statement gets a cursor of its own."""

    __slots__ = ("cursor", "busy", "fetchone", "fetchall", "fetchmany")

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.busy = False
        self.fetchone = cursor.fetchone
        self.fetchall = cursor.fetchall
        self.fetchmany = cursor.fetchmany

    @property
    def rowcount(self) -> int:
        """The driver cursor's rowcount."""
        return self.cursor.rowcount  # type: ignore[no-any-return]

    @property
    def description(self) -> Any:
        """The driver cursor's description."""
        return self.cursor.description

    def __iter__(self) -> Any:
        return iter(self.cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)

    def close(self) -> None:
        """Hand the cursor back (a large result is let go of: the cursor is closed)."""
        self.busy = False
        if self.cursor.rowcount > _HOLD_MAX_ROWS:
            self.cursor.close()


def cursor_execute(conn: Connection, sql: str, args: Any, *, many: bool = False) -> Any:
    """Run ``sql`` on the driver cursor of ``conn`` (inside its transaction); return the
    cursor, which the caller closes. Driver errors are translated; the cursor is closed
    when one is raised."""
    pooled = conn.connection
    held = None
    if conn.dialect.driver in _HOLD_CURSOR:
        info = pooled.info
        held = info.get(_HELD)
        if held is None or held.cursor.closed:
            held = info[_HELD] = _HeldCursor(pooled.dbapi_connection.cursor())
        elif held.busy:
            held = None
    cursor = pooled.dbapi_connection.cursor() if held is None else held.cursor
    try:
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
    except Exception as e:
        cursor.close()  # a held one too: the next statement starts on a fresh cursor
        dbapi_error = conn.dialect.loaded_dbapi.Error
        if isinstance(e, dbapi_error):
            wrapped = sa_exc.DBAPIError.instance(sql, args, e, dbapi_error)
            raise translate(wrapped) from e
        raise
    if held is None:
        return cursor
    held.busy = True
    return held

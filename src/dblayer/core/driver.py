"""Running compiled SQL on the driver's own cursor, for the hot paths that skip
SQLAlchemy's per-statement work (PreparedQuery, insert_many). Errors still come out
as dblayer's own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from .errors import translate


def bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The conversion a column type applies to a value before the driver sees it."""
    return type_.dialect_impl(dialect).bind_processor(dialect)


def result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The conversion a column type applies to a value the driver returns."""
    return type_.dialect_impl(dialect).result_processor(dialect, None)


def cursor_execute(conn: Connection, sql: str, args: Any, *, many: bool = False) -> Any:
    """Run ``sql`` on the driver cursor of ``conn`` (inside its transaction); return the
    cursor. Driver errors are translated; the cursor is closed when one is raised."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
    except Exception as e:
        cursor.close()
        dbapi_error = conn.dialect.loaded_dbapi.Error
        if isinstance(e, dbapi_error):
            wrapped = sa_exc.DBAPIError.instance(sql, args, e, dbapi_error)
            raise translate(wrapped) from e
        raise
    return cursor

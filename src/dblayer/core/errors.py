"""One exception tree for the whole library, and the translation of driver errors into it.

Every public call raises a subclass of :class:`DBLayerError`; no SQLAlchemy or
driver exception escapes. Stores subclass these under the names their documents
use (nova's ``InstanceNotFound``, jobman's ``IntegrityError``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import exc as sa_exc


class DBLayerError(Exception):
    """Base of every error dblayer raises."""


class NotFound(DBLayerError, LookupError):
    """The row asked for does not exist (or is not visible to the caller)."""


class MarkerNotFound(NotFound):
    """A pagination marker names a row that does not exist."""


class ConflictError(DBLayerError):
    """The write would break a unique, foreign-key or not-null constraint.

    ``constraint`` is the constraint's name when the backend reports it, and
    ``columns`` the columns involved when they can be told.
    """

    def __init__(
        self,
        message: str,
        *,
        constraint: str | None = None,
        columns: Iterable[str] = (),
    ) -> None:
        super().__init__(message)
        self.constraint = constraint
        self.columns = tuple(columns)


class DuplicateEntry(ConflictError):
    """A unique constraint (or primary key) already holds this value."""


class ForeignKeyViolation(ConflictError):
    """A foreign key refers to a row that does not exist, or is still referred to."""


class InvalidQuery(DBLayerError, ValueError):
    """A query, filter, sort or value was rejected before any SQL was sent."""


class InvalidValue(DBLayerError, ValueError):
    """A value cannot be stored in its column (wrong type, too long, out of range)."""


class ConstraintNotMet(DBLayerError):
    """A conditional update matched no row: the expected state did not hold."""


class CompareAndSetFailed(ConstraintNotMet):
    """compare_and_set found a value other than the expected one (or no key)."""


class TransientError(DBLayerError):
    """A failure that may succeed if the whole unit of work is replayed."""


class DeadlockError(TransientError):
    """The backend chose this transaction as a deadlock victim."""


class LockTimeout(TransientError):
    """A lock could not be had in time (lock wait timeout, SQLite busy)."""


class DBConnectionError(TransientError):
    """The connection to the database failed or was lost."""


class DatabaseError(DBLayerError):
    """Any other error the database reported."""


# PostgreSQL SQLSTATEs, MySQL/MariaDB error numbers: the single place that knows them.
_PG_DEADLOCK = {"40P01", "40001"}
_PG_LOCK = {"55P03", "57014"}
_PG_UNIQUE = "23505"
_PG_FK = "23503"
_MY_DEADLOCK = {1213}
_MY_LOCK = {1205}
_MY_UNIQUE = {1062, 1586}
_MY_FK = {1216, 1217, 1451, 1452}
_MY_CONNECTION = {2002, 2003, 2006, 2013, 2055}
_MY_DATA = {1264, 1265, 1366, 1406, 1292, 1048, 4025}


def mask_secret(text: str, secret: str | None) -> str:
    """Replace every occurrence of ``secret`` in ``text`` with ``***``."""
    if secret:
        text = text.replace(secret, "***")
    return text


def _driver_code(orig: BaseException | None) -> tuple[str | None, int | None]:
    """The SQLSTATE (PostgreSQL) and error number (MySQL) of a driver error."""
    if orig is None:
        return None, None
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    number = None
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        number = args[0]
    return sqlstate, number


def _unique_details(message: str) -> tuple[str | None, list[str]]:
    """The constraint name and columns a duplicate-key message names, per backend."""
    m = re.search(r"UNIQUE constraint failed: ([^\n]+)", message)
    if m:  # SQLite: "UNIQUE constraint failed: t.a, t.b"
        cols = [part.strip().split(".")[-1] for part in m.group(1).split(",")]
        return None, cols
    m = re.search(r'constraint "([^"]+)"', message)
    if m:  # PostgreSQL
        cols_m = re.search(r"Key \(([^)]*)\)=", message)
        cols = [c.strip() for c in cols_m.group(1).split(",")] if cols_m else []
        return m.group(1), cols
    m = re.search(r"for key '([^']+)'", message)
    if m:  # MariaDB / MySQL (8.0.19+ prefixes "table.")
        return m.group(1).split(".")[-1], []
    return None, []


def translate(error: BaseException, *, secret: str | None = None) -> DBLayerError:
    """Map a SQLAlchemy/driver exception onto dblayer's tree (never raises)."""
    if isinstance(error, DBLayerError):
        return error
    orig = getattr(error, "orig", None)
    message = mask_secret(str(orig if orig is not None else error), secret)
    sqlstate, number = _driver_code(orig)
    lowered = message.lower()

    if sqlstate in _PG_DEADLOCK or number in _MY_DEADLOCK or "deadlock" in lowered:
        new: DBLayerError = DeadlockError(message)
    elif (
        sqlstate in _PG_LOCK
        or number in _MY_LOCK
        or "database is locked" in lowered
        or "database table is locked" in lowered
    ):
        new = LockTimeout(message)
    elif isinstance(error, sa_exc.IntegrityError):
        if sqlstate == _PG_UNIQUE or number in _MY_UNIQUE or "unique constraint" in lowered:
            name, cols = _unique_details(message)
            new = DuplicateEntry(message, constraint=name, columns=cols)
        elif sqlstate == _PG_FK or number in _MY_FK or "foreign key" in lowered:
            new = ForeignKeyViolation(message)
        else:
            new = ConflictError(message)
    elif (
        getattr(error, "connection_invalidated", False)
        or number in _MY_CONNECTION
        or (sqlstate or "").startswith("08")
        or isinstance(error, sa_exc.DisconnectionError)
    ):
        new = DBConnectionError(message)
    elif isinstance(error, sa_exc.DataError) or number in _MY_DATA or (sqlstate or "").startswith("22"):
        new = InvalidValue(message)
    elif isinstance(error, sa_exc.OperationalError) and (
        "unable to open" in lowered or "could not connect" in lowered or "connection" in lowered
    ):
        new = DBConnectionError(message)
    elif isinstance(error, sa_exc.StatementError) and isinstance(orig, (ValueError, TypeError)) or isinstance(error, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
        new = InvalidValue(message)
    else:
        new = DatabaseError(message)
    new.__cause__ = error
    return new

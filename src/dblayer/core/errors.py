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


class TargetNotEmpty(ConflictError):
    """A table a copy writes to already holds rows (and the copy was not told to allow it)."""


class CopyMismatch(DatabaseError):
    """After copying, a table's row count or checksum on the target differs from the source."""


# PostgreSQL SQLSTATEs, MySQL/MariaDB error numbers: the single place that knows them.
_PG_DEADLOCK = {"40P01", "40001"}
_PG_LOCK = {"55P03", "57014"}
_PG_UNIQUE = "23505"
_PG_FK = "23503"
_PG_CHECK = "23514"
# Class 08 (connection exception), 28 (bad credentials), 3D000 (no such database), 57P01-03.
_PG_CONNECTION_PREFIXES = ("08", "28")
_PG_CONNECTION = {"3D000", "57P01", "57P02", "57P03"}
_MY_DEADLOCK = {1213}
_MY_LOCK = {1205}
_MY_UNIQUE = {1062, 1586}
_MY_FK = {1216, 1217, 1451, 1452}
# Lost/refused connections, and refused logins (1044, 1045) or unknown database (1049).
_MY_CONNECTION = {1044, 1045, 1049, 2002, 2003, 2006, 2013, 2055}
_MY_DATA = {1264, 1265, 1366, 1406, 1292, 1048, 4025}


def mask_secret(text: str, *secrets: str | None) -> str:
    """Replace every occurrence of each secret in ``text`` with ``***``."""
    for secret in secrets:
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


def _unique_details(message: str, orig: BaseException | None) -> tuple[str | None, list[str]]:
    """The constraint name and columns a duplicate-key error names, per backend."""
    m = re.search(r"UNIQUE constraint failed: ([^\n]+)", message)
    if m:  # SQLite: "UNIQUE constraint failed: t.a, t.b"
        cols = [part.strip().split(".")[-1] for part in m.group(1).split(",")]
        return None, cols
    diag = getattr(orig, "diag", None)
    name = getattr(diag, "constraint_name", None)  # psycopg knows it without parsing
    m = re.search(r'constraint "([^"]+)"', message)
    if name or m:  # PostgreSQL
        cols_m = re.search(r"Key \(([^)]*)\)=", message)
        # Reserved words come quoted: Key ("binary", host)=(...).
        cols = [c.strip().strip('"') for c in cols_m.group(1).split(",")] if cols_m else []
        return name or (m.group(1) if m else None), cols
    # MariaDB / MySQL (8.0.19+ prefixes "table."); the key comes last, after the quoted value.
    keys = re.findall(r"for key '([^']+)'", message)
    if keys:
        return keys[-1].split(".")[-1], []
    return None, []


def _is_connection_error(error: BaseException, sqlstate: str | None, number: int | None) -> bool:
    return (
        bool(getattr(error, "connection_invalidated", False))
        or number in _MY_CONNECTION
        or (sqlstate or "").startswith(_PG_CONNECTION_PREFIXES)
        or sqlstate in _PG_CONNECTION
        or isinstance(error, (sa_exc.DisconnectionError, sa_exc.TimeoutError))
    )


def _classify_by_text(error: BaseException, message: str) -> DBLayerError | None:
    """Classify errors of drivers that give no code (SQLite, connection setup) by their text.

    Only used without a code: a message may quote user data ("Duplicate entry 'deadlock'").
    """
    lowered = message.lower()
    if "deadlock" in lowered:
        return DeadlockError(message)
    if "database is locked" in lowered or "database table is locked" in lowered:
        return LockTimeout(message)
    if isinstance(error, sa_exc.IntegrityError):
        if "unique constraint" in lowered:
            name, cols = _unique_details(message, None)
            return DuplicateEntry(message, constraint=name, columns=cols)
        if "foreign key" in lowered:
            return ForeignKeyViolation(message)
        if "check constraint" in lowered:
            return InvalidValue(message)
        return ConflictError(message)
    if isinstance(error, sa_exc.OperationalError) and (
        "unable to open" in lowered or "could not connect" in lowered or "connection" in lowered
    ):
        return DBConnectionError(message)
    return None


def _classify_by_code(
    error: BaseException,
    orig: BaseException | None,
    message: str,
    sqlstate: str | None,
    number: int | None,
) -> DBLayerError | None:
    """Classify a driver error by its SQLSTATE / error number."""
    if sqlstate in _PG_DEADLOCK or number in _MY_DEADLOCK:
        return DeadlockError(message)
    if sqlstate in _PG_LOCK or number in _MY_LOCK:
        return LockTimeout(message)
    if sqlstate == _PG_UNIQUE or number in _MY_UNIQUE:
        name, cols = _unique_details(message, orig)
        return DuplicateEntry(message, constraint=name, columns=cols)
    if sqlstate == _PG_FK or number in _MY_FK:
        return ForeignKeyViolation(message)
    if sqlstate == _PG_CHECK:
        # A CHECK refuses the value itself, as MariaDB's 4025 (in _MY_DATA) says too.
        return InvalidValue(message)
    if isinstance(error, sa_exc.IntegrityError):
        return ConflictError(message)
    if _is_connection_error(error, sqlstate, number):
        return DBConnectionError(message)
    if number in _MY_DATA or (sqlstate or "").startswith("22"):
        return InvalidValue(message)
    return None


def translate(
    error: BaseException, *, secret: str | None = None, secrets: Iterable[str | None] = ()
) -> DBLayerError:
    """Map a SQLAlchemy/driver exception onto dblayer's tree (never raises).

    Every ``secret`` (URL passwords) is masked out of the message.
    """
    if isinstance(error, DBLayerError):
        return error
    orig = getattr(error, "orig", None)
    if isinstance(orig, DBLayerError):
        # Raised by one of dblayer's own types while SQLAlchemy bound a parameter.
        return orig
    message = mask_secret(str(orig if orig is not None else error), secret, *secrets)
    sqlstate, number = _driver_code(orig)

    new: DBLayerError | None
    if sqlstate is not None or number is not None:
        new = _classify_by_code(error, orig, message, sqlstate, number)
    else:
        new = _classify_by_text(error, message)
    if new is None:
        new = _classify_by_kind(error, orig, message, sqlstate, number)
    new.__cause__ = error
    return new


def _classify_by_kind(
    error: BaseException,
    orig: BaseException | None,
    message: str,
    sqlstate: str | None,
    number: int | None,
) -> DBLayerError:
    """Classify what neither a code nor the text settled, by the exception's class."""
    if isinstance(error, sa_exc.NoResultFound):
        return NotFound(message)
    if _is_connection_error(error, sqlstate, number):
        return DBConnectionError(message)
    if isinstance(error, sa_exc.DataError):
        return InvalidValue(message)
    if isinstance(error, sa_exc.StatementError) and isinstance(orig, (ValueError, TypeError)):
        return InvalidValue(message)
    if isinstance(error, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
        return InvalidValue(message)
    return DatabaseError(message)

"""errors: the exception tree and the translation of driver errors, real and built by hand."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dblayer.core import (
    CompareAndSetFailed,
    ConflictError,
    ConstraintNotMet,
    Database,
    DatabaseError,
    DBConnectionError,
    DBLayerError,
    DeadlockError,
    DuplicateEntry,
    ForeignKeyViolation,
    InvalidQuery,
    InvalidValue,
    LockTimeout,
    MarkerNotFound,
    NotFound,
    TransientError,
    new_metadata,
)
from dblayer.core.errors import mask_secret, translate
from tests.conftest import SHARED_BACKENDS, backend_url
from tests.core.orm_schema import counters, db_metadata, owners, pairs, pets


def rows(db: Database, table: sa.Table) -> list[tuple]:
    with db.transaction(readonly=True) as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))]


def test_the_tree():
    assert issubclass(DuplicateEntry, ConflictError)
    assert issubclass(ForeignKeyViolation, ConflictError)
    assert issubclass(MarkerNotFound, NotFound)
    assert issubclass(NotFound, LookupError)
    assert issubclass(InvalidQuery, ValueError)
    assert issubclass(InvalidValue, ValueError)
    assert issubclass(CompareAndSetFailed, ConstraintNotMet)
    for transient in (DeadlockError, LockTimeout, DBConnectionError):
        assert issubclass(transient, TransientError)
    for cls in (
        NotFound,
        ConflictError,
        InvalidQuery,
        InvalidValue,
        ConstraintNotMet,
        TransientError,
        DatabaseError,
    ):
        assert issubclass(cls, DBLayerError)
    error = DuplicateEntry("dup", constraint="uq", columns=["a", "b"])
    assert (str(error), error.constraint, error.columns) == ("dup", "uq", ("a", "b"))
    assert ConflictError("x").constraint is None
    assert ConflictError("x").columns == ()


# -- real errors, every backend -------------------------------------------------------------


def test_duplicate_key(db, backend, tables_of):
    tables_of(db, db_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 1, "name": "a"})
    with pytest.raises(DuplicateEntry) as info, db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 2, "name": "b"})
        conn.execute(sa.insert(counters), {"id": 3, "name": "a"})
    error = info.value
    if backend in ("postgresql", "mariadb"):
        assert error.constraint == "uq_db_counters_name"
    if backend != "mariadb":  # MariaDB names the key only
        assert error.columns == ("name",)
    assert rows(db, counters) == [(1, "a", 0)]


def test_duplicate_primary_key(db, backend, tables_of):
    tables_of(db, db_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 1, "name": "a"})
    with pytest.raises(DuplicateEntry) as info, db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 1, "name": "b"})
    assert info.value.constraint == {"postgresql": "pk_db_counters", "mariadb": "PRIMARY"}.get(
        backend
    )
    if backend != "mariadb":
        assert info.value.columns == ("id",)
    assert rows(db, counters) == [(1, "a", 0)]


def test_duplicate_on_a_composite_unique(db, backend, tables_of):
    tables_of(db, db_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(pairs), {"id": 1, "a": "x", "b": "y"})
        conn.execute(sa.insert(pairs), {"id": 2, "a": "x", "b": "z"})
    with pytest.raises(DuplicateEntry) as info, db.transaction() as conn:
        conn.execute(sa.insert(pairs), {"id": 3, "a": "x", "b": "y"})
    if backend in ("postgresql", "mariadb"):
        assert info.value.constraint == "uq_db_pairs_a_b"
    if backend != "mariadb":
        assert info.value.columns == ("a", "b")


@pytest.mark.parametrize("value", ["deadlock", "database is locked", "foreign key", "Key (x)="])
def test_a_duplicate_quoting_alarming_words_is_still_a_duplicate(db, tables_of, value):
    tables_of(db, db_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 1, "name": value})
    with pytest.raises(DuplicateEntry) as info, db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 2, "name": value})
    assert not isinstance(info.value, TransientError)


def test_foreign_key_violation(db, tables_of):
    tables_of(db, db_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(owners), {"id": 1, "name": "o"})
        conn.execute(sa.insert(pets), {"id": 1, "owner_id": 1})
    with pytest.raises(ForeignKeyViolation), db.transaction() as conn:
        conn.execute(sa.insert(pets), {"id": 2, "owner_id": 99})
    with pytest.raises(ForeignKeyViolation), db.transaction() as conn:
        conn.execute(sa.delete(owners).where(owners.c.id == 1))
    with pytest.raises(ForeignKeyViolation), db.transaction() as conn:
        conn.execute(sa.update(pets).values(owner_id=42))
    assert rows(db, owners) == [(1, "o")]
    assert rows(db, pets) == [(1, 1)]


def test_not_null_is_a_conflict(db, tables_of):
    tables_of(db, db_metadata)
    with pytest.raises(ConflictError) as info, db.transaction() as conn:
        conn.execute(sa.insert(pairs), {"id": 1, "a": "x", "b": "y"})
        conn.execute(sa.insert(pairs), {"id": 2, "a": None, "b": "y"})
    assert type(info.value) is ConflictError
    assert rows(db, pairs) == []


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
@pytest.mark.parametrize(
    "values", [{"short": "toolong"}, {"small": 2**40}], ids=["long-string", "big-integer"]
)
def test_a_value_the_column_cannot_hold_is_invalid_value(db, tables_of, values):
    tables_of(db, db_metadata)
    with pytest.raises(InvalidValue), db.transaction() as conn:
        conn.execute(sa.insert(pairs), {"id": 1, "a": "ok", "b": "ok"})
        conn.execute(sa.insert(pairs), {"id": 2, "a": "x", "b": "y", **values})
    assert rows(db, pairs) == []


checked_metadata = new_metadata()
checked = sa.Table(
    "err_checked",
    checked_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("size", sa.Integer),
    sa.CheckConstraint("size >= 0", name="size_not_negative"),
)


def test_a_value_a_check_constraint_refuses_is_invalid_value(db, tables_of):
    tables_of(db, checked_metadata)
    with pytest.raises(InvalidValue), db.transaction() as conn:
        conn.execute(sa.insert(checked), {"id": 1, "size": 1})
        conn.execute(sa.insert(checked), {"id": 2, "size": -1})
    assert rows(db, checked) == []


def test_no_row_from_one_is_not_found(db, tables_of):
    tables_of(db, db_metadata)
    with pytest.raises(NotFound), db.transaction() as conn:
        conn.execute(sa.select(counters).where(counters.c.id == 1)).one()


def test_sql_errors_are_database_errors(db, tables_of):
    tables_of(db, db_metadata)
    with pytest.raises(DatabaseError), db.transaction() as conn:
        conn.exec_driver_sql("SELECT no_such_column FROM db_counters")
    with pytest.raises(DBLayerError), db.transaction() as conn:
        conn.exec_driver_sql("THIS IS NOT SQL")


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_a_lock_held_too_long_is_lock_timeout(db, backend, run_dir, tables_of):
    tables_of(db, db_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 1, "name": "a", "value": 1})
    with Database(backend_url(backend, run_dir), lock_timeout=0.3) as other:
        with db.transaction() as holder:
            holder.execute(sa.update(counters).values(value=2))
            with pytest.raises(LockTimeout), other.transaction() as conn:
                conn.execute(sa.update(counters).values(value=3))
        with other.transaction() as conn:  # free again once the holder committed
            conn.execute(sa.update(counters).values(value=counters.c.value + 10))
    assert rows(db, counters) == [(1, "a", 12)]


# -- translation of hand-built driver errors ----------------------------------------------


def wrapped(orig: BaseException, kind: type[sa_exc.DBAPIError] = sa_exc.OperationalError):
    """What SQLAlchemy raises around a driver error."""
    return kind("UPDATE t SET x=1", {}, orig)


def pg(cls: type[psycopg.Error], message: str) -> psycopg.Error:
    return cls(message)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (wrapped(pg(psycopg.errors.DeadlockDetected, "deadlock detected")), DeadlockError),
        (wrapped(pg(psycopg.errors.SerializationFailure, "could not serialize")), DeadlockError),
        (
            wrapped(pg(psycopg.errors.LockNotAvailable, "canceling statement due to lock timeout")),
            LockTimeout,
        ),
        (
            wrapped(
                pg(
                    psycopg.errors.UniqueViolation,
                    "duplicate key value violates unique "
                    'constraint "uq_t_a"\nDETAIL:  Key (a)=(deadlock) already exists.',
                ),
                sa_exc.IntegrityError,
            ),
            DuplicateEntry,
        ),
        (
            wrapped(
                pg(psycopg.errors.ForeignKeyViolation, "violates foreign key"),
                sa_exc.IntegrityError,
            ),
            ForeignKeyViolation,
        ),
        (
            wrapped(pg(psycopg.errors.NotNullViolation, "null value"), sa_exc.IntegrityError),
            ConflictError,
        ),
        (
            wrapped(
                pg(psycopg.errors.StringDataRightTruncation, "value too long"), sa_exc.DataError
            ),
            InvalidValue,
        ),
        (wrapped(pg(psycopg.errors.AdminShutdown, "terminating connection")), DBConnectionError),
        (
            wrapped(pg(psycopg.errors.InvalidPassword, "password authentication failed")),
            DBConnectionError,
        ),
        (
            wrapped(
                pg(psycopg.errors.UndefinedTable, 'relation "x" does not exist'),
                sa_exc.ProgrammingError,
            ),
            DatabaseError,
        ),
        (
            wrapped(pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")),
            DeadlockError,
        ),
        (wrapped(pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")), LockTimeout),
        (
            wrapped(
                pymysql.err.IntegrityError(1062, "Duplicate entry 'deadlock' for key 'uq'"),
                sa_exc.IntegrityError,
            ),
            DuplicateEntry,
        ),
        (
            wrapped(
                pymysql.err.IntegrityError(1452, "Cannot add or update a child row"),
                sa_exc.IntegrityError,
            ),
            ForeignKeyViolation,
        ),
        (
            wrapped(
                pymysql.err.IntegrityError(1451, "Cannot delete or update a parent row"),
                sa_exc.IntegrityError,
            ),
            ForeignKeyViolation,
        ),
        (
            wrapped(
                pymysql.err.IntegrityError(1048, "Column 'a' cannot be null"), sa_exc.IntegrityError
            ),
            ConflictError,
        ),
        (
            wrapped(pymysql.err.DataError(1406, "Data too long for column 'a'"), sa_exc.DataError),
            InvalidValue,
        ),
        (
            wrapped(pymysql.err.OperationalError(2006, "MySQL server has gone away")),
            DBConnectionError,
        ),
        (
            wrapped(pymysql.err.OperationalError(2013, "Lost connection to server")),
            DBConnectionError,
        ),
        (
            wrapped(pymysql.err.OperationalError(1045, "Access denied for user 'x'")),
            DBConnectionError,
        ),
        (
            wrapped(
                pymysql.err.ProgrammingError(1146, "Table 'test.x' doesn't exist"),
                sa_exc.ProgrammingError,
            ),
            DatabaseError,
        ),
        (wrapped(sqlite3.OperationalError("database is locked")), LockTimeout),
        (wrapped(sqlite3.OperationalError("database table is locked")), LockTimeout),
        (
            wrapped(sqlite3.IntegrityError("UNIQUE constraint failed: t.a"), sa_exc.IntegrityError),
            DuplicateEntry,
        ),
        (
            wrapped(sqlite3.IntegrityError("FOREIGN KEY constraint failed"), sa_exc.IntegrityError),
            ForeignKeyViolation,
        ),
        (
            wrapped(
                sqlite3.IntegrityError("NOT NULL constraint failed: t.a"), sa_exc.IntegrityError
            ),
            ConflictError,
        ),
        (wrapped(sqlite3.OperationalError("unable to open database file")), DBConnectionError),
        (wrapped(sqlite3.OperationalError("no such table: x")), DatabaseError),
        (sa_exc.NoResultFound("No row was found"), NotFound),
        (sa_exc.MultipleResultsFound("Multiple rows"), DatabaseError),
        (sa_exc.ArgumentError("bad argument"), InvalidValue),
        (sa_exc.StatementError("bad parameter", "SELECT 1", {}, TypeError("bad")), InvalidValue),
        (sa_exc.TimeoutError("QueuePool limit reached"), DBConnectionError),
        (sa_exc.InvalidRequestError("odd request"), DatabaseError),
        (ValueError("not even SQLAlchemy"), DatabaseError),
    ],
)
def test_translate(error, expected):
    translated = translate(error)
    assert type(translated) is expected
    assert translated.__cause__ is error


def test_translate_reads_constraint_and_columns():
    pg_error = translate(
        wrapped(
            pg(
                psycopg.errors.UniqueViolation,
                'duplicate key value violates unique constraint "uq_t_a_b"\n'
                "DETAIL:  Key (a, b)=(1, 2) already exists.",
            ),
            sa_exc.IntegrityError,
        )
    )
    assert (pg_error.constraint, pg_error.columns) == ("uq_t_a_b", ("a", "b"))
    quoted = translate(
        wrapped(
            pg(
                psycopg.errors.UniqueViolation,
                'duplicate key value violates unique constraint "uq_s"\n'
                'DETAIL:  Key (host, "binary")=(h, b) already exists.',
            ),
            sa_exc.IntegrityError,
        )
    )
    assert quoted.columns == ("host", "binary")
    for message in (
        "Duplicate entry 'x' for key 'uq_t_a'",
        "Duplicate entry 'x' for key 't.uq_t_a'",  # MySQL 8 prefixes the table
        "Duplicate entry 'x for key 'y'' for key 'uq_t_a'",
    ):  # the value is quoted
        my_error = translate(
            wrapped(pymysql.err.IntegrityError(1062, message), sa_exc.IntegrityError)
        )
        assert my_error.constraint == "uq_t_a"
    lite = translate(
        wrapped(sqlite3.IntegrityError("UNIQUE constraint failed: t.a, t.b"), sa_exc.IntegrityError)
    )
    assert (lite.constraint, lite.columns) == (None, ("a", "b"))


def test_translate_keeps_dblayer_errors():
    mine = InvalidValue("mine")
    assert translate(mine) is mine
    # An error raised by one of dblayer's types while SQLAlchemy bound a parameter.
    assert translate(sa_exc.StatementError("x", "SELECT 1", {}, mine)) is mine


def test_translate_masks_secrets():
    error = wrapped(pymysql.err.OperationalError(2003, "cannot reach u:hunter2@h, hunter2"))
    translated = translate(error, secret="hunter2")
    assert "hunter2" not in str(translated)
    assert "***" in str(translated)
    both = translate(
        wrapped(sqlite3.OperationalError("alpha beta gamma")),
        secret="alpha",
        secrets=["gamma", None],
    )
    assert str(both) == "*** beta ***"
    assert mask_secret("a-b-a", "a", None, "") == "***-b-***"
    assert mask_secret("nothing", None) == "nothing"


def test_translate_never_raises():
    class Weird(Exception):
        def __str__(self) -> str:
            return "weird"

    for error in (Weird(), wrapped(Weird()), sa_exc.DBAPIError("x", {}, Weird())):
        assert isinstance(translate(error), DBLayerError)


def test_unopenable_sqlite_file(tmp_path: Path):
    with (
        Database(f"sqlite:///{tmp_path}/missing-dir/x.db") as db,
        pytest.raises(DBConnectionError),
        db.transaction(),
    ):
        pass

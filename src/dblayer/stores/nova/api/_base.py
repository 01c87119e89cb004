"""The building blocks every nova API function is made of.

Each public function is wrapped by ``api(check)``: the access check, then the
whole call in one unit of work (one transaction, replayed by core on deadlocks,
lock timeouts and lost connections; a call made inside another joins it).
Inside, ``model_query`` builds nova's SELECT (read_deleted, project_only), and
``first``/``fetch_all``/``create``/``update``/``soft_delete_where`` run it on the
unit's Session (``execute`` runs Core statements on its Connection). Rows come back as model objects that stay usable after the call:
``settle`` fills every relationship the call did not load with an empty value.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from dblayer.core import InvalidQuery, live, soft_delete, soft_deleted, translate

from .. import exception
from ..context import check_admin, check_context, is_user_context
from ..facade import get_database, get_session

F = TypeVar("F", bound=Callable[..., Any])

# Access checks a function declares: admin only, or any admin or user context.
ADMIN = check_admin
USER = check_context

# nova.db.api.MAX_INT: the largest signed 32-bit integer (ids, limits).
MAX_INT = 0x7FFFFFFF

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def api(check: Callable[[Any], None] | None = None, *, readonly: bool = False) -> Callable[[F], F]:
    """Decorator for a public call: ``check(context)``, then the call in one unit of work.

    A ``use_slave=True`` argument sends the unit to the reader when one is configured.
    ``readonly`` marks a call that only reads: its unit takes no write lock (SQLite's
    plain BEGIN), and it stays on the writer unless ``use_slave`` asks for the reader.
    """

    def wrap(fn: F) -> F:
        params = list(inspect.signature(fn).parameters)
        slave_at = params.index("use_slave") - 1 if "use_slave" in params else None

        @functools.wraps(fn)
        def call(context: Any, *args: Any, **kwargs: Any) -> Any:
            if check is not None:
                check(context)
            use_slave = False
            if slave_at is not None:
                if "use_slave" in kwargs:
                    use_slave = bool(kwargs["use_slave"])
                elif len(args) > slave_at:
                    use_slave = bool(args[slave_at])
            db = get_database()
            # A read-only unit goes to the reader when there is one: only when asked to.
            read_only = use_slave or (readonly and db.reader_engine is None)
            # A Core unit: the ORM Session is made on first use (get_session), so calls that
            # run Core statements only never pay for one.
            return db.run(lambda _conn: fn(context, *args, **kwargs), readonly=read_only)

        call.__wrapped_api__ = fn  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    return wrap


# -- reading ---------------------------------------------------------------------------------


def read_deleted_clause(model: Any, read_deleted: str) -> sa.ColumnElement[bool] | None:
    """The WHERE clause for ``read_deleted`` ('no', 'yes' or 'only') on ``model``."""
    if read_deleted == "no":
        return live(model)
    if read_deleted == "yes":
        return None
    if read_deleted == "only":
        return soft_deleted(model)
    raise InvalidQuery(f"read_deleted must be 'no', 'yes' or 'only', not {read_deleted!r}")


def model_query(
    context: Any,
    model: Any,
    *columns: Any,
    read_deleted: str | None = None,
    project_only: bool | str = False,
    base_model: Any = None,
) -> sa.Select[Any]:
    """nova's base SELECT of ``model`` (or of ``columns``) as ``context`` may see it.

    ``read_deleted`` defaults to the context's; ``project_only`` limits a user context
    to its project's rows (``'allow_none'``: also rows of no project).
    """
    base = base_model if base_model is not None else model
    stmt = sa.select(*columns) if columns else sa.select(model)
    clause = read_deleted_clause(base, read_deleted or context.read_deleted)
    if clause is not None:
        stmt = stmt.where(clause)
    if project_only and is_user_context(context):
        project = base.project_id == context.project_id
        if project_only == "allow_none":
            project = sa.or_(project, base.project_id.is_(None))
        stmt = stmt.where(project)
    return stmt


def connection() -> Connection:
    """The unit of work's Connection, the Session's pending objects (if it has one)
    flushed first so that Core statements see them.

    Core on the Connection costs a fraction of the same statement through the Session:
    the hot paths run their statements here.
    """
    return get_database().current_connection()


def execute(stmt: Any, params: Any = None, *, conn: Connection | None = None) -> Any:
    """Run a Core statement on ``conn`` (default: the unit's Connection); driver errors come
    out as core errors."""
    try:
        return (conn if conn is not None else connection()).execute(stmt, params)
    except sa_exc.SQLAlchemyError as e:
        raise translate(e) from e


def flush() -> None:
    """Flush the unit's Session; driver errors come out as core errors."""
    try:
        get_session().flush()
    except sa_exc.SQLAlchemyError as e:
        raise translate(e) from e


def first(stmt: sa.Select[Any]) -> Any:
    """The first object (or value) ``stmt`` selects, settled; None when there is none."""
    try:
        row = get_session().scalars(stmt.limit(1)).unique().first()
    except sa_exc.SQLAlchemyError as e:
        raise translate(e) from e
    return settle(row)


def fetch_all(stmt: sa.Select[Any]) -> list[Any]:
    """Every object (or value) ``stmt`` selects, settled."""
    try:
        rows = list(get_session().scalars(stmt).unique())
    except sa_exc.SQLAlchemyError as e:
        raise translate(e) from e
    return settle_all(rows)


def join_options(what: str, columns_to_join: Any, joins: Mapping[str, Any]) -> list[Any]:
    """``selectinload`` options for the names in ``columns_to_join`` (None: none), each one a
    key of ``joins`` (name -> relationship attribute); InvalidQuery naming the allowed ones."""
    if columns_to_join is None:
        return []
    if isinstance(columns_to_join, str | bytes) or not isinstance(columns_to_join, Iterable):
        raise InvalidQuery(f"columns_to_join must be a list of names, got {columns_to_join!r}")
    names = list(columns_to_join)
    unknown = [n for n in names if not isinstance(n, str) or n not in joins]
    if unknown:
        raise InvalidQuery(
            f"{what} cannot join {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(joins))}"
        )
    return [selectinload(joins[name]) for name in dict.fromkeys(names)]


# -- writing ---------------------------------------------------------------------------------


@functools.cache
def column_names(model: Any) -> frozenset[str]:
    """The names of ``model``'s mapped columns (looked up once per model)."""
    return frozenset(attr.key for attr in sa.inspect(model).column_attrs)


def check_columns(model: Any, values: Mapping[str, Any]) -> None:
    """Reject keys of ``values`` that are not columns of ``model`` (InvalidQuery)."""
    if not isinstance(values, Mapping):
        raise InvalidQuery(f"values must be a dict of column -> value, got {values!r}")
    allowed = column_names(model)
    unknown = sorted(str(k) for k in values if k not in allowed)
    if unknown:
        raise InvalidQuery(
            f"{model.__name__} has no column {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def columns_only(model: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """The items of ``values`` that name columns of ``model`` (the rest dropped)."""
    allowed = column_names(model)
    return {k: v for k, v in values.items() if k in allowed}


def create(model: Any, values: Mapping[str, Any]) -> Any:
    """Insert a ``model`` row from ``values`` (column names only) and return it, settled."""
    check_columns(model, values)
    row = model()
    for key, value in values.items():
        setattr(row, key, value)
    session = get_session()
    session.add(row)
    flush()
    return settle(row)


def update(row: Any, values: Mapping[str, Any]) -> Any:
    """Set ``values`` (column names only) on a loaded ``row``, flush, and return it."""
    check_columns(type(row), values)
    for key, value in values.items():
        setattr(row, key, value)
    flush()
    return row


def soft_delete_where(model: Any, *where: sa.ColumnElement[bool]) -> int:
    """Soft-delete the live rows of ``model`` matching ``where``; return how many."""
    session = get_session()
    try:
        return soft_delete(session, model, *where)
    except sa_exc.SQLAlchemyError as e:
        raise translate(e) from e


def replace_key_values(
    model: Any, owner: str, owner_value: Any, pairs: Mapping[str, Any], *, delete: bool
) -> None:
    """Make the live key/value rows of ``model`` whose ``owner`` column is ``owner_value``
    hold ``pairs``: existing keys updated in place, missing keys inserted and, with
    ``delete``, keys absent from ``pairs`` soft-deleted (nova's metadata update)."""
    table = model.__table__
    owned = table.c[owner] == owner_value
    rows = execute(
        sa.select(table.c.id, table.c.key, table.c.value).where(owned, live(table))
    ).all()
    if delete:
        doomed = [r.id for r in rows if r.key not in pairs]
        if doomed:
            soft_delete_where(model, table.c.id.in_(doomed))
    have: dict[str, list[Any]] = {}
    for r in rows:
        have.setdefault(r.key, []).append(r)
    new_rows = []
    for key, value in pairs.items():
        current = have.get(key)
        if current is None:
            new_rows.append({owner: owner_value, "key": key, "value": value})
            continue
        stale = [r.id for r in current if r.value != value]
        if stale:
            execute(sa.update(table).where(table.c.id.in_(stale)).values(value=value))
    if new_rows:
        execute(sa.insert(table), new_rows)


@contextmanager
def savepoint() -> Iterator[None]:
    """A SAVEPOINT around a write that may be refused (a duplicate key, a foreign key), so
    that the refusal leaves the unit's transaction usable (PostgreSQL aborts it otherwise)
    and the Session forgets what the block added."""
    current = get_session()
    with current.begin_nested():
        # The Session emits SAVEPOINT lazily, on its next use of the connection; Core
        # statements on the Connection would run before it.
        current.connection()
        yield


def session() -> Session:
    """The unit of work's Session (for the odd call the helpers above do not cover)."""
    return get_session()


# -- values ----------------------------------------------------------------------------------


def require_uuid(value: Any) -> str:
    """``value`` if it is a canonical UUID string (lower case, hyphenated), else InvalidUUID."""
    try:
        if isinstance(value, str) and str(uuid.UUID(value)) == value:
            return value
    except ValueError:
        pass
    raise exception.InvalidUUID(uuid=value)


def is_uuid_like(value: Any) -> bool:
    """Whether ``value`` is a canonical UUID string."""
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def parse_datetime(value: Any) -> Any:
    """A naive datetime from ``value`` (a datetime or nova's ISO string); tzinfo dropped.

    nova assumed incoming times were UTC and dropped the zone without converting.
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.strptime(value, DATETIME_FORMAT)
        except ValueError:
            raise InvalidQuery(f"{value!r} is not a time in the form {DATETIME_FORMAT}") from None
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.replace(tzinfo=None)
    return value


def parse_datetimes(values: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """``values`` with each of ``keys`` present parsed by ``parse_datetime`` (in place)."""
    for key in keys:
        if key in values and values[key] is not None:
            values[key] = parse_datetime(values[key])
    return values


# -- objects that stay usable ----------------------------------------------------------------


@functools.cache
def _relationships(cls: type) -> tuple[tuple[str, bool], ...]:
    return tuple((rel.key, bool(rel.uselist)) for rel in sa.inspect(cls).relationships)


def settle(row: Any, _seen: set[int] | None = None) -> Any:
    """Give every relationship of ``row`` that was not loaded an empty value ([] or None),
    through the related objects that were, so nothing lazy-loads after the session closes."""
    if row is None or not hasattr(row, "_sa_instance_state"):
        return row
    seen = _seen if _seen is not None else set()
    if id(row) in seen:
        return row
    seen.add(id(row))
    loaded = row.__dict__
    for key, uselist in _relationships(type(row)):
        value = loaded.get(key, _MISSING)
        if value is _MISSING:
            set_committed_value(row, key, [] if uselist else None)
        elif uselist:
            for child in value:
                settle(child, seen)
        elif value is not None:
            settle(value, seen)
    return row


def settle_all(rows: list[Any]) -> list[Any]:
    """``settle`` every row of ``rows``; return the list."""
    seen: set[int] = set()
    for row in rows:
        settle(row, seen)
    return rows


_MISSING = object()

"""DatabaseClient (blitz.data.database): the desktop client's database, on any backend.

Every call is one unit of work on a core Database, committed when it returns.
Objects returned (by add, add_many, get, find, all and the helpers) are loaded:
their columns can be read after the call. Relationships (``Reading.category``,
``Category.readings``) are not loaded unless a helper says so.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.orm import make_transient_to_detached, selectinload
from sqlalchemy.orm.attributes import instance_state

from dblayer.core import (
    Database,
    InvalidQuery,
    InvalidValue,
    NotFound,
    equality,
    insert_ignore,
    insert_many,
    upsert,
    url_for_path,
)
from dblayer.core.upsert import insert_many_ids, paused_gc

from . import fixtures as _fixtures
from .models import (
    MODELS,
    BlitzBase,
    Cache,
    Category,
    Config,
    Notification,
    Reading,
    Session,
    as_text,
    blitz_timestamp,
)

if TYPE_CHECKING:
    from .server import DatabaseServer

M = TypeVar("M", bound=BlitzBase)

logger = logging.getLogger(__name__)

CACHE_LIMIT = 50  # values per variable get_cache returns
_TABLES = {model: model.__table__ for model in MODELS}
# Tables in dependency order: a category is inserted before the readings that name it.
_RELATIONSHIPS = {
    model: tuple(rel.key for rel in sa.inspect(model).relationships) for model in MODELS
}
_RELATED = {model: frozenset(keys) for model, keys in _RELATIONSHIPS.items()}
_ORDER = {table: i for i, table in enumerate(BlitzBase.metadata.sorted_tables)}


# Per model: the columns add_many writes besides id, and a getter of their values.
def _getter(names: tuple[str, ...]) -> Any:
    get = operator.itemgetter(*names)
    return get if len(names) > 1 else lambda values: (get(values),)


_COLUMNS = {
    model: (names, _getter(names))
    for model in MODELS
    for names in [tuple(c.key for c in model.__table__.c if c.key != "id")]
}


def database_url(path: Any) -> str | URL:
    """The URL for a blitz ``path``: ':memory:' (default), a SQLite file, or any SQLAlchemy URL."""
    return url_for_path(path)


def _model(model: Any) -> type[BlitzBase]:
    if not (isinstance(model, type) and model in _TABLES):
        names = ", ".join(m.__name__ for m in MODELS)
        raise InvalidQuery(f"not a blitz model: {model!r}; allowed: {names}")
    return model


def _integer(value: Any, what: str, *, nullable: bool = False) -> int | None:
    """An int from an int or its text (the wire sends text); 'None' or None is NULL if allowed."""
    if nullable and (value is None or value == "None"):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    allowed = "an integer, its text, or None/'None'" if nullable else "an integer or its text"
    raise InvalidValue(f"{what} must be {allowed}, got {value!r}")


def _timestamp(value: Any, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidValue(f"{what} must be a blitz timestamp (ms, a number), got {value!r}")
    return value


class FindResult(Sequence[M]):
    """The matches of ``find``: counted, indexed and iterated like the original's Query.

    Each use runs its own query (``count()`` a COUNT, ``res[0]`` a LIMIT 1), ordered by id.
    """

    def __init__(self, client: DatabaseClient, model: type[M], where: list[Any]) -> None:
        self._client = client
        self._model = model
        self._where = where

    def _select(self) -> sa.Select[Any]:
        return sa.select(self._model).where(*self._where).order_by(self._model.id)

    def count(self) -> int:  # type: ignore[override]
        """How many rows match."""
        stmt = sa.select(sa.func.count()).select_from(self._model).where(*self._where)
        return self._client._scalar(stmt)

    def __len__(self) -> int:
        return self.count()

    def all(self) -> list[M]:
        """Every match, as a list."""
        return self._client._objects(self._select())

    def first(self) -> M | None:
        """The first match (lowest id), or None."""
        found = self._client._objects(self._select().limit(1))
        return found[0] if found else None

    def __iter__(self) -> Iterator[M]:
        return iter(self.all())

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self.all()[index]
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"indices must be integers or slices, not {type(index).__name__}")
        if index < 0:
            return self.all()[index]
        found = self._client._objects(self._select().offset(index).limit(1))
        if not found:
            raise IndexError("find result index out of range")
        return found[0]

    def __bool__(self) -> bool:
        return self.first() is not None

    def __repr__(self) -> str:
        return f"<FindResult of {self._model.__name__}>"


class DatabaseClient:
    """Database operations of the blitz client, on SQLite by default or any SQLAlchemy URL."""

    def __init__(self, verbose: bool = False, path: str | URL = ":memory:") -> None:
        """Open ``path`` (':memory:', a SQLite file or a URL; ``verbose`` echoes SQL) and create
        the tables that are missing."""
        self.db = Database(database_url(path), echo=bool(verbose))
        self.create_tables()

    def __repr__(self) -> str:
        return f"DatabaseClient({self.db.url!r})"

    def close(self) -> None:
        """Close the database's connections."""
        self.db.dispose()

    # -- plumbing ---------------------------------------------------------------------------

    def _objects(self, stmt: Any) -> list[Any]:
        with self.db.session(readonly=True) as session:
            return list(session.scalars(stmt))

    def _scalar(self, stmt: Any) -> Any:
        with self.db.transaction(readonly=True) as conn:
            return conn.execute(stmt).scalar()

    # -- schema -----------------------------------------------------------------------------

    def create_tables(self, force_drop: bool = False) -> None:
        """Create the blitz tables; with ``force_drop`` drop them (and their rows) first."""
        if force_drop:
            self.db.drop_all(BlitzBase.metadata)
        self.db.create_all(BlitzBase.metadata)

    # -- generic helpers --------------------------------------------------------------------

    def add(self, item: M) -> M:
        """Add one item; return it with its id populated."""
        return self.add_many([item])[0]

    def add_many(self, items: Iterable[M]) -> list[M]:
        """Add the items in one transaction; return the same list, ids populated.

        New items go in by bulk INSERT, one executemany per model; items already
        stored (returned by an earlier call) or carrying related objects go through
        the ORM, so changed attributes are saved. Nothing is kept if any item fails.
        """
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise InvalidValue(f"items must be a list of blitz model instances, got {items!r}")
        items = list(items)
        # Every new object gets an identity key that outlives the call: see paused_gc.
        with paused_gc(len(items) >= _GC_PAUSE_MIN):
            self._add_many(items)
        return items

    def _add_many(self, items: list[M]) -> None:
        bulk: dict[type[BlitzBase], _Batch] = {}
        orm: list[BlitzBase] = []
        for item in items:
            batch = bulk.get(type(item))
            if batch is None:
                if type(item) not in _TABLES:
                    raise InvalidValue(f"not an instance of a blitz model: {item!r}")
                batch = bulk[type(item)] = _Batch(type(item))
            state = instance_state(item)
            # New and carrying no related objects (else the ORM must cascade them).
            if state.key is None and batch.related.isdisjoint(item.__dict__):
                if state.session_id is not None:
                    raise InvalidValue(f"object belongs to another session: {item!r}")
                batch.add(item)
            else:
                orm.append(item)
        with self.db.session() as session:
            for model in sorted(bulk, key=lambda m: _ORDER[_TABLES[m]]):
                bulk[model].insert(session.connection())
            for item in orm:
                session.add(item)
            session.flush()
        # Only now, committed, do the new objects get their ids (a failed call leaves none).
        for batch in bulk.values():
            batch.detach()

    def all(self, model: type[M]) -> list[M]:
        """Every row of ``model``, by id."""
        model = _model(model)
        return self._objects(sa.select(model).order_by(model.id))

    def find(self, model: type[M], query: Mapping[str, Any]) -> FindResult[M]:
        """Rows of ``model`` whose fields equal ``query``'s values ({"field": value}, None
        matches NULL); an unknown field raises InvalidQuery. The result is query-like:
        ``count()``, ``first()``, ``all()``, indexing and iteration."""
        model = _model(model)
        if isinstance(query, Mapping) and "value" in query:
            query = {**query, "value": as_text(query["value"])}  # stored as text
        return FindResult(self, model, equality(model, query))

    def get(self, model: type[M], query: Mapping[str, Any]) -> M | None:
        """The first (lowest id) row of ``model`` matching ``query``, or None."""
        return self.find(model, query).first()

    def get_by_id(self, model: type[M], model_id: int) -> M | None:
        """The row of ``model`` with this id, or None."""
        return self.get(model, {"id": model_id})

    # -- config -----------------------------------------------------------------------------

    def get_config(self, key: str) -> Config | None:
        """The Config row for ``key`` (the first, if several), or None."""
        return self.get(Config, {"key": key})

    def set_config(self, key: str, value: Any, do_update: bool = True) -> None:
        """Store ``value`` (as text) under ``key``: insert it if missing, else, with
        ``do_update``, replace the value (of every row with that key), committed.

        The original lost updates of existing keys; this follows the document.
        """
        if not isinstance(key, str):
            raise InvalidValue(f"config key must be a string, got {key!r}")
        table = _TABLES[Config]
        with self.db.transaction() as conn:
            exists = conn.execute(sa.select(table.c.id).where(table.c.key == key).limit(1)).first()
            if exists is None:
                insert_many(conn, table, [{"key": key, "value": as_text(value)}])
            elif do_update:
                conn.execute(
                    sa.update(table).where(table.c.key == key).values(value=as_text(value))
                )

    # -- categories -------------------------------------------------------------------------

    def get_or_create_category(self, key: str) -> int:
        """The id of the category named ``key``, created if missing."""
        if not isinstance(key, str):
            raise InvalidValue(f"category name must be a string, got {key!r}")
        table = _TABLES[Category]
        with self.db.transaction() as conn:
            insert_ignore(conn, table, [{"variableName": key}], key=["variableName"])
            return conn.execute(
                sa.select(table.c.id).where(table.c.variableName == key)
            ).scalar_one()

    # -- errors -----------------------------------------------------------------------------

    def log_error(self, description: str, severity: int = 1) -> Notification:
        """Record an error for the user (timeLogged = now); return the Notification."""
        if isinstance(severity, bool) or not isinstance(severity, int):
            raise InvalidValue(f"severity must be an integer, got {severity!r}")
        return self.add(
            Notification(timeLogged=blitz_timestamp(), severity=severity, description=description)
        )

    def clear_errors(self) -> None:
        """Delete every notification."""
        with self.db.transaction() as conn:
            conn.execute(sa.delete(_TABLES[Notification]))

    def handle_error(self, err_id: int) -> None:
        """Delete the notification ``err_id`` (a missing id changes nothing)."""
        err_id = _integer(err_id, "err_id")
        table = _TABLES[Notification]
        with self.db.transaction() as conn:
            conn.execute(sa.delete(table).where(table.c.id == err_id))

    # -- readings and cache -----------------------------------------------------------------

    def add_reading(
        self, session_id: int, time_logged: int, category_id: int, value: Any
    ) -> Reading:
        """Add a reading (``value`` stored as text); return it."""
        return self.add(
            Reading(
                sessionId=_integer(session_id, "session_id"),
                timeLogged=_timestamp(time_logged, "time_logged"),
                categoryId=_integer(category_id, "category_id", nullable=True),
                value=value,
            )
        )

    def add_cache(self, time_logged: int, category_id: int, value: Any) -> Cache:
        """Add a cache row; return the Cache (the document says Reading: it is the Cache row)."""
        return self.add(
            Cache(
                timeLogged=_timestamp(time_logged, "time_logged"),
                categoryId=_integer(category_id, "category_id", nullable=True),
                value=value,
            )
        )

    def clear_cache(self) -> None:
        """Delete every cache row; returns None (the document's "Reading" is a copy slip)."""
        with self.db.transaction() as conn:
            conn.execute(sa.delete(_TABLES[Cache]))

    def get_cache(self, since: int | float = 0) -> list[list[Cache]]:
        """The newest cache values, at most 50 per variable; with ``since`` > 0 only those
        logged at or after it (a blitz timestamp, ms).

        Follows the document: a list per variable (by categoryId), newest value first
        in each. (The original returned one flat list in that order.)
        """
        since = _timestamp(since, "since")
        cache = _TABLES[Cache]
        rank = (
            sa.func.row_number()
            .over(
                partition_by=cache.c.categoryId,
                order_by=(cache.c.timeLogged.desc(), cache.c.id.desc()),
            )
            .label("rank")
        )
        inner = sa.select(cache.c.id, rank)
        if since > 0:
            inner = inner.where(cache.c.timeLogged >= since)
        ranked = inner.subquery()
        stmt = (
            sa.select(Cache)
            .join(ranked, ranked.c.id == Cache.id)
            .where(ranked.c.rank <= CACHE_LIMIT)
            .order_by(Cache.categoryId, ranked.c.rank)
        )
        groups: dict[Any, list[Cache]] = {}
        for row in self._objects(stmt):
            groups.setdefault(row.categoryId, []).append(row)
        return list(groups.values())

    def get_cache_variables(self) -> list[Cache]:
        """The variables in the cache: one Cache object per variable, its newest value, by
        categoryId. Follows the document (Cache objects); the original returned the
        Category objects instead (``get_by_id(Category, c.categoryId)`` gives them)."""
        return [values[0] for values in self.get_cache()]

    def get_session_variables(self, session_id: int) -> list[Reading]:
        """The variables logged in session ``session_id``: one Reading per variable (its
        newest), by categoryId, with ``reading.category`` loaded. Follows the document
        (Readings); the original returned the Category objects (``reading.category``)."""
        session_id = _integer(session_id, "session_id")
        reading = _TABLES[Reading]
        rank = (
            sa.func.row_number()
            .over(
                partition_by=reading.c.categoryId,
                order_by=(reading.c.timeLogged.desc(), reading.c.id.desc()),
            )
            .label("rank")
        )
        ranked = sa.select(reading.c.id, rank).where(reading.c.sessionId == session_id).subquery()
        stmt = (
            sa.select(Reading)
            .join(ranked, ranked.c.id == Reading.id)
            .where(ranked.c.rank == 1)
            .order_by(Reading.categoryId)
            .options(selectinload(Reading.category))
        )
        return self._objects(stmt)

    def get_session_readings(self, session_id: int) -> list[Reading]:
        """The readings of session ``session_id``, in the order they were added."""
        session_id = _integer(session_id, "session_id")
        return self._objects(
            sa.select(Reading).where(Reading.sessionId == session_id).order_by(Reading.id)
        )

    # -- sessions ---------------------------------------------------------------------------

    def update_session_availability(self, session_id: int) -> None:
        """Mark session ``session_id`` (a ref_id) available if it has readings; NotFound if
        there is no such session."""
        session_id = _integer(session_id, "session_id")
        with self.db.transaction() as conn:
            if not _set_availability(conn, session_id):
                raise NotFound(f"no session with ref_id {session_id}")

    def update_session_list(self, sessions_list: Iterable[Any]) -> None:
        """Replace the session list with ``sessions_list``: entries ``[id, start, stop,
        count]`` as ints or as the wire's text (a running session's stop is ``'None'``),
        or one space-separated string each. ``available`` is whether readings are stored.

        Every entry is checked first: a bad one raises InvalidValue and changes nothing.
        """
        rows = _session_rows(sessions_list)
        session, reading = _TABLES[Session], _TABLES[Reading]
        with self.db.transaction() as conn:
            with_readings = set(conn.execute(sa.select(reading.c.sessionId).distinct()).scalars())
            conn.execute(sa.delete(session))
            for row in rows:
                row["available"] = row["ref_id"] in with_readings
            insert_many(conn, session, rows)

    def clear_session_data(self, session_id: int) -> None:
        """Delete the readings of session ``session_id`` (a ref_id) and mark it unavailable."""
        session_id = _integer(session_id, "session_id")
        reading = _TABLES[Reading]
        with self.db.transaction() as conn:
            conn.execute(sa.delete(reading).where(reading.c.sessionId == session_id))
            _set_availability(conn, session_id)

    def delete_session(self, session_id: int) -> None:
        """Delete session ``session_id`` (a ref_id) and its readings, committed (the original
        never committed the session's delete). Call the server's ``delete_session`` too, or
        the next session list brings the session back."""
        session_id = _integer(session_id, "session_id")
        reading, session = _TABLES[Reading], _TABLES[Session]
        with self.db.transaction() as conn:
            conn.execute(sa.delete(reading).where(reading.c.sessionId == session_id))
            conn.execute(sa.delete(session).where(session.c.ref_id == session_id))

    # -- fixtures ---------------------------------------------------------------------------

    def load_fixtures(self, testing: bool = False) -> None:
        """Add the configuration fixtures (existing keys keep their values); with ``testing``
        also the test categories, cache, readings and sessions (categories and sessions
        that exist already are kept)."""
        for fixture in _fixtures.CONFIG_FIXTURES:
            self.set_config(fixture["key"], fixture["value"], do_update=False)
        if not testing:
            return
        now = blitz_timestamp()
        tables = _TABLES
        with self.db.transaction() as conn:
            insert_ignore(conn, tables[Category], _fixtures.CATEGORY_FIXTURES, key=["variableName"])
            names = [f["variableName"] for f in _fixtures.CATEGORY_FIXTURES]
            found = dict(
                conn.execute(
                    sa.select(tables[Category].c.variableName, tables[Category].c.id).where(
                        tables[Category].c.variableName.in_(names)
                    )
                ).all()
            )
            ids = [found[name] for name in names]
            insert_many(conn, tables[Cache], _fixtures.resolve(_fixtures.CACHE_FIXTURES, now, ids))
            insert_many(
                conn, tables[Reading], _fixtures.resolve(_fixtures.READING_FIXTURES, now, ids)
            )
            sessions = _fixtures.resolve(_fixtures.SESSION_FIXTURES, now, ids)
            insert_ignore(conn, tables[Session], sessions, key=["ref_id"])

    # -- the server's data ------------------------------------------------------------------

    def sync_from_server(self, server: DatabaseServer, category: str = "raw") -> dict[int, int]:
        """Copy every session the server holds, and its messages as readings, in one
        transaction; return {session id: readings written}.

        Each raw message becomes one Reading of the category ``category`` (created if
        missing) with ``value`` the message and no timeLogged (only a board's parser
        knows the time inside a message), in the order logged. Sessions are upserted
        by ref_id. A session whose readings are all here already (the same messages in
        the same order) is skipped (0), one that changed has its readings replaced:
        syncing twice stores nothing twice.
        Sessions the server no longer has are left alone.
        """
        snapshot = server.snapshot()
        with self.db.transaction() as conn:
            category_id = _category_id(conn, category)
            stored = _stored_counts(conn, [s.ref_id for s in snapshot])
            written: dict[int, int] = {}
            for entry in snapshot:
                written[entry.ref_id] = _sync_session(conn, entry, stored, category_id)
            upsert(conn, _TABLES[Session], [s.row() for s in snapshot], key=["ref_id"])
        return written


# -- module helpers ---------------------------------------------------------------------------


# add_many pauses the garbage collector from this many items on.
_GC_PAUSE_MIN = 1000


class _Batch:
    """New objects of one model that add_many inserts in bulk, and their column values."""

    def __init__(self, model: type[BlitzBase]) -> None:
        self.model = model
        self.table = _TABLES[model]
        self.related = _RELATED[model]
        self.columns, self.values = _COLUMNS[model]
        self.fresh: list[BlitzBase] = []  # no id yet: the database numbers them
        self.rows: list[tuple[Any, ...]] = []  # their values, in ``columns`` order
        self.given: list[BlitzBase] = []  # with an id of their own
        self.ids: list[Any] = []

    def add(self, item: BlitzBase) -> None:
        """Take a new object (its missing columns get their scalar defaults)."""
        values = item.__dict__
        try:
            row = self.values(values)
        except KeyError:
            _fill_defaults(item, self.table)
            row = self.values(values)
        if values.get("id") is None:
            self.fresh.append(item)
            self.rows.append(row)
        else:
            self.given.append(item)

    def insert(self, conn: sa.Connection) -> None:
        """INSERT the objects, one executemany each for those with and without ids."""
        if self.given:
            rows = [(item.__dict__["id"], *self.values(item.__dict__)) for item in self.given]
            insert_many_ids(conn, self.table, rows, columns=("id", *self.columns))
        if self.fresh:
            self.ids = insert_many_ids(conn, self.table, self.rows, columns=self.columns)

    def detach(self) -> None:
        """Once committed: number the fresh objects and make every object detached with
        its identity, as if loaded (``make_transient_to_detached``, in one pass)."""
        mapper = sa.inspect(self.model)
        if set(mapper.attrs.keys()) != {c.key for c in self.table.c} | self.related:
            for item, new_id in zip(self.fresh, self.ids, strict=True):
                item.__dict__["id"] = new_id
            for item in (*self.fresh, *self.given):
                make_transient_to_detached(item)
            return
        identity_class = mapper._identity_class
        pairs = [*zip(self.fresh, self.ids, strict=True)]
        pairs += [(item, item.__dict__["id"]) for item in self.given]
        for item, new_id in pairs:
            item.__dict__["id"] = new_id
            state = instance_state(item)
            state.key = (identity_class, (new_id,), None)
            # InstanceState._commit_all for a new object with every column loaded and no
            # related object (so no pending collection changes): the relationships it
            # lacks stay unloaded, as make_transient_to_detached's expiry leaves them.
            # Flags are only written when set (writing a new attribute is the slow part).
            state.committed_state.clear()
            if state.expired_attributes:
                state.expired_attributes.difference_update(item.__dict__)
            if state.modified or state.expired:
                state.modified = state.expired = False
            if state._strong_obj is not None:
                state._strong_obj = None


def _fill_defaults(item: BlitzBase, table: sa.Table) -> None:
    """Give every column a value on the object (its scalar default, else None)."""
    values = item.__dict__
    for column in table.c:
        if column.key != "id" and column.key not in values:
            default = column.default
            value = default.arg if default is not None and default.is_scalar else None
            setattr(item, column.key, value)


def _set_availability(conn: sa.Connection, ref_id: int) -> bool:
    """Set ``available`` of session ``ref_id`` from its readings; False if no such session."""
    session, reading = _TABLES[Session], _TABLES[Reading]
    has = sa.exists().where(reading.c.sessionId == ref_id)
    result = conn.execute(
        sa.update(session).where(session.c.ref_id == ref_id).values(available=has)
    )
    if result.rowcount:
        return True
    found = conn.execute(sa.select(session.c.id).where(session.c.ref_id == ref_id)).first()
    return found is not None


def _session_rows(sessions_list: Iterable[Any]) -> list[dict[str, Any]]:
    if isinstance(sessions_list, (str, bytes, Mapping)) or not isinstance(sessions_list, Iterable):
        raise InvalidValue(f"sessions_list must be a list of sessions, got {sessions_list!r}")
    rows = []
    seen: set[int] = set()
    for entry in sessions_list:
        if isinstance(entry, str):
            entry = entry.split()
        if (
            isinstance(entry, (bytes, Mapping))
            or not isinstance(entry, Sequence)
            or len(entry) != 4
        ):
            raise InvalidValue(
                f"a session must be [id, start, stop, count] (or that text), got {entry!r}"
            )
        ref_id = _integer(entry[0], "session id")
        if ref_id in seen:
            raise InvalidValue(f"session id {ref_id} is listed twice")
        seen.add(ref_id)
        rows.append(
            {
                "ref_id": ref_id,
                "timeStarted": _integer(entry[1], "start time", nullable=True),
                "timeStopped": _integer(entry[2], "stop time", nullable=True),
                "numberOfReadings": _integer(entry[3], "number of readings", nullable=True),
            }
        )
    return rows


def _category_id(conn: sa.Connection, name: str) -> int:
    if not isinstance(name, str):
        raise InvalidValue(f"category must be a string, got {name!r}")
    table = _TABLES[Category]
    insert_ignore(conn, table, [{"variableName": name}], key=["variableName"])
    return conn.execute(sa.select(table.c.id).where(table.c.variableName == name)).scalar_one()


def _stored_counts(conn: sa.Connection, ref_ids: list[int]) -> dict[int, int]:
    """Readings stored per session, for the sessions in ``ref_ids``."""
    if not ref_ids:
        return {}
    reading = _TABLES[Reading]
    stmt = (
        sa.select(reading.c.sessionId, sa.func.count())
        .where(reading.c.sessionId.in_(ref_ids))
        .group_by(reading.c.sessionId)
    )
    return {row[0]: row[1] for row in conn.execute(stmt)}


def _sync_session(
    conn: sa.Connection, entry: Any, stored: Mapping[int, int], category_id: int
) -> int:
    """Make the readings of one server session match its messages; return how many were written."""
    messages = entry.messages
    reading = _TABLES[Reading]
    if stored.get(entry.ref_id, 0) == len(messages):
        # As many as the server has; the same ones? (A flushed server numbers its
        # sessions from 1 again: a new session 1 is not the one stored.)
        values = sa.select(reading.c.value).where(reading.c.sessionId == entry.ref_id)
        if list(conn.execute(values.order_by(reading.c.id)).scalars()) == list(messages):
            return 0
    conn.execute(sa.delete(reading).where(reading.c.sessionId == entry.ref_id))
    insert_many(
        conn,
        reading,
        [
            {"sessionId": entry.ref_id, "timeLogged": None, "categoryId": category_id, "value": m}
            for m in messages
        ],
    )
    return len(messages)

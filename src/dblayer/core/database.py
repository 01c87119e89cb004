"""Database: one URL, its engines, units of work, retries and the facts of its dialect.

Every backend difference in connection setup lives here, once per dialect.
A unit of work is a connection holding one transaction; ``transaction()`` hands
out the Connection, ``session()`` an ORM Session over that same connection, and
any unit opened while another is open on the same Database (in the same thread
or task) joins it, so nested calls share the caller's transaction.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from .errors import DBLayerError, InvalidValue, TransientError, mask_secret, translate
from .types import json_dumps

T = TypeVar("T")

DEFAULT_URL = "sqlite://"
ENV_VAR = "DBLAYER_URL"

# SQLite BEGIN modes a unit of work may ask for (an allow-list: it is pasted into SQL).
_SQLITE_BEGIN_MODES = {"DEFERRED", "IMMEDIATE"}


@dataclass(frozen=True)
class DialectFacts:
    """What the rest of core needs to know about the backend behind a Database."""

    backend: str  # "sqlite", "postgresql" or "mysql" (MariaDB is "mysql" with is_mariadb)
    driver: str
    is_mariadb: bool
    server_version: tuple[int, ...]
    supports_skip_locked: bool
    update_returning: bool
    delete_returning: bool
    insert_returning: bool
    native_json: bool
    native_uuid: bool
    is_memory: bool = False


@dataclass
class _Unit:
    """The connection (and lazily the ORM session) of the unit of work in progress."""

    connection: Connection
    session: Session | None = None
    readonly: bool = False


@dataclass
class RetryPolicy:
    """Bounded exponential backoff with jitter for transient failures."""

    attempts: int = 6
    base_delay: float = 0.02
    max_delay: float = 1.0

    def delay(self, attempt: int) -> float:
        """Seconds to sleep before retry number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return cap * random.uniform(0.5, 1.0)


_MEMORY_PATHS = (":memory:", "sqlite://", "")


def url_for_path(path: str | URL) -> str | URL:
    """A database URL from what the original applications took: ':memory:', a SQLite file
    path, or any SQLAlchemy URL (returned as it is)."""
    if isinstance(path, URL):
        return path
    if not isinstance(path, str):
        raise InvalidValue(f"expected a file path or a database URL, got {path!r}")
    if path in _MEMORY_PATHS:
        return DEFAULT_URL
    if "://" in path:
        return path
    return URL.create("sqlite", database=path)


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _password_in(raw: object) -> str | None:
    """The password of a URL string too broken to parse, so that no message shows it."""
    if not isinstance(raw, str):
        return None
    m = re.match(r"^[^:/]*://[^:/@]*:([^/]*)@", raw)
    return m.group(1) if m else None


def _normalise_url(url: str | URL | None) -> URL:
    if url is None or url == "":
        url = DEFAULT_URL
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError, TypeError) as e:
        message = mask_secret(str(e), _password_in(url))
        raise InvalidValue(f"not a database URL: {message}") from None
    # The URL stays as the caller gave it: SQLAlchemy 2's MySQL drivers default to utf8mb4.
    return parsed


@dataclass
class _EngineSetup:
    """Per-dialect engine arguments and connect-time statements."""

    kwargs: dict[str, Any] = field(default_factory=dict)


def _engine_setup(url: URL, lock_timeout: float, echo: bool) -> _EngineSetup:
    backend = url.get_backend_name()
    # Every driver that serialises JSON itself (psycopg, pymysql) uses the library's checked dumps.
    kwargs: dict[str, Any] = {"echo": echo, "json_serializer": json_dumps}
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False}
        # Every unit of work ends its transaction itself (and SQLAlchemy rolls back any
        # connection closed inside one): the pool's own rollback on return adds nothing.
        kwargs["pool_reset_on_return"] = None
        if _is_memory_sqlite(url):
            # One connection for the whole Database: every session sees one in-memory database.
            kwargs["poolclass"] = StaticPool
    elif backend == "postgresql":
        ms = max(1, int(lock_timeout * 1000))
        # Added to the URL's own ?options=..., which connect_args would otherwise replace.
        options = url.query.get("options", "")
        if not isinstance(options, str):
            options = " ".join(options)
        kwargs["connect_args"] = {"options": f"{options} -c lock_timeout={ms}".strip()}
        kwargs["pool_pre_ping"] = False
    elif backend in ("mysql", "mariadb"):
        seconds = max(1, int(round(lock_timeout)))
        kwargs["isolation_level"] = "READ COMMITTED"
        kwargs["pool_recycle"] = 3600
        # Every unit of work ends its transaction itself; PyMySQL would send the pool's
        # ROLLBACK on return anyway, one more round trip per unit.
        kwargs["pool_reset_on_return"] = None
        kwargs["connect_args"] = {
            # Strict mode whatever the server's default: an over-long or out-of-range value
            # is an error, never a silent truncation.
            "init_command": (
                f"SET SESSION innodb_lock_wait_timeout={seconds}, "
                "sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')"
            ),
        }
    return _EngineSetup(kwargs)


def _install_sqlite_events(
    engine: Engine, url: URL, lock_timeout: float, begin_mode: ContextVar[str]
) -> None:
    file_db = not _is_memory_sqlite(url)
    busy_ms = max(1, int(lock_timeout * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see do_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # LIKE respects case, as on PostgreSQL and on MariaDB with dblayer's binary collation.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        if file_db:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # BEGIN through the dialect rather than a "begin" event: any Connection event makes
    # SQLAlchemy dispatch events on every statement (about 4 µs each on SQLite).
    def do_begin(dbapi_connection: Any) -> None:
        mode = begin_mode.get()
        cursor = dbapi_connection.cursor()
        cursor.execute(f"BEGIN {mode if mode in _SQLITE_BEGIN_MODES else 'DEFERRED'}")
        cursor.close()

    engine.dialect.do_begin = do_begin  # type: ignore[method-assign]


# At most this many idle SQLite connections a Database keeps open between units of work.
_MAX_SPARES = 4
# Spares a forked child inherited: never used or closed there (they belong to the parent).
_FORKED_SPARES: list[Connection] = []


class _Spares:
    """Open SQLite Connections between units of work, so that a unit skips the pool's
    checkout and checkin (about 8 µs of a 20 µs empty unit). A Connection is either in
    one unit or here; idle ones count against the pool no more than in-use ones would.
    Only clean ones come back: ended transaction, not invalidated, default options."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.idle: list[Connection] = []
        self._options = engine.get_execution_options()

    def take(self) -> Connection:
        """An idle Connection, or a new one from the pool."""
        try:
            conn = self.idle.pop()  # atomic: two threads never get the same one
        except IndexError:
            return self.engine.connect()
        if conn.invalidated or conn.closed:
            conn.close()
            return self.engine.connect()
        return conn

    def give_back(self, conn: Connection, clean: bool) -> None:
        """Keep ``conn`` for the next unit when it is clean and there is room, else close it."""
        if (
            clean
            and len(self.idle) < _MAX_SPARES
            and not conn.closed
            and not conn.invalidated
            and not conn.in_transaction()
            and conn.get_execution_options() is self._options
        ):
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every idle Connection (back to the pool)."""
        while self.idle:
            self.idle.pop().close()

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without touching them."""
        _FORKED_SPARES.extend(self.idle)
        self.idle.clear()


# Every live _Spares, so that a forked child can drop what it inherited (one hook for all).
_LIVE_SPARES: weakref.WeakSet[_Spares] = weakref.WeakSet()


def _forget_spares_after_fork() -> None:
    for spares in list(_LIVE_SPARES):
        spares.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_spares_after_fork)


def _close_spares(all_spares: list[_Spares]) -> None:
    # When the Database is collected: closed, not left for the garbage collector to warn about.
    for spares in all_spares:
        spares.close()


class Database:
    """A database reached by URL: engines, units of work, retries and dialect facts."""

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        reader_url: str | URL | None = None,
        echo: bool = False,
        lock_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Build engines for ``url`` (default: in-memory SQLite) and an optional reader.

        ``reader_url`` (a replica) serves read-only units of work; ``lock_timeout`` is how
        many seconds a statement waits for a lock before LockTimeout.
        """
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)):
            raise InvalidValue(f"lock_timeout must be a number of seconds, got {lock_timeout!r}")
        if not lock_timeout > 0:
            raise InvalidValue(f"lock_timeout must be positive, got {lock_timeout!r}")
        # How the next SQLite transaction of this context begins (DEFERRED or IMMEDIATE).
        self._sqlite_begin: ContextVar[str] = ContextVar(
            f"dblayer_sqlite_begin_{id(self)}", default="DEFERRED"
        )
        self._url = _normalise_url(url)
        self._secrets: tuple[str, ...] = tuple(p for p in [self._url.password] if p)
        self.lock_timeout = lock_timeout
        self.retry_policy = retry or RetryPolicy()
        self.engine = self._make_engine(self._url, echo)
        self.reader_engine: Engine | None = None
        if reader_url is not None:
            reader = _normalise_url(reader_url)
            if reader.password:
                self._secrets += (reader.password,)
            self.reader_engine = self._make_engine(reader, echo)
        self._current: ContextVar[_Unit | None] = ContextVar(
            f"dblayer_unit_{id(self)}", default=None
        )
        self._facts: DialectFacts | None = None
        # An in-memory SQLite database is one shared connection: units of work take turns.
        self._memory_lock = threading.RLock() if _is_memory_sqlite(self._url) else None
        # SQLite engines keep idle Connections between units (see _Spares); servers do not:
        # a round trip dwarfs the checkout, and the pool's recycling stays in charge there.
        self._spares: dict[int, _Spares] = {
            id(engine): _Spares(engine)
            for engine in (self.engine, self.reader_engine)
            if engine is not None and engine.dialect.name == "sqlite"
        }
        if self._spares:
            _LIVE_SPARES.update(self._spares.values())
            weakref.finalize(self, _close_spares, list(self._spares.values()))

    @classmethod
    def from_env(cls, var: str = ENV_VAR, **kwargs: Any) -> Database:
        """A Database for the URL in the environment variable ``var`` (default DBLAYER_URL)."""
        return cls(os.environ.get(var) or None, **kwargs)

    def _make_engine(self, url: URL, echo: bool) -> Engine:
        setup = _engine_setup(url, self.lock_timeout, echo)
        try:
            engine = create_engine(url, **setup.kwargs)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as e:
            raise InvalidValue(
                mask_secret(f"cannot use database URL {self._mask(url)}: {e}", url.password)
            ) from None
        if url.get_backend_name() == "sqlite":
            _install_sqlite_events(engine, url, self.lock_timeout, self._sqlite_begin)
        return engine

    @staticmethod
    def _mask(url: URL) -> str:
        return url.render_as_string(hide_password=True)

    # -- what it is -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL with its password masked."""
        return self._mask(self._url)

    @property
    def reader_url(self) -> str | None:
        """The reader's URL with its password masked, or None without a reader."""
        return None if self.reader_engine is None else self._mask(self.reader_engine.url)

    def _translate(self, error: BaseException) -> DBLayerError:
        return translate(error, secrets=self._secrets)

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    @property
    def backend(self) -> str:
        """'sqlite', 'postgresql' or 'mysql' (MariaDB included)."""
        name = self.engine.dialect.name
        return "mysql" if name == "mariadb" else name

    @property
    def facts(self) -> DialectFacts:
        """Facts about the backend; the first call connects to learn the server version."""
        if self._facts is None:
            if self.engine.dialect.server_version_info is None:
                self._connect_writer()
            d = self.engine.dialect
            version = tuple(d.server_version_info or ())
            is_mariadb = bool(getattr(d, "is_mariadb", False))
            backend = self.backend
            if backend == "postgresql":
                skip_locked = version >= (9, 5)
            elif backend == "mysql":
                skip_locked = version >= ((10, 6) if is_mariadb else (8, 0, 1))
            else:
                skip_locked = False
            self._facts = DialectFacts(
                backend=backend,
                driver=d.driver,
                is_mariadb=is_mariadb,
                server_version=version,
                supports_skip_locked=skip_locked,
                update_returning=bool(d.update_returning),
                delete_returning=bool(d.delete_returning),
                insert_returning=bool(d.insert_returning),
                native_json=backend in ("postgresql", "mysql"),
                # Whether types.UUID is the server's own type (not MariaDB's: see types.UUID).
                native_uuid=backend == "postgresql",
                is_memory=_is_memory_sqlite(self._url),
            )
        return self._facts

    def _connect_writer(self) -> None:
        """Connect the writer once, so that its dialect learns the server version.

        Not through a unit of work: a readonly unit may go to the reader, whose
        connection teaches the writer's dialect nothing.
        """
        lock = self._memory_lock
        if lock is not None:
            lock.acquire()
        try:
            self.engine.connect().close()
        except sa_exc.SQLAlchemyError as e:
            raise self._translate(e) from e
        finally:
            if lock is not None:
                lock.release()

    # -- units of work ----------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        """Whether a unit of work on this Database is open in the current context."""
        return self._current.get() is not None

    @contextmanager
    def _unit(self, readonly: bool, connection: bool = False) -> Iterator[Any]:
        """The unit of work (or, with ``connection``, its Connection) open in this context,
        or a new one on a connection of its own."""
        outer = self._current.get()
        if outer is not None:
            try:
                if connection:
                    if outer.session is not None:
                        # Core statements must see what the enclosing ORM session has pending.
                        outer.session.flush()
                    yield outer.connection
                else:
                    yield outer
            except sa_exc.SQLAlchemyError as e:
                raise self._translate(e) from e
            return
        engine = (
            self.reader_engine if (readonly and self.reader_engine is not None) else self.engine
        )
        lock = self._memory_lock
        if lock is not None:
            lock.acquire()
        try:
            spares = self._spares.get(id(engine))
            conn = engine.connect() if spares is None else spares.take()
            clean = False
            try:
                unit = _Unit(conn, readonly=readonly)
                token = self._current.set(unit)
                # Writers take SQLite's write lock up front: a deferred writer can fail on upgrade.
                begin = self._sqlite_begin.set("DEFERRED" if readonly else "IMMEDIATE")
                try:
                    with conn.begin():
                        self._sqlite_begin.reset(begin)
                        begin = None
                        yield conn if connection else unit
                        if unit.session is not None:
                            unit.session.flush()
                    clean = True
                finally:
                    if begin is not None:
                        self._sqlite_begin.reset(begin)
                    self._current.reset(token)
                    if unit.session is not None:
                        unit.session.close()
            finally:
                if spares is None:
                    conn.close()
                else:
                    spares.give_back(conn, clean)
        except sa_exc.SQLAlchemyError as e:
            raise self._translate(e) from e
        finally:
            if lock is not None:
                lock.release()

    def transaction(self, *, readonly: bool = False) -> AbstractContextManager[Connection]:
        """A Core connection in one transaction: committed on success, rolled back on error.

        Inside an open unit of work this joins it (same connection, same transaction).
        ``readonly`` units go to the reader when there is one and, on SQLite, do not take
        the write lock; they do not stop a write.
        """
        # _unit itself, not a generator around it: the hot path of every store call.
        return self._unit(readonly, True)

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """An ORM Session in one transaction: flushed and committed on success, else rolled back.

        Objects stay loaded after the block (no expiry on commit); relationships
        that were not loaded inside the block cannot be loaded afterwards.
        """
        with self._unit(readonly) as unit:
            session = self._unit_session(unit)
            yield session
            session.flush()

    @staticmethod
    def _unit_session(unit: _Unit) -> Session:
        if unit.session is None:
            unit.session = Session(
                bind=unit.connection,
                expire_on_commit=False,
                autoflush=True,
                join_transaction_mode="rollback_only",
            )
        return unit.session

    def current_connection(self) -> Connection:
        """The Connection of the unit of work open in this context, its Session's pending
        objects flushed first (when it has one) so that Core statements see them; outside a
        unit of work it raises DBLayerError."""
        unit = self._current.get()
        if unit is None:
            raise DBLayerError("no unit of work is open on this Database")
        if unit.session is not None:
            try:
                unit.session.flush()
            except sa_exc.SQLAlchemyError as e:
                raise self._translate(e) from e
        return unit.connection

    def current_session(self) -> Session:
        """The ORM Session of the unit of work open in this context (made on first use).

        For code that runs inside ``session()``/``transaction()``/``run()`` and needs the
        session without being handed it; outside a unit of work it raises DBLayerError.
        """
        unit = self._current.get()
        if unit is None:
            raise DBLayerError("no unit of work is open on this Database")
        return self._unit_session(unit)

    def run(
        self,
        work: Callable[..., T],
        *args: Any,
        readonly: bool = False,
        orm: bool = False,
        **kwargs: Any,
    ) -> T:
        """Call ``work(conn_or_session, *args, **kwargs)`` in a unit of work, replaying it on
        transient failures (deadlock, lock timeout, lost connection) with bounded backoff.

        Inside an open unit the call joins it and is not retried here: the outermost
        unit of work is the one that can be replayed.
        """
        opener = self.session if orm else self.transaction
        if self.in_transaction:
            with opener(readonly=readonly) as handle:
                return work(handle, *args, **kwargs)
        policy = self.retry_policy
        attempt = 0
        while True:
            attempt += 1
            try:
                with opener(readonly=readonly) as handle:
                    return work(handle, *args, **kwargs)
            except TransientError:
                if attempt >= policy.attempts:
                    raise
                time.sleep(policy.delay(attempt))

    # -- schema -----------------------------------------------------------------------------

    def create_all(self, metadata: MetaData) -> None:
        """Create every table of ``metadata`` that does not exist yet."""
        with self.transaction() as conn:
            metadata.create_all(conn)

    def drop_all(self, metadata: MetaData) -> None:
        """Drop every table of ``metadata`` that exists."""
        with self.transaction() as conn:
            metadata.drop_all(conn)

    def table_names(self) -> list[str]:
        """Names of the tables that exist in the database."""
        with self.transaction(readonly=True) as conn:
            return sorted(inspect(conn).get_table_names())

    def server_version(self) -> str:
        """The server's version as a string ('3.40.1' for SQLite)."""
        return ".".join(str(p) for p in self.facts.server_version)

    # -- lifetime ---------------------------------------------------------------------------

    def dispose(self) -> None:
        """Close every pooled connection."""
        for spares in self._spares.values():
            spares.close()
        self.engine.dispose()
        if self.reader_engine is not None:
            self.reader_engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

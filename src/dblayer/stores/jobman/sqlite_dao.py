"""SqliteDAO (jobman.dao.sqlite_dao): named record types over one database, plus key-value pairs.

Despite the name it runs on any backend: ``db_uri`` is ``':memory:'`` (the default),
a file path, ``sqlite:///path`` or any SQLAlchemy URL. Every call is its own unit of
work on a core Database (committed, replayed on deadlocks and lock timeouts).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sized
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from dblayer.core import (
    CompareAndSetFailed,
    ConflictError,
    Database,
    DatabaseError,
    DBLayerError,
    InvalidQuery,
    InvalidValue,
    TransientError,
    canonical_json,
    migrations,
    url_for_path,
)
from dblayer.core.migrations import StoreMigrations
from dblayer.core.upsert import paused_gc

from . import orm as _orm
from . import utils as _dao_utils


def database_url(db_uri: Any) -> str | URL:
    """The URL for a jobman ``db_uri``: ':memory:' (default), a SQLite file, or any SQLAlchemy URL."""
    return url_for_path(db_uri)


class SqliteDAO:
    """Record types ('ents') in tables built from field dicts, and a key-value table."""

    class InsertError(DatabaseError):
        """Saving records failed in the database (other than a key collision)."""

    class IntegrityError(ConflictError):
        """A saved record's key exists already (``replace=False``); nothing was saved."""

    class UpdateError(CompareAndSetFailed):
        """update_kvp found no such key, or a value other than ``where_prev_value``."""

    # Seconds a write waits for a lock; JobmanSqliteDAO takes it as an argument.
    lock_timeout: float = 30

    def __init__(
        self,
        db_uri: str | URL = ":memory:",
        orm_specs: list[Mapping[str, Any]] | None = None,
        table_prefix: str | None = None,
        initialize: bool = True,
        logger: Any = None,
        include_kvp_orm: bool = True,
        debug: Any = None,
        sqlite: Any = sqlite3,
        orm: Any = _orm,
    ) -> None:
        """Open the database at ``db_uri`` and, with ``initialize``, create missing tables.

        ``sqlite`` is accepted for compatibility and not used; ``orm`` is the module whose
        ``ORM`` class builds each table.
        """
        self.logger = logger or logging
        self.db_uri = db_uri
        self.debug = debug
        self.sqlite = sqlite
        self.orm = orm
        self.table_prefix = table_prefix
        self.db = Database(database_url(db_uri), lock_timeout=self.lock_timeout)
        self.orms = self._generate_orms(orm_specs, table_prefix, include_kvp_orm)
        self._connection: sa.Connection | None = None
        if initialize:
            self.initialize()

    def _generate_orms(
        self,
        orm_specs: list[Mapping[str, Any]] | None,
        table_prefix: str | None,
        include_kvp_orm: bool,
    ) -> dict[str, Any]:
        specs = list(orm_specs or [])
        if include_kvp_orm:
            specs.append({"name": "kvp", "fields": self._generate_kvp_fields()})
        common = {"logger": self.logger, "table_prefix": table_prefix}
        orms = {}
        for spec in specs:
            if not isinstance(spec, Mapping):
                raise InvalidValue(f"an orm spec must be a dict with name and fields, got {spec!r}")
            orm = self.orm.ORM(**{**common, **spec})
            orms[orm.name] = orm
        return orms

    def _generate_kvp_fields(self) -> dict[str, dict[str, Any]]:
        return {
            "key": {"type": "TEXT", "primary_key": True},
            "value": {"type": "JSON"},
            **_dao_utils.generate_timestamp_fields(),
        }

    # -- connections and tables -----------------------------------------------------------

    @property
    def connection(self) -> sa.Connection:
        """A SQLAlchemy connection held by this DAO for your own SQL (DAO calls do not use it).

        On an in-memory database it shares the one connection DAO calls use: end its
        transaction (commit or rollback) before the next DAO call.
        """
        if self._connection is None or self._connection.closed:
            self._connection = self.create_connection()
        return self._connection

    def create_connection(self) -> sa.Connection:
        """A new SQLAlchemy connection to the DAO's database; close it when done."""
        return self.db.engine.connect()

    def initialize(self) -> None:
        """Create the tables that do not exist yet."""
        self.ensure_tables()

    def ensure_tables(self) -> None:
        """Create every missing table, and add to existing tables the columns and indexes
        they lack (a field added to ``extra_job_fields`` since, the job lease columns).

        Nothing else is changed: where a table also differs otherwise (a field dropped or
        of another type) that is left as it is, with a warning (``dblayer db upgrade`` or
        ``core.migrations`` deal with those), and the missing columns are still added.
        Safe when several processes start at once: a CREATE or ADD COLUMN that another
        process made in the meantime is not an error.
        """
        existing = set(self.db.table_names())
        for orm in self.orms.values():
            if orm.table.name in existing:
                continue
            try:
                self.db.run(lambda conn, orm=orm: orm.create_table(connection=conn))
            except DBLayerError:
                if orm.table.name not in self.db.table_names():
                    raise
        if any(orm.table.name in existing for orm in self.orms.values()):
            self._add_missing()

    def _add_missing(self) -> None:
        """core.migrations.add_missing over this DAO's tables."""
        metadata = sa.MetaData()
        for orm in self.orms.values():
            orm.table.to_metadata(metadata)
        # The DAO's own tables as a store: add_missing compares and alters only them
        # (it runs no migration script, so there is none to locate).
        tables = StoreMigrations(f"{self.table_prefix or ''}dao", "", lambda _params: metadata)
        # Other differences are left as they are: add_missing logs them.
        try:
            try:
                migrations.add_missing(self.db, tables, others="ignore")
            except InvalidValue:
                raise
            except DBLayerError:  # another process added the same column first
                migrations.add_missing(self.db, tables, others="ignore")
        except InvalidValue as e:  # a new NOT NULL field: existing rows would have no value
            self.logger.warning("jobman tables left as they are: %s", e)

    def flush(self) -> None:
        """Remove the database's contents: a file database's files, else this DAO's tables.

        Afterwards ``initialize()`` makes the DAO usable again.
        """
        facts = self.db.facts
        if facts.backend == "sqlite" and not facts.is_memory:
            path = self.db.engine.url.database
            self.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f"{path}{suffix}")
            return

        def drop(conn: sa.Connection) -> None:
            for orm in reversed(list(self.orms.values())):
                orm.table.drop(conn, checkfirst=True)

        self.db.run(drop)

    def close(self) -> None:
        """Close the held connection and every pooled one (the DAO reconnects when used)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.db.dispose()

    def generate_key(self) -> str:
        """A new record key (a UUID4 string)."""
        return _dao_utils.generate_key()

    # -- records --------------------------------------------------------------------------

    def _orm_for(self, ent_type: Any) -> Any:
        try:
            return self.orms[ent_type]
        except (KeyError, TypeError):
            known = ", ".join(self.orms)
            raise InvalidQuery(f"unknown ent_type {ent_type!r}; known: {known}") from None

    def create_ent(
        self, ent_type: str | None = None, ent: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Save one record; return it as stored."""
        return self.save_ents(ent_type=ent_type, ents=[ent])[0]

    def save_ents(
        self,
        ent_type: str | None = None,
        ents: Iterable[Mapping[str, Any]] | None = None,
        replace: bool = True,
    ) -> list[dict[str, Any]]:
        """Save records in one transaction; return them as stored (every field).

        ``replace=True`` overwrites records whose key exists; ``replace=False`` raises
        IntegrityError for an existing key and saves nothing of the batch.
        """
        orm = self._orm_for(ent_type)
        with paused_gc(isinstance(ents, Sized) and len(ents) >= _GC_PAUSE_MIN):
            records, rows = orm.prepare_rows(ents)
            if rows:
                try:
                    self.db.run(orm.insert_rows, rows, bool(replace))
                except orm.IntegrityError as e:
                    raise self.IntegrityError(
                        str(e), constraint=e.constraint, columns=e.columns
                    ) from e
                except orm.InsertError as e:
                    raise self.InsertError(str(e)) from e
        return records

    def get_ent(self, ent_type: str | None = None, key: Any = None) -> dict[str, Any] | None:
        """The record with ``key``, or None."""
        query = {"filters": [{"field": "key", "op": "=", "arg": key}], "limit": 1}
        found = self.query_ents(ent_type=ent_type, query=query)
        return found[0] if found else None

    def query_ents(
        self, ent_type: str | None = None, query: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Query ents.

        ``query`` is a dict of this form (None: every record)::

            {
                'filters': [
                    {'field': 'some_field', 'op': '=', 'arg': 'some_arg'}
                    # other filters...
                ],
                'limit': 100,
                'order_by': [
                    {'field': 'some_field', 'direction': 'ASC'},
                    {'field': 'some_other_field', 'direction': 'DESC'},
                ]
            }

        Filters are ANDed; operators: =, !=, ! =, IN, ! IN, IS, IS NOT, <, <=, >, >=,
        LIKE (and the core's other allow-listed ones). ``order_by`` is one dict or a list.
        """
        orm = self._orm_for(ent_type)
        return self.db.run(orm.fetch, query, readonly=True)

    def update_ents(
        self,
        ent_type: str | None = None,
        updates: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> dict[str, int]:
        """Set ``updates`` on the records matching ``query`` (``{}``: all); ``{'rowcount': n}``.

        ``modified`` is not bumped unless it is in ``updates`` (as in jobman). A failure
        the database reports raises ``ORM.UpdateError``.
        """
        orm = self._orm_for(ent_type)
        stmt = orm.update_statement(updates, query)
        try:
            return {"rowcount": self.db.run(_rowcount, stmt)}
        except (InvalidValue, InvalidQuery, TransientError):
            raise
        except DBLayerError as e:
            raise orm.UpdateError(str(e)) from e

    # -- key-value pairs ------------------------------------------------------------------

    def save_kvps(
        self, kvps: Iterable[Mapping[str, Any]] | None = None, replace: bool = True
    ) -> list[dict[str, Any]]:
        """save_ents for key-value pairs (``{'key': ..., 'value': <JSON>}``)."""
        return self.save_ents(ent_type="kvp", ents=kvps, replace=replace)

    def create_kvp(self, kvp: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """create_ent for a key-value pair."""
        return self.create_ent(ent_type="kvp", ent=kvp)

    def query_kvps(self, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """query_ents for key-value pairs."""
        return self.query_ents(ent_type="kvp", query=query)

    def get_kvp(self, key: Any = None) -> dict[str, Any] | None:
        """The key-value pair with ``key``, or None."""
        return self.get_ent(ent_type="kvp", key=key)

    def update_kvp(
        self, key: Any = None, new_value: Any = None, where_prev_value: Any = ...
    ) -> None:
        """Set the value of ``key`` to ``new_value``, atomically and committed, if the key
        exists and (when ``where_prev_value`` is given) its value equals it as JSON.

        Otherwise raise UpdateError and change nothing. ``modified`` is not bumped (as in
        jobman). The row is locked (SQLite: the database) from the read to the write.
        """
        orm = self._orm_for("kvp")
        if key is None:  # no kvp has a None key
            raise self.UpdateError("kvp None does not exist")
        key = orm.convert("key", key)
        new_value = orm.convert("value", new_value)
        if where_prev_value is not ...:
            where_prev_value = orm.convert("value", where_prev_value)
        if not self.db.run(_compare_and_set, orm.table, key, new_value, where_prev_value):
            raise self.UpdateError(
                f"kvp {key!r} does not exist or does not hold the expected value"
            )


# A bulk save makes a few small containers per record, all kept until it returns: the
# cyclic garbage collector would scan them over and over (about a third of the time of
# a 20,000-job save) and find nothing to free. It is paused for saves this large.
_GC_PAUSE_MIN = 1000


def _rowcount(conn: sa.Connection, stmt: sa.Update) -> int:
    return conn.execute(stmt).rowcount


def _compare_and_set(
    conn: sa.Connection, table: sa.Table, key: str, new: Any, expected: Any
) -> bool:
    locked = sa.select(table.c.value).where(table.c.key == key).with_for_update()
    row = conn.execute(locked).first()
    if row is None or (expected is not ... and canonical_json(row[0]) != canonical_json(expected)):
        return False
    conn.execute(sa.update(table).where(table.c.key == key).values(value=new))
    return True

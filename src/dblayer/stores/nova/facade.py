"""Which database nova's API works on, and the unit of work a call runs in.

nova's DB API is process-wide: one database, chosen by configuration. Here it is
chosen by ``configure(url, reader_url)`` or the ``DBLAYER_URL`` environment
variable, in-memory SQLite by default. A ``NovaDBAPI`` bound to a Database of
its own makes the calls it dispatches work on that one instead (a context
variable, so threads and tasks never see each other's choice).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.orm import Session

from dblayer.core import Database

_lock = threading.Lock()
_configured: Database | None = None
_bound: ContextVar[Database | None] = ContextVar("dblayer_nova_database", default=None)
# Databases whose schema this process made sure of (weak: a disposed one may be collected).
_schema_ready: weakref.WeakSet[Database] = weakref.WeakSet()


def create_schema(db: Database) -> None:
    """Create nova's tables (and their shadow tables) on ``db`` where they are missing."""
    from .models import BASE  # the models import this module (NovaBase.save)

    db.create_all(BASE.metadata)
    _schema_ready.add(db)


def drop_schema(db: Database) -> None:
    """Drop nova's tables and shadow tables from ``db``."""
    from .models import BASE

    db.drop_all(BASE.metadata)
    _schema_ready.discard(db)


def configure(
    url: str | None = None,
    reader_url: str | None = None,
    *,
    database: Database | None = None,
    create_tables: bool = True,
) -> Database:
    """Point the API at ``url`` (default: ``DBLAYER_URL``, else in-memory SQLite).

    ``reader_url`` serves ``use_slave=True`` reads; ``database`` hands over a ready
    Database instead of a URL. Missing tables are created unless ``create_tables`` is
    False (use migrations then). Returns the Database now in use.
    """
    global _configured
    if database is None:
        database = (
            Database(url, reader_url=reader_url)
            if url
            else Database.from_env(reader_url=reader_url)
        )
    if create_tables and database not in _schema_ready:
        create_schema(database)
    with _lock:
        _configured = database
    return database


def get_database() -> Database:
    """The Database the API works on in this context (configured on first use)."""
    bound = _bound.get()
    if bound is not None:
        return bound
    configured = _configured
    return configured if configured is not None else configure()


@contextmanager
def bound_to(database: Database) -> Iterator[Database]:
    """Within the block, API calls in this context work on ``database``."""
    token = _bound.set(database)
    try:
        yield database
    finally:
        _bound.reset(token)


def get_session() -> Session:
    """The ORM Session of the unit of work in progress (every API call runs in one)."""
    return get_database().current_session()

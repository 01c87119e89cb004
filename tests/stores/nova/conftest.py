"""Fixtures of the nova store's tests: nova's schema once per backend per run, empty tables
for each test, and the contexts nova's callers use.

nova's tables live in a database of their own on each backend (its ``services``
would collide with TopChef's). Every test starts with every table empty (rows
deleted, children first, shadow tables included) and the API configured on the
backend under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import Database
from dblayer.stores.nova import facade
from dblayer.stores.nova.context import RequestContext, get_admin_context
from tests.conftest import SHARED_BACKENDS, backend_url, open_database

STORE = "nova"
_ready: set[int] = set()


def nova_database(backend: str, run_dir: Path) -> Database:
    """The run's nova Database on ``backend``, its schema created on first use."""
    db = open_database(backend, run_dir, STORE)
    if id(db) not in _ready:
        facade.create_schema(db)
        _ready.add(id(db))
    return db


def empty_tables(db: Database) -> None:
    """Delete every row of nova's tables and shadow tables, children first."""
    from dblayer.stores.nova.models import BASE

    with db.transaction() as conn:
        for table in reversed(BASE.metadata.sorted_tables):
            conn.execute(sa.delete(table))


@pytest.fixture
def nova_db(backend: str, run_dir: Path) -> Iterator[Database]:
    """The backend's nova Database with empty tables; the API configured on it."""
    db = nova_database(backend, run_dir)
    empty_tables(db)
    facade.configure(database=db, create_tables=False)
    yield db


@pytest.fixture(params=SHARED_BACKENDS)
def nova_url(request: pytest.FixtureRequest, run_dir: Path) -> str:
    """A URL of a nova database (empty tables) that several processes can open."""
    db = nova_database(request.param, run_dir)
    empty_tables(db)
    facade.configure(database=db, create_tables=False)
    return backend_url(request.param, run_dir, STORE)


@pytest.fixture
def admin() -> RequestContext:
    """An admin context (no user, no project)."""
    return get_admin_context()


@pytest.fixture
def ctx() -> RequestContext:
    """A user context of project 'project1'."""
    return RequestContext("user1", "project1")


@pytest.fixture
def other_ctx() -> RequestContext:
    """A user context of another project, 'project2'."""
    return RequestContext("user2", "project2")


def make_instance(db: Database, **values: object) -> str:
    """Insert an instance row directly (project1/user1 unless given); return its uuid."""
    from dblayer.stores.nova import models

    values.setdefault("uuid", str(uuid.uuid4()))
    values.setdefault("project_id", "project1")
    values.setdefault("user_id", "user1")
    with db.session() as session:
        session.add(models.Instance(**values))
    return str(values["uuid"])


def table_rows(db: Database, model: type) -> list[dict]:
    """Every row of ``model``'s table (deleted ones too), as dicts, by id."""
    table = model.__table__  # type: ignore[attr-defined]
    with db.transaction() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]

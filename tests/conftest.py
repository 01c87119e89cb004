"""Shared fixtures: every test that takes ``db`` runs on each SQL backend.

Server URLs come from the environment (defaults match the project's CI machine).
A server that cannot be reached fails the test; nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import Database, DBLayerError

PG_URL = os.environ.get("DBLAYER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("DBLAYER_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("DBLAYER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

BACKENDS = ["sqlite_memory", "sqlite_file", "postgresql", "mariadb"]
# Backends that several processes can share (an in-memory SQLite lives in one process).
SHARED_BACKENDS = ["sqlite_file", "postgresql", "mariadb"]


def backend_url(backend: str, tmp_dir: Path) -> str:
    """The URL tests use for ``backend``."""
    if backend == "sqlite_memory":
        return "sqlite://"
    if backend == "sqlite_file":
        return f"sqlite:///{tmp_dir / 'dblayer-test.db'}"
    if backend == "postgresql":
        return PG_URL
    if backend == "mariadb":
        return MYSQL_URL
    raise ValueError(backend)


_databases: dict[str, Database] = {}


def open_database(backend: str, tmp_dir: Path) -> Database:
    """One Database per backend for the whole run; fails the test if the server is down."""
    if backend not in _databases:
        db = Database(backend_url(backend, tmp_dir))
        try:
            db.server_version()  # connects
        except DBLayerError as e:
            pytest.fail(f"{backend} is not reachable at {db.url}: {e}", pytrace=False)
        _databases[backend] = db
    return _databases[backend]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for this run's SQLite files."""
    return tmp_path_factory.mktemp("dblayer")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    return request.param


@pytest.fixture
def db(backend: str, run_dir: Path) -> Database:
    """The shared Database of the backend under test."""
    return open_database(backend, run_dir)


@pytest.fixture(params=SHARED_BACKENDS)
def shared_url(request: pytest.FixtureRequest, run_dir: Path) -> str:
    """A URL several processes can open: SQLite file, PostgreSQL, MariaDB."""
    open_database(request.param, run_dir)
    return backend_url(request.param, run_dir)


_created: set[tuple[int, int]] = set()


def create_once(db: Database, metadata: sa.MetaData) -> None:
    """Create ``metadata``'s tables on ``db`` once per run (dropping leftovers of an earlier run)."""
    key = (id(db), id(metadata))
    if key not in _created:
        db.drop_all(metadata)
        db.create_all(metadata)
        _created.add(key)


def delete_rows(db: Database, metadata: sa.MetaData) -> None:
    """Empty every table of ``metadata``, children first."""
    with db.transaction() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(sa.delete(table))


@pytest.fixture
def tables_of() -> Iterator[object]:
    """``tables_of(db, metadata)``: create once, hand over empty tables, empty them afterwards."""
    used: list[tuple[Database, sa.MetaData]] = []

    def prepare(db: Database, metadata: sa.MetaData) -> sa.MetaData:
        create_once(db, metadata)
        delete_rows(db, metadata)
        used.append((db, metadata))
        return metadata

    yield prepare
    for db, metadata in used:
        delete_rows(db, metadata)

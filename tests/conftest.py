"""Shared fixtures: every test that takes ``db`` runs on each SQL backend.

Server URLs come from the environment (defaults match the project's CI machine).
Each test run works in a database of its own on each server (``dblayer_t<pid>``,
dropped at the end), so runs in parallel (xdist workers, two developers) never
see each other's rows. A server that cannot be reached fails the test; nothing
is skipped.
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


RUN_DATABASE = f"dblayer_t{os.getpid()}"
_databases: dict[str, Database] = {}
_run_urls: dict[str, str] = {}


def _server_run_url(base_url: str, store: str = "") -> str:
    """Create this run's database (``store``'s own when given) on the server of
    ``base_url``; return its URL."""
    name = f"{RUN_DATABASE}_{store}" if store else RUN_DATABASE
    key = f"{base_url}#{name}"
    if key not in _run_urls:
        url = sa.make_url(base_url)
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                if url.get_backend_name() == "postgresql":
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
                else:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
                    conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        except sa.exc.OperationalError as e:
            pytest.fail(f"server not reachable at {url.render_as_string()}: {e}", pytrace=False)
        finally:
            engine.dispose()
        _run_urls[key] = url.set(database=name).render_as_string(hide_password=False)
    return _run_urls[key]


def _drop_run_databases() -> None:
    for key in _run_urls:
        base_url, name = key.rsplit("#", 1)
        url = sa.make_url(base_url)
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            if url.get_backend_name() == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        engine.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close every test Database and drop this run's server databases."""
    for db in _databases.values():
        db.dispose()
    _drop_run_databases()


def backend_url(backend: str, tmp_dir: Path, store: str = "") -> str:
    """The URL tests use for ``backend`` (this run's own database on a server).

    A ``store`` whose table names would collide with another's gets a database of its own.
    """
    suffix = f"-{store}" if store else ""
    if backend == "sqlite_memory":
        return "sqlite://"
    if backend == "sqlite_file":
        return f"sqlite:///{tmp_dir / f'dblayer-test{suffix}.db'}"
    if backend == "postgresql":
        return _server_run_url(PG_URL, store)
    if backend == "mariadb":
        return _server_run_url(MYSQL_URL, store)
    raise ValueError(backend)


def open_database(backend: str, tmp_dir: Path, store: str = "") -> Database:
    """One Database per backend (and store) for the whole run; fails the test if the
    server is down."""
    key = f"{backend}#{store}"
    if key not in _databases:
        db = Database(backend_url(backend, tmp_dir, store))
        try:
            db.server_version()  # connects
        except DBLayerError as e:
            pytest.fail(f"{backend} is not reachable at {db.url}: {e}", pytrace=False)
        _databases[key] = db
    return _databases[key]


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
    """Create ``metadata``'s tables on ``db`` once per run."""
    key = (id(db), id(metadata))
    if key not in _created:
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

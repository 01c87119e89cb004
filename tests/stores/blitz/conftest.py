"""Fixtures of the blitz store's tests: a DatabaseClient per SQL backend, a DatabaseServer on Redis.

The client's tables are created once per backend per run and emptied before and
after each test. Each server works under a key prefix of its own and is flushed
afterwards, so runs in parallel never see each other's keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from dblayer.stores.blitz import BlitzBase, DatabaseClient, DatabaseServer
from tests.conftest import REDIS_URL, backend_url, open_database

_clients: dict[str, DatabaseClient] = {}


def empty(client: DatabaseClient) -> None:
    """Delete every row of the blitz tables, children first."""
    with client.db.transaction() as conn:
        for table in reversed(BlitzBase.metadata.sorted_tables):
            conn.execute(sa.delete(table))


def shared_client(backend: str, run_dir: Path) -> DatabaseClient:
    """The run's DatabaseClient on ``backend`` (tables created on first use)."""
    if backend not in _clients:
        open_database(backend, run_dir)  # fails the test, naming the backend, if it is down
        path = ":memory:" if backend == "sqlite_memory" else backend_url(backend, run_dir)
        _clients[backend] = DatabaseClient(path=path)
    return _clients[backend]


@pytest.fixture
def client(backend: str, run_dir: Path) -> Iterator[DatabaseClient]:
    """The backend's DatabaseClient with empty tables; emptied again afterwards."""
    db_client = shared_client(backend, run_dir)
    empty(db_client)
    yield db_client
    empty(db_client)


def unique_prefix() -> str:
    """A key prefix no other test or run uses."""
    return f"t{os.getpid()}_{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A decoding redis-py client on the test Redis; fails the test if it is down."""
    conn = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        conn.ping()
    except redis.RedisError as e:
        pytest.fail(f"redis is not reachable at {REDIS_URL}: {e}", pytrace=False)
    yield conn
    conn.close()


@pytest.fixture
def make_server(redis_client: redis.Redis) -> Iterator[Callable[..., DatabaseServer]]:
    """``make_server(prefix=None, connection=REDIS_URL)``: a server under a unique prefix
    (or ``prefix``); every key under the prefixes used is deleted afterwards."""
    prefixes: list[str] = []

    def make(prefix: str | None = None, connection: object = REDIS_URL) -> DatabaseServer:
        prefix = unique_prefix() if prefix is None else prefix
        prefixes.append(prefix)
        return DatabaseServer(connection, prefix=prefix)  # type: ignore[arg-type]

    yield make
    for prefix in set(prefixes):
        keys = list(redis_client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            redis_client.delete(*keys)


@pytest.fixture
def server(make_server: Callable[..., DatabaseServer]) -> DatabaseServer:
    """A DatabaseServer under a unique key prefix."""
    return make_server()

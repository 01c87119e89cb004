"""Fixtures of the jobman store's tests: DAOs on every backend, tables created once per run.

A DAO is cached per backend, class and arguments for the whole run (its tables are
dropped and re-created on first use, so leftovers of an earlier run go), and its
tables are emptied before and after every test that uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dblayer.stores.jobman import JobmanSqliteDAO, SqliteDAO, WorkerSqliteDAO
from tests.conftest import backend_url, open_database

_daos: dict[tuple[Any, ...], SqliteDAO] = {}


def drop_tables(dao: SqliteDAO) -> None:
    """Drop the DAO's tables (never the file: the run's SQLite file is shared)."""

    def drop(conn: sa.Connection) -> None:
        for orm in dao.orms.values():
            orm.table.drop(conn, checkfirst=True)

    dao.db.run(drop)


def empty(dao: SqliteDAO) -> None:
    """Delete every row of the DAO's tables."""

    def delete(conn: sa.Connection) -> None:
        for orm in dao.orms.values():
            conn.execute(sa.delete(orm.table))

    dao.db.run(delete)


def shared_dao(backend: str, run_dir: Path, cls: type[SqliteDAO], **kwargs: Any) -> SqliteDAO:
    """The run's DAO of class ``cls`` with ``kwargs`` on ``backend``, its tables fresh once."""
    key = (backend, cls, repr(sorted(kwargs.items())))
    if key not in _daos:
        open_database(backend, run_dir)  # fails the test, naming the backend, if it is down
        dao = cls(db_uri=backend_url(backend, run_dir), initialize=False, **kwargs)
        drop_tables(dao)
        dao.initialize()
        _daos[key] = dao
    return _daos[key]


@pytest.fixture
def make_dao(backend: str, run_dir: Path) -> Iterator[Callable[..., Any]]:
    """``make_dao(cls, **kwargs)``: the shared DAO, its tables empty; emptied again afterwards."""
    used: list[SqliteDAO] = []

    def make(cls: type[SqliteDAO] = WorkerSqliteDAO, **kwargs: Any) -> Any:
        dao = shared_dao(backend, run_dir, cls, **kwargs)
        empty(dao)
        used.append(dao)
        return dao

    yield make
    for dao in used:
        empty(dao)


@pytest.fixture
def dao(make_dao: Callable[..., Any]) -> WorkerSqliteDAO:
    """A WorkerSqliteDAO (tables jmt_w_job, jmt_w_kvp) with empty tables."""
    return make_dao(WorkerSqliteDAO, table_prefix="jmt_w_")


@pytest.fixture
def jobman(make_dao: Callable[..., Any]) -> JobmanSqliteDAO:
    """A JobmanSqliteDAO (tables jobman_job, jobman_kvp) with empty tables."""
    return make_dao(JobmanSqliteDAO)


@pytest.fixture
def fresh_dao(backend: str, run_dir: Path) -> Iterator[Callable[..., Any]]:
    """``fresh_dao(cls, **kwargs)``: a new DAO on fresh tables (dropped, and the DAO closed,
    afterwards); ``reuse_tables=True`` keeps tables another fresh DAO made."""
    made: list[SqliteDAO] = []

    def make(
        cls: type[SqliteDAO] = WorkerSqliteDAO, reuse_tables: bool = False, **kwargs: Any
    ) -> Any:
        open_database(backend, run_dir)
        kwargs.setdefault("db_uri", backend_url(backend, run_dir))
        if not reuse_tables and kwargs["db_uri"] != "sqlite://":
            # Leftovers of an interrupted earlier run go first.
            stale = cls(**{**kwargs, "initialize": False})
            drop_tables(stale)
            stale.close()
        dao = cls(**kwargs)
        made.append(dao)
        return dao

    yield make
    for dao in made:
        drop_tables(dao)
        dao.close()

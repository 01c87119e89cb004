"""Fixtures of the node_nanny store's tests: DBConnection configured on each backend.

DBConnection is process-wide, so each test configures it for its backend (creating
missing tables is a no-op after the first time) and finds the tables empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import DBLayerError
from dblayer.stores.nanny import Base, DBConnection
from tests.conftest import backend_url


def empty_tables() -> None:
    """Delete every node_nanny row, children first."""
    connection = DBConnection.connection
    if connection is not None and connection.in_transaction():
        connection.rollback()  # a test's reads must not hold locks the DELETEs wait for
    with DBConnection.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(sa.delete(table))


@pytest.fixture(scope="session")
def _close_nanny() -> Iterator[None]:
    yield
    # The run's server databases are dropped at the end: let go of them first.
    if DBConnection.connection is not None:
        DBConnection.connection.close()
    if DBConnection.engine is not None:
        DBConnection.engine.dispose()


@pytest.fixture
def nanny(backend: str, run_dir: Path, _close_nanny: None) -> Iterator[type[DBConnection]]:
    """DBConnection configured for the backend under test, its tables empty."""
    url = backend_url(backend, run_dir)
    try:
        DBConnection.configure(url)
    except DBLayerError as e:
        pytest.fail(f"{backend} is not reachable: {e}", pytrace=False)
    empty_tables()
    yield DBConnection
    empty_tables()

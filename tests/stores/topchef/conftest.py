"""Fixtures of the TopChef store's tests: its tables created once per backend per run.

Tests use plain SQLAlchemy Sessions over the backend's engine, as TopChef did, and
find the tables empty (rows are deleted before and after each test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from dblayer.core import Database
from dblayer.stores.topchef.schemas import database


@pytest.fixture
def session(db: Database, tables_of) -> Iterator[Session]:
    """A Session on the backend under test, TopChef's tables empty."""
    tables_of(db, database.metadata)
    with Session(db.engine) as session:
        yield session
        session.rollback()

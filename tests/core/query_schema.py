"""Tables of the query-language and pagination tests (prefix ``q_``), and a SQL recorder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dblayer.core import Database, new_metadata

metadata = new_metadata()


class QBase(DeclarativeBase):
    """Declarative base of the query tests' ORM model (shares ``metadata``)."""

    metadata = metadata


# The dict query language over a Core table ...
items = sa.Table(
    "q_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100)),
    sa.Column("score", sa.Integer),
    sa.Column("flag", sa.Boolean),
)


class Item(QBase):
    """... and over a mapped class with the same columns."""

    __tablename__ = "q_orm_items"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str | None] = mapped_column(sa.String(100))
    score: Mapped[int | None] = mapped_column(sa.Integer)
    flag: Mapped[bool | None] = mapped_column(sa.Boolean)


# Hostile text stored as data (hypothesis round trips).
texts = sa.Table(
    "q_texts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.String(200), nullable=False),
)

# Keyset pagination: nullable keys with many duplicates, a non-null key, a composite order.
pages = sa.Table(
    "q_pages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("a", sa.Integer),
    sa.Column("b", sa.String(20)),
    sa.Column("c", sa.Integer, nullable=False),
)


class Page(QBase):
    """A mapped class over its own pagination table."""

    __tablename__ = "q_orm_pages"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    a: Mapped[int | None] = mapped_column(sa.Integer)
    b: Mapped[str | None] = mapped_column(sa.String(20))
    c: Mapped[int] = mapped_column(sa.Integer)


@contextmanager
def statements_sent(db: Database) -> Iterator[list[str]]:
    """Collect every SQL statement ``db`` sends inside the block (SQLite's BEGIN aside)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The SQLite engine issues BEGIN itself when a unit of work opens: not a query.
        if not statement.lstrip().upper().startswith("BEGIN"):
            sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)

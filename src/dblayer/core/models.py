"""Declarative base and the mixins models share: timestamps, soft delete, dict-style access."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, MetaData, Table, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .errors import InvalidQuery
from .types import UTCDateTime, exact_collation, utcnow

# Constraint names that are the same on every backend (Alembic compares them).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# MetaData.info flag: this metadata's tables compare text exactly on MariaDB/MySQL too.
EXACT_TEXT = "dblayer_exact_text"


def new_metadata(*, exact_text: bool = True) -> MetaData:
    """A fresh MetaData with dblayer's constraint naming convention (one per store).

    With ``exact_text`` its tables are created on MariaDB/MySQL with a binary collation,
    so ``=``, ``IN``, ``LIKE``, ORDER BY and unique keys treat text as PostgreSQL and
    SQLite do (case, accents and trailing spaces count), instead of the server default.
    """
    return MetaData(naming_convention=NAMING_CONVENTION, info={EXACT_TEXT: exact_text})


@event.listens_for(Table, "before_create")
def _exact_text_on_mysql(table: Table, connection: Connection, **_: Any) -> None:
    # Decided at CREATE time: the collation name depends on the server (MariaDB or MySQL).
    # A mariadb:// URL's dialect reads only mariadb_* table options, a mysql:// one mysql_*.
    name = connection.dialect.name
    if name not in ("mysql", "mariadb"):
        return
    if not table.metadata.info.get(EXACT_TEXT) or table.dialect_kwargs.get(f"{name}_collate"):
        return
    table.dialect_kwargs[f"{name}_charset"] = "utf8mb4"
    table.dialect_kwargs[f"{name}_collate"] = exact_collation(connection.dialect)


class Base(DeclarativeBase):
    """Declarative base for applications' own models (stores each declare their own)."""

    metadata = new_metadata()


class DictMixin:
    """Dict-style access to a mapped object: ``row["name"]``, ``get``, ``update``, ``dict(row)``."""

    def keys(self) -> list[str]:
        """The mapped column attribute names, in declaration order."""
        return [attr.key for attr in sa.inspect(type(self)).column_attrs]

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str):
            raise KeyError(key)
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and hasattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get(self, key: str, default: Any = None) -> Any:
        """The attribute ``key``, or ``default`` when there is none."""
        return getattr(self, key, default)

    def update(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Set several attributes at once, from a mapping and/or keyword arguments."""
        for key, value in {**(values or {}), **more}.items():
            setattr(self, key, value)

    def items(self) -> list[tuple[str, Any]]:
        """(column name, value) pairs."""
        return [(key, getattr(self, key)) for key in self.keys()]

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the column values."""
        return dict(self.items())


class TimestampMixin:
    """``created_at`` set on insert, ``updated_at`` set on every update (naive UTC)."""

    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), onupdate=utcnow)


class SoftDeleteMixin:
    """``deleted`` holds 0 while the row lives and the row's id once deleted, so unique
    constraints that include ``deleted`` admit one live row and any number of deleted ones."""

    deleted: Mapped[int | None] = mapped_column(sa.Integer, default=0)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    def soft_delete(self, session: Session) -> None:
        """Mark this row deleted (``deleted = id``, ``deleted_at = now``) and flush."""
        if self.id is None:  # type: ignore[attr-defined]
            # A row never flushed has no id yet, and deleted = NULL would not read as deleted.
            session.add(self)
            session.flush()
        self.deleted = self.id  # type: ignore[attr-defined]
        self.deleted_at = utcnow()
        session.add(self)
        session.flush()


def _table(target: Any) -> Table:
    table = target if isinstance(target, Table) else getattr(target, "__table__", None)
    if not isinstance(table, Table):
        raise InvalidQuery(f"expected a Table or a mapped class, got {target!r}")
    return table


def not_deleted_value(column: sa.Column[Any]) -> Any:
    """The value ``deleted`` holds on a live row, read off the column's type and default."""
    default = column.default
    if default is not None and getattr(default, "is_scalar", False):
        return default.arg
    if isinstance(column.type, sa.Boolean):
        return False
    if isinstance(column.type, sa.String):
        return ""
    return 0


def _deleted_column(target: Any) -> sa.Column[Any]:
    table = _table(target)
    if "deleted" not in table.c:
        raise InvalidQuery(f"table {table.name!r} has no 'deleted' column")
    return table.c.deleted


def _inline(value: Any) -> sa.ColumnElement[Any]:
    """The live-row marker written into the SQL, not bound: PostgreSQL plans a prepared
    statement's bound ``deleted = $1`` generically, guessing few rows match, and picks
    nested loops that are many times slower on tables of mostly live rows."""
    if isinstance(value, bool):
        return sa.true() if value else sa.false()
    if isinstance(value, int):
        return sa.literal_column(str(value))
    if value == "":
        return sa.literal_column("''")
    return sa.literal(value)


def live(target: Any) -> sa.ColumnElement[bool]:
    """The criterion "this row is not soft-deleted" for a table or mapped class."""
    column = _deleted_column(target)
    return column == _inline(not_deleted_value(column))


def soft_deleted(target: Any) -> sa.ColumnElement[bool]:
    """The criterion "this row is soft-deleted" for a table or mapped class."""
    column = _deleted_column(target)
    return column != _inline(not_deleted_value(column))


def soft_delete(conn: Connection | Session, target: Any, *where: sa.ColumnElement[bool]) -> int:
    """Soft-delete the live rows matching ``where`` in one UPDATE; return how many.

    ``deleted`` becomes the row's id and ``deleted_at`` now; ``updated_at`` is left as it was.
    Objects already loaded in a Session are not refreshed.
    """
    table = _table(target)
    alive = live(table)
    if "id" not in table.c:
        raise InvalidQuery(f"table {table.name!r} has no 'id' column to mark deleted rows with")
    if isinstance(conn, Session):
        # A Core UPDATE does not autoflush: let it see the session's pending rows.
        conn.flush()
    values: dict[str, Any] = {"deleted": table.c.id, "deleted_at": utcnow()}
    if "updated_at" in table.c:
        values["updated_at"] = table.c.updated_at
    stmt = sa.update(table).where(alive, *where).values(values)
    return conn.execute(stmt).rowcount

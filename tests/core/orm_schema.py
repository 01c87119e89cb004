"""Tables and models of the database, errors, types, models and archive tests.

Each area has its own MetaData (created once per backend per run by ``tables_of``):
``db_`` tables for Database and error translation, ``ty_`` for column types, ``md_``
for the ORM mixins (declared on dblayer's own ``Base``) and ``ar_`` for archiving.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dblayer.core import (
    JSON,
    UUID,
    Base,
    DictMixin,
    SoftDeleteMixin,
    TimestampMixin,
    UTCDateTime,
    create_shadow_tables,
    new_metadata,
)

# -- Database and errors ------------------------------------------------------------------

db_metadata = new_metadata()

counters = sa.Table(
    "db_counters",
    db_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
    sa.Column("value", sa.Integer, nullable=False, default=0),
)

pairs = sa.Table(
    "db_pairs",
    db_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("a", sa.String(20), nullable=False),
    sa.Column("b", sa.String(20), nullable=False),
    sa.Column("short", sa.String(5)),
    sa.Column("small", sa.Integer),
    sa.UniqueConstraint("a", "b"),
)

owners = sa.Table(
    "db_owners",
    db_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(50)),
)

pets = sa.Table(
    "db_pets",
    db_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("db_owners.id"), nullable=False),
)

# -- column types -------------------------------------------------------------------------

ty_metadata = new_metadata()

values = sa.Table(
    "ty_values",
    ty_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", JSON()),
    sa.Column("uid", UUID()),
    sa.Column("at", UTCDateTime()),
)

# -- ORM models on dblayer's Base ---------------------------------------------------------


class OrmBase(Base):
    """An abstract base over dblayer's Base with the tests' own MetaData."""

    __abstract__ = True
    metadata = new_metadata()


class MdWidget(OrmBase, DictMixin, TimestampMixin, SoftDeleteMixin):
    """A model with every mixin; ``name`` is unique among live rows."""

    __tablename__ = "md_widgets"
    __table_args__ = (sa.UniqueConstraint("name", "deleted"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    size: Mapped[int | None] = mapped_column(sa.Integer)

    @property
    def label(self) -> str:
        """A computed attribute, reachable as ``row["label"]`` like a column."""
        return f"{self.name}:{self.size}"


class MdPart(OrmBase, DictMixin):
    """A part of a widget (for relationships)."""

    __tablename__ = "md_parts"

    id: Mapped[int] = mapped_column(primary_key=True)
    widget_id: Mapped[int] = mapped_column(sa.ForeignKey("md_widgets.id"))
    label: Mapped[str | None] = mapped_column(sa.String(20))

    widget = relationship(MdWidget, viewonly=True)


MdWidget.parts = relationship(MdPart, viewonly=True, order_by=MdPart.id)

orm_metadata = OrmBase.metadata

# A table without ``id`` and one without ``deleted``, for the soft-delete errors.
md_keyed = sa.Table(
    "md_keyed",
    orm_metadata,
    sa.Column("code", sa.String(10), primary_key=True),
    sa.Column("deleted", sa.Integer, default=0),
    sa.Column("deleted_at", UTCDateTime()),
)
md_plain = sa.Table(
    "md_plain",
    orm_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
)

# -- archive ------------------------------------------------------------------------------

ar_metadata = new_metadata()

ar_parents = sa.Table(
    "ar_parents",
    ar_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("data", JSON()),
    sa.Column("uid", UUID()),
    sa.Column("created_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Column("deleted", sa.Integer, default=0),
    sa.UniqueConstraint("name", "deleted"),
    sa.Index("ix_ar_parents_created", "created_at"),
)

ar_children = sa.Table(
    "ar_children",
    ar_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("ar_parents.id"), nullable=False),
    sa.Column("note", sa.String(50)),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Column("deleted", sa.Integer, default=0),
)

# A tree: a node refers to its parent node in the same table.
ar_nodes = sa.Table(
    "ar_nodes",
    ar_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("ar_nodes.id")),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Column("deleted", sa.Integer, default=0),
)

# Like nova's dns_domains: a string key and a Boolean ``deleted``.
ar_domains = sa.Table(
    "ar_domains",
    ar_metadata,
    sa.Column("domain", sa.String(100), primary_key=True),
    sa.Column("scope", sa.String(20)),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Column("deleted", sa.Boolean, default=False),
)

# No ``deleted`` column: never archived.
ar_plain = sa.Table(
    "ar_plain",
    ar_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
)

ar_shadows = create_shadow_tables(ar_metadata)

# A table that gets no shadow (added after the shadows were made): archiving it gives 0.
ar_unshadowed = sa.Table(
    "ar_unshadowed",
    ar_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Column("deleted", sa.Integer, default=0),
)

A_DAY = dt.timedelta(days=1)

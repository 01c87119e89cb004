"""Tables the core tests share; created once per backend per run."""

from __future__ import annotations

import sqlalchemy as sa

from dblayer.core import JSON, UUID, UTCDateTime, create_shadow_tables, kv_table, new_metadata

metadata = new_metadata()

items = sa.Table(
    "core_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20)),
    sa.Column("score", sa.Integer),
    sa.Column("data", JSON()),
    sa.Column("uid", UUID()),
    sa.Column("created", UTCDateTime()),
)

parents = sa.Table(
    "core_parents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("deleted", sa.Integer, default=0),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
)

children = sa.Table(
    "core_children",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("core_parents.id"), nullable=False),
    sa.Column("note", sa.String(50)),
    sa.Column("deleted", sa.Integer, default=0),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
)

kv = kv_table("core_kv", metadata)

shadows = create_shadow_tables(metadata)

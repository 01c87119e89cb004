"""Tables of the claims / key-value / conditional-update / upsert tests (prefix ``cl_``).

Created once per backend per run; the concurrency tests commit real rows here.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from dblayer.core import JSON, UTCDateTime, kv_table, new_metadata, utcnow

metadata = new_metadata()

# A job queue: workers claim PENDING rows and stamp their id into ``worker``.
jobs = sa.Table(
    "cl_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("worker", sa.String(40)),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("payload", JSON()),
    sa.Column("updated_at", UTCDateTime(), onupdate=utcnow),
)

# A queue with leases: claims record their worker and lease end, and the status they took
# the row from (``claimed_from``), so that a requeue can put it back.
leased = sa.Table(
    "cl_leased",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("lease_expires", sa.Double),
    sa.Column("claimed_from", sa.String(20)),
)

# A table with a composite primary key (claims refuse it; upserts key on both columns).
pairs = sa.Table(
    "cl_pairs",
    metadata,
    sa.Column("a", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("b", sa.String(20), primary_key=True),
    sa.Column("status", sa.String(20)),
    sa.Column("value", sa.Integer),
)

# nova-style rows for conditional updates.
servers = sa.Table(
    "cl_servers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("host", sa.String(50)),
    sa.Column("vm_state", sa.String(50)),
    sa.Column("task", sa.String(50)),
)

# Rows for upserts: a primary key, a unique name, a NOT NULL column and free columns.
things = sa.Table(
    "cl_things",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
    sa.Column("score", sa.Integer, nullable=False, default=0),
    sa.Column("note", sa.String(50)),
    sa.Column("tags", JSON()),
)

kv = kv_table("cl_kv", metadata)
short_kv = kv_table("cl_kv_short", metadata, key_length=10)


class ClBase(DeclarativeBase):
    """A declarative base over this module's MetaData."""

    metadata = metadata


class Server(ClBase):
    """``cl_servers`` as a mapped class (conditional updates and constraints take either)."""

    __table__ = servers

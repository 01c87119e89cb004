"""jobman: lease columns on the job table (crash-safe claims)

``claimed_by`` (the claiming DAO's worker id), ``claim_expires`` (end of the lease, in
seconds since the epoch on the database's clock) and ``claimed_from`` (the status the
claim took the job from, of the status field's type): the job table's columns marked
``info={"jobman_since": "0002"}``. A column already there is left alone, so a table
that a DAO brought up to date itself upgrades too.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from dblayer.stores.jobman.jobs import SINCE

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _added() -> list[tuple[str, list[sa.Column]]]:
    """(table name, the columns this revision adds to it) for the DAO's tables."""
    metadata = context.get_context().opts["target_metadata"]
    found = []
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns if c.info.get(SINCE) == revision]
        if columns:
            found.append((table.name, columns))
    return found


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for name, columns in _added():
        present = {c["name"] for c in inspector.get_columns(name)}
        for column in columns:
            if column.name not in present:
                op.add_column(name, sa.Column(column.name, column.type, nullable=True))


def downgrade() -> None:
    for name, columns in _added():
        with op.batch_alter_table(name) as batch:
            for column in columns:
                batch.drop_column(column.name)

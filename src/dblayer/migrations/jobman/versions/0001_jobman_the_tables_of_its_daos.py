"""jobman: the job and key-value tables of its DAOs

jobman's tables depend on the DAO's options (``dao``, ``table_prefix``,
``extra_job_fields``: see ``dblayer.migrations``), so this revision creates the tables
the store's MetaData holds for those options (columns and indexes), not a fixed list,
less the columns a later revision adds (marked ``info={"jobman_since": revision}``).

Revision ID: 0001
Revises:
Create Date: 2026-11-29 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from dblayer.core.migrations import exact_text
from dblayer.stores.jobman.jobs import SINCE

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[sa.Table]:
    """The tables of the DAO these migrations run for (env.py's target metadata)."""
    return list(context.get_context().opts["target_metadata"].sorted_tables)


def upgrade() -> None:
    for table in _tables():
        op.create_table(
            table.name,
            *[
                sa.Column(
                    column.name,
                    column.type,
                    primary_key=column.primary_key,
                    nullable=column.nullable,
                    autoincrement=column.autoincrement,
                )
                for column in table.columns
                if not column.info.get(SINCE)  # added by a later revision
            ],
            **exact_text(),
        )
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            op.create_index(
                index.name,
                table.name,
                [column.name for column in index.columns],
                unique=index.unique,
                **dict(index.dialect_kwargs),  # mysql_length: MariaDB indexes TEXT by a prefix
            )


def downgrade() -> None:
    for table in reversed(_tables()):
        op.drop_table(table.name)

"""blitz: the schema its models declare

Revision ID: 0001
Revises:
Create Date: 2026-11-29 18:38:36.720196
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dblayer.core.migrations import exact_text

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cache',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('timeLogged', sa.BigInteger(), nullable=True),
    sa.Column('categoryId', sa.Integer(), nullable=True),
    sa.Column('value', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cache')),
    **exact_text(),
    )
    with op.batch_alter_table('cache', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cache_categoryId'), ['categoryId'], unique=False)

    op.create_table('category',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('variableName', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_category')),
    sa.UniqueConstraint('variableName', name=op.f('uq_category_variableName')),
    **exact_text(),
    )
    op.create_table('config',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=True),
    sa.Column('value', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_config')),
    **exact_text(),
    )
    with op.batch_alter_table('config', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_config_key'), ['key'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('timeLogged', sa.BigInteger(), nullable=True),
    sa.Column('severity', sa.Integer(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    **exact_text(),
    )
    op.create_table('session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref_id', sa.Integer(), nullable=True),
    sa.Column('available', sa.Boolean(), nullable=True),
    sa.Column('timeStarted', sa.BigInteger(), nullable=True),
    sa.Column('timeStopped', sa.BigInteger(), nullable=True),
    sa.Column('numberOfReadings', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_session')),
    sa.UniqueConstraint('ref_id', name=op.f('uq_session_ref_id')),
    **exact_text(),
    )
    op.create_table('reading',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sessionId', sa.Integer(), nullable=True),
    sa.Column('timeLogged', sa.BigInteger(), nullable=True),
    sa.Column('categoryId', sa.Integer(), nullable=True),
    sa.Column('value', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['categoryId'], ['category.id'], name=op.f('fk_reading_categoryId_category')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reading')),
    **exact_text(),
    )
    with op.batch_alter_table('reading', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reading_sessionId'), ['sessionId'], unique=False)



def downgrade() -> None:
    # Dropping a table drops its indexes (MariaDB refuses to drop one a foreign key needs).
    op.drop_table('reading')
    op.drop_table('session')
    op.drop_table('notifications')
    op.drop_table('config')
    op.drop_table('category')
    op.drop_table('cache')

"""nanny: the schema its models declare

Revision ID: 0001
Revises:
Create Date: 2026-11-29 18:38:35.141308
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dblayer.core.types
from dblayer.core.migrations import exact_text

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('user',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user')),
    sa.UniqueConstraint('name', name=op.f('uq_user_name')),
    **exact_text(),
    )
    op.create_table('notification',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('time', dblayer.core.types.UTCDateTime(), nullable=False),
    sa.Column('memory', sa.Integer(), nullable=False),
    sa.Column('percentage', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=255), nullable=False),
    sa.Column('limit', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_notification_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification')),
    **exact_text(),
    )
    op.create_table('whitelist',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('node', sa.String(length=255), nullable=True),
    sa.Column('start_time', dblayer.core.types.UTCDateTime(), nullable=False),
    sa.Column('end_time', dblayer.core.types.UTCDateTime(), nullable=False),
    sa.Column('global_whitelist', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_whitelist_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whitelist')),
    **exact_text(),
    )


def downgrade() -> None:
    op.drop_table('whitelist')
    op.drop_table('notification')
    op.drop_table('user')

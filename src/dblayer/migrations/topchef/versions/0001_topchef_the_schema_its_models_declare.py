"""topchef: the schema its models declare

Revision ID: 0001
Revises:
Create Date: 2026-11-29 18:38:35.907203
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dblayer.core.types
import dblayer.stores.topchef.json_type
import dblayer.stores.topchef.uuid_database_type
from dblayer.core.migrations import exact_text

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_sets',
    sa.Column('job_set_id', dblayer.stores.topchef.uuid_database_type.UUID(), nullable=False),
    sa.Column('description', sa.String(length=140), nullable=False),
    sa.PrimaryKeyConstraint('job_set_id', name=op.f('pk_job_sets')),
    **exact_text(),
    )
    op.create_table('services',
    sa.Column('service_id', dblayer.stores.topchef.uuid_database_type.UUID(), nullable=False),
    sa.Column('name', sa.String(length=30), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=False),
    sa.Column('last_checked_in', dblayer.core.types.UTCDateTime(), nullable=False),
    sa.Column('heartbeat_timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('is_service_available', sa.Boolean(), nullable=False),
    sa.Column('job_registration_schema', dblayer.stores.topchef.json_type.JSON(), nullable=False),
    sa.Column('job_result_schema', dblayer.stores.topchef.json_type.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('service_id', name=op.f('pk_services')),
    **exact_text(),
    )
    op.create_table('jobs',
    sa.Column('job_id', dblayer.stores.topchef.uuid_database_type.UUID(), nullable=False),
    sa.Column('service_id', dblayer.stores.topchef.uuid_database_type.UUID(), nullable=False),
    sa.Column('date_submitted', dblayer.core.types.UTCDateTime(), nullable=False),
    sa.Column('status', sa.Enum('REGISTERED', 'COMPLETED', 'WORKING', 'ERROR', name='jobstatus'), nullable=True),
    sa.Column('parameters', dblayer.stores.topchef.json_type.JSON(), nullable=False),
    sa.Column('results', dblayer.stores.topchef.json_type.JSON(), nullable=True),
    sa.Column('job_set_id', dblayer.stores.topchef.uuid_database_type.UUID(), nullable=True),
    sa.ForeignKeyConstraint(['job_set_id'], ['job_sets.job_set_id'], name=op.f('fk_jobs_job_set_id_job_sets')),
    sa.ForeignKeyConstraint(['service_id'], ['services.service_id'], name=op.f('fk_jobs_service_id_services')),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_jobs')),
    **exact_text(),
    )


def downgrade() -> None:
    op.drop_table('jobs')
    op.drop_table('services')
    op.drop_table('job_sets')
    # PostgreSQL keeps the enum type the jobs table created; drop it with the store.
    sa.Enum(name='jobstatus').drop(op.get_bind(), checkfirst=True)

"""Alembic migrations of the topchef store (revisions in versions/)."""

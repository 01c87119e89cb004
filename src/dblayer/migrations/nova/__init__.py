"""Alembic migrations of the nova store (revisions in versions/)."""

"""Alembic migrations of the blitz store (revisions in versions/)."""

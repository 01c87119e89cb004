"""Alembic migrations of the jobman store (revisions in versions/)."""

"""Alembic migrations of the nanny store (revisions in versions/)."""

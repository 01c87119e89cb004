"""Tests of the stores' Alembic migrations."""

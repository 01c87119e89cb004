"""Alembic environment: dblayer runs the store's migrations (see dblayer.core.migrations)."""

from dblayer.core.migrations import run_env

run_env()

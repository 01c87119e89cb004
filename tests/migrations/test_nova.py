"""The nova store's migrations on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from .cycle import MIGRATION_BACKENDS, round_trip, store_database


@pytest.mark.parametrize("backend", MIGRATION_BACKENDS)
def test_upgrade_check_downgrade(backend: str, run_dir: Path) -> None:
    round_trip(store_database(backend, run_dir, "nova"), "nova")


def test_migrated_sqlite_tables_never_reuse_ids(run_dir: Path) -> None:
    # As create_all: AUTOINCREMENT, so an id archived to a shadow table is never handed out
    # again (archiving the new row would collide with the archived one).
    import sqlalchemy as sa

    from dblayer.core import migrations

    db = store_database("sqlite_file", run_dir, "nova_ids")
    migrations.upgrade(db, "nova")
    try:
        with db.transaction(readonly=True) as conn:
            sql = conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = 'instances'")
            ).scalar_one()
        assert "AUTOINCREMENT" in sql
    finally:
        migrations.downgrade(db, "nova", "base")

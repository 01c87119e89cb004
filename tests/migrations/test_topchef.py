"""The topchef store's migrations on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from .cycle import MIGRATION_BACKENDS, round_trip, store_database


@pytest.mark.parametrize("backend", MIGRATION_BACKENDS)
def test_upgrade_check_downgrade(backend: str, run_dir: Path) -> None:
    round_trip(store_database(backend, run_dir, "topchef"), "topchef")

"""One migration round trip of a store on one backend: empty -> head -> check -> base."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from dblayer.core import Database, migrations
from dblayer.core.models import EXACT_TEXT
from dblayer.core.types import exact_collation
from tests.conftest import open_database

# The backends every store's migrations are tested on (one database per store and run).
MIGRATION_BACKENDS = ["sqlite_file", "postgresql", "mariadb"]


def store_database(backend: str, run_dir: Path, store: str) -> Database:
    """An empty database of this run for ``store``'s migration test (``mig_<store>``)."""
    return open_database(backend, run_dir, store=f"mig_{store}")


def _tables(db: Database) -> set[str]:
    return set(db.table_names())


def _enum_types(db: Database) -> set[str]:
    """PostgreSQL's enum types in the database (created with tables that use sa.Enum)."""
    with db.transaction(readonly=True) as conn:
        return set(
            conn.execute(sa.text("SELECT typname FROM pg_type WHERE typtype = 'e'")).scalars()
        )


def _collations(db: Database, tables: set[str]) -> tuple[set[str], set[str]]:
    """The collations of ``tables`` and of their text columns on MariaDB/MySQL."""
    with db.transaction(readonly=True) as conn:
        schema = conn.execute(sa.text("SELECT DATABASE()")).scalar_one()
        rows = conn.execute(
            sa.text(
                "SELECT table_name, table_collation FROM information_schema.tables"
                " WHERE table_schema = :s"
            ),
            {"s": schema},
        ).all()
        of_tables = {collation for name, collation in rows if name in tables}
        rows = conn.execute(
            sa.text(
                "SELECT table_name, collation_name FROM information_schema.columns"
                " WHERE table_schema = :s AND collation_name IS NOT NULL"
            ),
            {"s": schema},
        ).all()
        return of_tables, {collation for name, collation in rows if name in tables}


def round_trip(db: Database, store: str, **params: object) -> None:
    """Upgrade ``store`` from an empty database to head; the autogenerate comparison
    finds no difference; downgrade to base leaves none of its tables behind."""
    spec = migrations.store_migrations(store)
    metadata = migrations.store_metadata(store, params)
    expected = set(metadata.tables)
    version_table = spec.version_table_name(params)
    assert not _tables(db) & (expected | {version_table}), "the database is not empty"
    enums_before = _enum_types(db) if db.backend == "postgresql" else set()

    assert migrations.current(db, store, **params) is None
    head = migrations.upgrade(db, store, **params)
    assert head == migrations.heads(store)[0]
    assert migrations.current(db, store, **params) == head
    assert _tables(db) >= expected | {version_table}

    diffs = migrations.check(db, store, **params)
    assert diffs == [], diffs

    if db.backend == "mysql" and metadata.info.get(EXACT_TEXT):
        # Text compares byte for byte, as with create_all (dblayer's binary collation).
        # (MariaDB's JSON columns are utf8mb4_bin whatever the table's collation: exact too.)
        exact = exact_collation(db.engine.dialect)
        of_tables, of_columns = _collations(db, expected)
        assert of_tables == {exact}
        assert of_columns <= {exact, "utf8mb4_bin"}, of_columns

    assert migrations.downgrade(db, store, "base", **params) is None
    assert migrations.current(db, store, **params) is None
    left = _tables(db) & (expected | {version_table})
    assert not left, f"tables left behind: {sorted(left)}"
    if db.backend == "postgresql":
        assert _enum_types(db) == enums_before

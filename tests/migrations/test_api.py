"""dblayer.core.migrations: the registry, errors, check's differences, stores sharing a database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import Database, InvalidValue, migrations

from .cycle import MIGRATION_BACKENDS, store_database


@pytest.fixture(params=MIGRATION_BACKENDS)
def mig_db(request: pytest.FixtureRequest, run_dir: Path) -> Iterator[Database]:
    """An empty database of this run for these tests; left empty afterwards."""
    db = store_database(request.param, run_dir, "api")
    yield db
    for store in ("nanny", "topchef"):
        migrations.downgrade(db, store, "base")
    assert db.table_names() == []


def test_registry_names_the_stores() -> None:
    assert {"nanny", "topchef", "blitz", "nova"} <= set(migrations.stores())
    spec = migrations.store_migrations("nova")
    assert spec.version_table == "alembic_version_nova"
    assert migrations.heads("nova") == ["0001"]
    [first] = migrations.history("nanny")
    assert first["revision"] == "0001" and first["down_revision"] is None


def test_unknown_store_and_option_are_refused() -> None:
    with pytest.raises(InvalidValue, match="no migrations for store 'nope'.*nanny"):
        migrations.store_migrations("nope")
    with pytest.raises(InvalidValue, match="takes no migration option table_prefix"):
        migrations.check("sqlite://", "nanny", table_prefix="x_")


def test_unknown_revision_is_refused(mig_db: Database) -> None:
    with pytest.raises(InvalidValue, match="migration"):
        migrations.upgrade(mig_db, "nanny", "9999")
    assert migrations.current(mig_db, "nanny") is None


def test_check_reports_missing_and_extra(mig_db: Database) -> None:
    diffs = migrations.check(mig_db, "nanny")
    assert sorted(d[1].name for d in diffs if d[0] == "add_table") == [
        "notification",
        "user",
        "whitelist",
    ]
    migrations.upgrade(mig_db, "nanny")
    with mig_db.transaction() as conn:
        conn.execute(sa.text("ALTER TABLE whitelist ADD COLUMN surplus INTEGER"))
    [diff] = migrations.check(mig_db, "nanny")
    assert diff[0] == "remove_column" and diff[3].name == "surplus"


def test_stores_share_a_database(mig_db: Database) -> None:
    assert migrations.upgrade(mig_db, "nanny") == "0001"
    assert migrations.upgrade(mig_db, "topchef") == "0001"
    tables = set(mig_db.table_names())
    assert {"alembic_version_nanny", "alembic_version_topchef", "user", "jobs"} <= tables
    # Each store compares its own tables only.
    assert migrations.check(mig_db, "nanny") == []
    assert migrations.check(mig_db, "topchef") == []
    assert migrations.downgrade(mig_db, "nanny", "base") is None
    assert set(mig_db.table_names()) == {
        "alembic_version_topchef",
        "services",
        "jobs",
        "job_sets",
    }
    assert migrations.current(mig_db, "topchef") == "0001"


def test_stamp_and_url(mig_db: Database, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stamped.db'}"
    assert migrations.stamp(url, "nanny") == "0001"
    assert migrations.current(url, "nanny") == "0001"
    with Database(url) as db:
        assert db.table_names() == ["alembic_version_nanny"]
        assert migrations.upgrade(db, "nanny") == "0001"  # nothing to run: stamped at head
        assert db.table_names() == ["alembic_version_nanny"]
        assert migrations.stamp(db, "nanny", "base") is None
        assert db.table_names() == []
    # On a server too: stamping records the revision, upgrading from there runs the rest.
    migrations.stamp(mig_db, "nanny")
    assert migrations.current(mig_db, "nanny") == "0001"
    migrations.stamp(mig_db, "nanny", "base")
    assert migrations.upgrade(mig_db, "nanny") == "0001"
    assert migrations.check(mig_db, "nanny") == []


def test_describe_puts_each_difference_in_words(mig_db: Database) -> None:
    missing = [migrations.describe(d) for d in migrations.check(mig_db, "nanny")]
    assert sorted(missing) == [
        "missing table notification",
        "missing table user",
        "missing table whitelist",
    ]
    migrations.upgrade(mig_db, "nanny")
    with mig_db.transaction() as conn:
        conn.execute(sa.text("ALTER TABLE whitelist ADD COLUMN surplus INTEGER"))
        conn.execute(sa.text("CREATE INDEX extra_idx ON whitelist (node)"))
    found = sorted(migrations.describe(d) for d in migrations.check(mig_db, "nanny"))
    assert found == ["extra column whitelist.surplus", "extra index extra_idx on whitelist (node)"]
    modified = ("modify_type", None, "t", "c", {}, sa.Integer(), sa.BigInteger())
    assert (
        migrations.describe([modified])
        == "type of t.c: INTEGER in the database, BIGINT in the models"
    )


def test_add_missing_refuses_other_differences_unless_told_to_ignore_them(
    mig_db: Database,
) -> None:
    migrations.upgrade(mig_db, "nanny")
    with mig_db.transaction() as conn:
        conn.execute(sa.text("DROP TABLE notification"))
        conn.execute(sa.text("ALTER TABLE whitelist DROP COLUMN node"))
        conn.execute(sa.text("ALTER TABLE whitelist ADD COLUMN surplus INTEGER"))
    before = sorted(migrations.describe(d) for d in migrations.check(mig_db, "nanny"))
    assert before == [
        "extra column whitelist.surplus",
        "missing column whitelist.node",
        "missing table notification",
    ]
    # Refused (the default, and said so): nothing is added either.
    for refuse in ({}, {"others": "refuse"}):
        with pytest.raises(InvalidValue, match="does not change: extra column whitelist.surplus"):
            migrations.add_missing(mig_db, "nanny", **refuse)
    with pytest.raises(InvalidValue, match="others must be one of 'refuse', 'ignore'; got 'drop'"):
        migrations.add_missing(mig_db, "nanny", others="drop")
    assert sorted(migrations.describe(d) for d in migrations.check(mig_db, "nanny")) == before

    # Ignored: the additions are made, the extra column is left as it is.
    done = migrations.add_missing(mig_db, "nanny", others="ignore")
    assert sorted(done) == ["add_column whitelist.node", "add_table notification"]
    found = [migrations.describe(d) for d in migrations.check(mig_db, "nanny")]
    assert found == ["extra column whitelist.surplus"]
    assert migrations.add_missing(mig_db, "nanny", others="ignore") == []


def test_stores_with_an_original_to_adopt() -> None:
    with_original = {s for s in migrations.stores() if migrations.store_migrations(s).original}
    assert with_original == {"nanny", "topchef", "jobman", "blitz"}
    original = migrations.store_migrations("jobman").original(
        "sqlite", {"dao": "engine", "table_prefix": "e_"}
    )
    assert [t.name for t in original.tables] == ["e_job", "e_kvp"]
    assert list(original.tables[0].columns) == ["created", "modified", "key", "status"]

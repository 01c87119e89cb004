"""``dblayer archive --before DATE``: only rows soft-deleted before DATE move, run as a user
runs it (the installed entry point in a subprocess) on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from dblayer.core import Database, live
from dblayer.stores.nova.models import BASE
from tests.cli.test_cli import _instances, _where, db, one_line_error, run, run_json, run_ok, url

__all__ = ["db", "url"]  # the fixtures, shared with test_cli

NOVA = BASE.metadata
LONG_AGO = dt.datetime(2020, 3, 1, 8, 30)


def backdate(database: Database, uuid: str) -> None:
    """Make ``uuid``'s instance, and the rows deleted with it, deleted long ago."""
    instances = NOVA.tables["instances"]
    with database.transaction() as conn:
        conn.execute(
            sa.update(instances).where(instances.c.uuid == uuid).values(deleted_at=LONG_AGO)
        )
        for table in NOVA.sorted_tables:
            if "instance_uuid" in table.c and "deleted" in table.c:
                conn.execute(
                    sa.update(table)
                    .where(table.c.instance_uuid == uuid, ~live(table))
                    .values(deleted_at=LONG_AGO)
                )


def test_archive_before(url: str, db: Database) -> None:
    uuids = _instances(db, live=1, destroyed=3)
    for uuid in uuids[1:3]:
        backdate(db, uuid)
    out = run_json("archive", "--store", "nova", "--before", "2021-01-01", "--url", url)
    assert out["before"] == "2021-01-01T00:00:00+00:00"
    assert out["archived"]["instances"] == 2
    assert out["total"] == sum(out["archived"].values())
    assert _where(db, "shadow_instances", uuids[1:3]) == 2
    assert _where(db, "instances", uuids[1:3]) == 0
    assert _where(db, "instances", [uuids[0], uuids[3]]) == 2  # live, and deleted just now
    # Nothing else was deleted before then.
    again = run_json("archive", "--before", "2021-01-01T00:00:00+01:00", "--url", url)
    assert again["total"] == 0 and again["deleted_rows_left"] == 0
    rest = run_ok("archive", "--url", url, "--before", "2999-12-31")
    assert "deleted before 2999-12-31 00:00:00 UTC" in rest.stdout
    assert _where(db, "shadow_instances", uuids[1:]) == 3
    assert _where(db, "instances", uuids) == 1


def test_bad_before_is_one_line(run_dir: Path) -> None:
    from tests.conftest import backend_url

    url = backend_url("sqlite_file", run_dir, store="cli")
    assert "ISO date" in one_line_error(run("archive", "--before", "yesterday", "--url", url))

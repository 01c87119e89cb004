"""DNS domains (nova notes §3.28): registration (get-or-create, safe when callers race),
lookups of live rows, HARD unregister, access checks, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidValue
from dblayer.stores.nova import RequestContext, exception, models
from tests.concurrency import run_processes

D = models.DNSDomain


def rows(db: Database) -> list[dict]:
    """Every domain row (deleted ones too), as dicts, by name."""
    with db.transaction() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(D.__table__).order_by(D.domain))]


def add_deleted(db: Database, domain: str) -> None:
    with db.session() as session:
        session.add(D(domain=domain, deleted=True, scope="public", project_id="old"))


def test_register_get_and_list(nova_db, admin, ctx):
    assert nova.dnsdomain_register_for_zone(admin, "b.example.org", "az1") is None
    got = nova.dnsdomain_get(ctx, "b.example.org")
    assert (got.domain, got.scope, got.availability_zone, got.project_id) == (
        "b.example.org",
        "private",
        "az1",
        None,
    )
    assert got.deleted is False and got["created_at"] is not None
    assert nova.dnsdomain_register_for_project(admin, "a.example.org", "project1") is None
    [a, b] = rows(nova_db)
    assert (a["scope"], a["project_id"], a["availability_zone"]) == ("public", "project1", None)
    assert b["updated_at"] is None  # a new record is inserted as it is

    # Registering again changes the record in place; its other columns stay (as in nova).
    nova.dnsdomain_register_for_project(admin, "b.example.org", "project2")
    b = nova.dnsdomain_get(admin, "b.example.org")
    assert (b.scope, b.project_id, b.availability_zone) == ("public", "project2", "az1")
    assert b.updated_at is not None
    nova.dnsdomain_register_for_zone(admin, "b.example.org", None)
    assert nova.dnsdomain_get(admin, "b.example.org").scope == "private"

    assert nova.dnsdomain_list(ctx) == ["a.example.org", "b.example.org"]
    assert [d.domain for d in nova.dnsdomain_get_all(ctx)] == ["a.example.org", "b.example.org"]
    assert nova.dnsdomain_get(ctx, "c.example.org") is None
    assert nova.dnsdomain_get(ctx, None) is None


def test_deleted_records(nova_db, admin, ctx):
    add_deleted(nova_db, "old.example.org")
    yes = nova.get_admin_context(read_deleted="yes")
    # Lookups see live records only, whatever the context's read_deleted.
    assert nova.dnsdomain_get(yes, "old.example.org") is None
    assert nova.dnsdomain_list(yes) == [] and nova.dnsdomain_get_all(yes) == []
    # Registering a deleted name brings it back as a new record.
    nova.dnsdomain_register_for_zone(admin, "old.example.org", "az9")
    [row] = rows(nova_db)
    assert (row["deleted"], row["scope"], row["availability_zone"], row["project_id"]) == (
        False,
        "private",
        "az9",
        None,
    )
    assert nova.dnsdomain_list(ctx) == ["old.example.org"]


def test_unregister_is_a_hard_delete(nova_db, admin):
    nova.dnsdomain_register_for_zone(admin, "a.example.org", "az1")
    nova.dnsdomain_register_for_zone(admin, "b.example.org", "az1")
    add_deleted(nova_db, "c.example.org")
    assert nova.dnsdomain_unregister(admin, "a.example.org") is None
    assert nova.dnsdomain_unregister(admin, "x.example.org") is None
    assert [r["domain"] for r in rows(nova_db)] == ["b.example.org", "c.example.org"]
    # The context's read_deleted picks the rows: a deleted record goes only with 'yes'/'only'.
    nova.dnsdomain_unregister(admin, "c.example.org")
    assert len(rows(nova_db)) == 2
    nova.dnsdomain_unregister(nova.get_admin_context(read_deleted="only"), "b.example.org")
    assert len(rows(nova_db)) == 2
    nova.dnsdomain_unregister(nova.get_admin_context(read_deleted="yes"), "c.example.org")
    assert [r["domain"] for r in rows(nova_db)] == ["b.example.org"]
    # A domain can be registered again after unregistering.
    nova.dnsdomain_register_for_project(admin, "a.example.org", "project1")
    assert nova.dnsdomain_get(admin, "a.example.org").project_id == "project1"


def test_access_and_bad_values(nova_db, admin, ctx):
    nova.dnsdomain_register_for_zone(admin, "a.example.org", "az1")
    before = rows(nova_db)
    for call in (
        lambda: nova.dnsdomain_register_for_zone(ctx, "b.example.org", "az1"),
        lambda: nova.dnsdomain_register_for_project(ctx, "b.example.org", "project1"),
        lambda: nova.dnsdomain_unregister(ctx, "a.example.org"),
    ):
        with pytest.raises(exception.AdminRequired):
            call()
    incomplete = RequestContext(None, None)  # neither admin nor a user
    for call in (
        lambda: nova.dnsdomain_get(incomplete, "a.example.org"),
        lambda: nova.dnsdomain_list(incomplete),
    ):
        with pytest.raises(exception.Forbidden):
            call()
    # dnsdomain_get_all checks no context at all, as in nova.
    assert [d.domain for d in nova.dnsdomain_get_all(incomplete)] == ["a.example.org"]
    for call in (
        lambda: nova.dnsdomain_register_for_zone(admin, None, "az1"),
        lambda: nova.dnsdomain_register_for_zone(admin, "x" * 256, "az1"),
        lambda: nova.dnsdomain_register_for_zone(admin, "b.example.org", "z" * 256),
        lambda: nova.dnsdomain_register_for_project(admin, "b.example.org", 7),
        lambda: nova.dnsdomain_get(ctx, 5),
    ):
        with pytest.raises(InvalidValue):
            call()
    assert rows(nova_db) == before


# -- racing registrations --------------------------------------------------------------------

DOMAINS = [f"d{i}.example.org" for i in range(8)]


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def _register_all(_db: Any, index: int) -> int:
    """Register every domain, half of the children for a zone, half for a project."""
    admin = nova.get_admin_context()
    for domain in DOMAINS:
        if index % 2:
            nova.dnsdomain_register_for_zone(admin, domain, f"az{index}")
        else:
            nova.dnsdomain_register_for_project(admin, domain, f"project{index}")
    return index


def test_racing_registrations_make_one_record_each(nova_url):
    # Two processes register the same new domains at once, one for a zone, one for a project.
    opener = partial(_nova_on, nova_url)
    assert run_processes(opener, _register_all, [(0,), (1,)]) == [0, 1]
    found = rows(nova.get_database())
    assert [r["domain"] for r in found] == DOMAINS
    for row in found:
        assert row["deleted"] is False
        # The record holds the last registration's scope and value (and maybe the other's).
        if row["scope"] == "private":
            assert row["availability_zone"] == "az1"
            assert row["project_id"] in (None, "project0")
        else:
            assert row["scope"] == "public" and row["project_id"] == "project0"
            assert row["availability_zone"] in (None, "az1")

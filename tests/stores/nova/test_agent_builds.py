"""Agent builds (nova notes §3.26): admin-only, unique live (hypervisor, os, architecture),
update and destroy by id, on every backend."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, models
from tests.stores.nova.conftest import table_rows

AB = models.AgentBuild


def rows(db: Database) -> list[dict]:
    return table_rows(db, AB)


def build(admin, hypervisor="xen", os="linux", architecture="x86_64", **more):
    values = {"hypervisor": hypervisor, "os": os, "architecture": architecture, **more}
    return nova.agent_build_create(admin, values)


def test_create_and_lookups(nova_db, admin):
    a = build(admin, version="1.0", url="http://a", md5hash="abc")
    b = build(admin, os="windows")
    c = build(admin, hypervisor="kvm")
    assert a.id and a["version"] == "1.0" and dict(a)["md5hash"] == "abc" and a.deleted == 0
    got = nova.agent_build_get_by_triple(admin, "xen", "linux", "x86_64")
    assert got.id == a.id and got.url == "http://a"
    assert nova.agent_build_get_by_triple(admin, "xen", "linux", "arm") is None
    assert [x.id for x in nova.agent_build_get_all(admin)] == [a.id, b.id, c.id]
    assert [x.id for x in nova.agent_build_get_all(admin, "xen")] == [a.id, b.id]
    assert [x.id for x in nova.agent_build_get_all(admin, hypervisor="")] == [a.id, b.id, c.id]
    assert nova.agent_build_get_all(admin, "hyperv") == []


def test_a_duplicate_live_triple_is_refused(nova_db, admin):
    a = build(admin)
    before = rows(nova_db)
    with pytest.raises(exception.AgentBuildExists, match="xen, linux, x86_64"):
        build(admin, version="2.0")
    assert rows(nova_db) == before
    # Unique among live rows only: once destroyed, the triple may be created again.
    nova.agent_build_destroy(admin, a.id)
    again = build(admin, version="2.0")
    assert again.id != a.id
    assert nova.agent_build_get_by_triple(admin, "xen", "linux", "x86_64").id == again.id


def test_destroy_soft_deletes(nova_db, admin):
    a = build(admin)
    b = build(admin, os="windows")
    assert nova.agent_build_destroy(admin, a.id) is None
    stored = {r["id"]: r for r in rows(nova_db)}
    assert stored[a.id]["deleted"] == a.id and stored[a.id]["deleted_at"] is not None
    assert stored[b.id]["deleted"] == 0
    assert [x.id for x in nova.agent_build_get_all(admin)] == [b.id]
    assert nova.agent_build_get_by_triple(admin, "xen", "linux", "x86_64") is None
    for missing in (a.id, 4242):
        with pytest.raises(exception.AgentBuildNotFound, match=str(missing)):
            nova.agent_build_destroy(admin, missing)


def test_update(nova_db, admin):
    a = build(admin, version="1.0")
    b = build(admin, os="windows")
    assert nova.agent_build_update(admin, a.id, {"version": "1.1", "url": "http://x"}) is None
    stored = {r["id"]: r for r in rows(nova_db)}
    assert (stored[a.id]["version"], stored[a.id]["url"]) == ("1.1", "http://x")
    assert stored[a.id]["updated_at"] is not None and stored[b.id]["updated_at"] is None
    with pytest.raises(exception.AgentBuildNotFound, match="4242"):
        nova.agent_build_update(admin, 4242, {"version": "9"})

    # The context's read_deleted decides whether a destroyed build is found.
    nova.agent_build_destroy(admin, b.id)
    with pytest.raises(exception.AgentBuildNotFound):
        nova.agent_build_update(admin, b.id, {"version": "9"})
    nova.agent_build_update(admin.elevated(read_deleted="yes"), b.id, {"version": "9"})
    assert {r["id"]: r for r in rows(nova_db)}[b.id]["version"] == "9"
    with pytest.raises(exception.AgentBuildNotFound):
        nova.agent_build_update(admin.elevated(read_deleted="only"), a.id, {"version": "9"})


def test_update_refuses_a_duplicate_triple_and_bad_values(nova_db, admin):
    a = build(admin)
    b = build(admin, os="windows")
    before = rows(nova_db)
    with pytest.raises(exception.AgentBuildExists, match="xen, linux, x86_64"):
        nova.agent_build_update(admin, b.id, {"os": "linux"})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.agent_build_update(admin, a.id, {"bogus": 1})
    with pytest.raises(InvalidValue):
        nova.agent_build_update(admin, a.id, {"version": 5})
    with pytest.raises(InvalidQuery):
        nova.agent_build_update(admin, a.id, None)
    with pytest.raises(InvalidValue):
        nova.agent_build_update(admin, "1", {"version": "5"})
    with pytest.raises(InvalidQuery):
        nova.agent_build_create(admin, {"hypervisor": "xen", "bogus": 1})
    with pytest.raises(InvalidValue):
        nova.agent_build_create(admin, {"hypervisor": "x" * 256})
    with pytest.raises(InvalidValue):
        nova.agent_build_destroy(admin, "1")
    with pytest.raises(exception.AgentBuildNotFound):
        nova.agent_build_destroy(admin, None)
    assert rows(nova_db) == before


def test_every_call_is_admin_only_and_changes_nothing(nova_db, admin, ctx):
    a = build(admin)
    before = rows(nova_db)
    calls = [
        lambda: build(ctx, os="bsd"),
        lambda: nova.agent_build_get_by_triple(ctx, "xen", "linux", "x86_64"),
        lambda: nova.agent_build_get_all(ctx),
        lambda: nova.agent_build_update(ctx, a.id, {"version": "2"}),
        lambda: nova.agent_build_destroy(ctx, a.id),
    ]
    for call in calls:
        with pytest.raises(exception.AdminRequired):
            call()
    assert rows(nova_db) == before
    with nova_db.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(AB.__table__)).scalar() == 1

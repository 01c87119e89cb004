"""Cells (nova notes §3.25): admin-only, by name, unique among live cells, on every
backend."""

from __future__ import annotations

import pytest

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, models
from tests.stores.nova.conftest import table_rows


def rows(db: Database) -> list[dict]:
    return table_rows(db, models.Cell)


def cell(admin, name="child", **more):
    return nova.cell_create(admin, {"name": name, "transport_url": f"rabbit://{name}", **more})


def test_create_and_get(nova_db, admin):
    a = cell(admin, api_url="http://a", is_parent=1)
    assert a.id and a.name == "child" and a["api_url"] == "http://a"
    assert a.is_parent is True and (a.weight_offset, a.weight_scale) == (0.0, 1.0)
    b = cell(admin, "parent", weight_offset=1.5, weight_scale=2.25)
    got = nova.cell_get(admin, "parent")
    assert got.id == b.id and (got.weight_offset, got.weight_scale) == (1.5, 2.25)
    assert [c.id for c in nova.cell_get_all(admin)] == [a.id, b.id]
    with pytest.raises(exception.CellNotFound, match="nope"):
        nova.cell_get(admin, "nope")


def test_create_refuses_a_duplicate_live_name_and_bad_values(nova_db, admin):
    a = cell(admin)
    before = rows(nova_db)
    with pytest.raises(exception.CellExists, match="child"):
        cell(admin)
    with pytest.raises(InvalidValue, match="transport_url"):
        nova.cell_create(admin, {"name": "x"})
    with pytest.raises(InvalidValue):
        nova.cell_create(admin, {"name": "x", "transport_url": None})
    with pytest.raises(InvalidValue):
        cell(admin, "x", is_parent="yes")
    with pytest.raises(InvalidQuery, match="bogus"):
        cell(admin, "x", bogus=1)
    with pytest.raises(InvalidQuery):
        nova.cell_create(admin, ["name"])
    assert rows(nova_db) == before
    # Unique among live cells only.
    assert nova.cell_delete(admin, "child") == 1
    assert cell(admin).id != a.id


def test_delete_soft_deletes_and_returns_the_count(nova_db, admin):
    a = cell(admin)
    b = cell(admin, "other")
    assert nova.cell_delete(admin, "child") == 1
    assert nova.cell_delete(admin, "child") == 0
    assert nova.cell_delete(admin, "nope") == 0
    stored = {r["id"]: r for r in rows(nova_db)}
    assert stored[a.id]["deleted"] == a.id and stored[b.id]["deleted"] == 0
    assert [c.id for c in nova.cell_get_all(admin)] == [b.id]
    with pytest.raises(exception.CellNotFound):
        nova.cell_get(admin, "child")
    # cell_get follows the context's read_deleted.
    assert nova.cell_get(admin.elevated(read_deleted="yes"), "child").id == a.id
    assert nova.cell_get(admin.elevated(read_deleted="only"), "child").id == a.id
    with pytest.raises(exception.CellNotFound):
        nova.cell_get(admin.elevated(read_deleted="only"), "other")
    assert [c.id for c in nova.cell_get_all(admin.elevated(read_deleted="yes"))] == [b.id]


def test_update(nova_db, admin):
    a = cell(admin)
    b = cell(admin, "other")
    got = nova.cell_update(admin, "child", {"api_url": "http://new", "weight_scale": 3.0})
    assert got.id == a.id and got.api_url == "http://new" and got.weight_scale == 3.0
    assert got.updated_at is not None
    # A renamed cell comes back under its new name.
    renamed = nova.cell_update(admin, "child", {"name": "renamed"})
    assert renamed.id == a.id and renamed.name == "renamed"
    assert nova.cell_get(admin, "renamed").api_url == "http://new"
    with pytest.raises(exception.CellNotFound, match="child"):
        nova.cell_update(admin, "child", {"api_url": "x"})
    before = rows(nova_db)
    with pytest.raises(exception.CellExists, match="other"):
        nova.cell_update(admin, "renamed", {"name": "other"})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.cell_update(admin, "renamed", {"bogus": 1})
    with pytest.raises(InvalidValue):
        nova.cell_update(admin, "renamed", {"transport_url": None})
    assert rows(nova_db) == before
    # The context's read_deleted decides whether a deleted cell is found.
    nova.cell_delete(admin, "other")
    with pytest.raises(exception.CellNotFound):
        nova.cell_update(admin, "other", {"api_url": "x"})
    updated = nova.cell_update(admin.elevated(read_deleted="yes"), "other", {"api_url": "x"})
    assert updated.id == b.id and updated.api_url == "x" and updated.deleted == b.id


def test_every_call_is_admin_only_and_changes_nothing(nova_db, admin, ctx):
    cell(admin)
    before = rows(nova_db)
    calls = [
        lambda: cell(ctx, "x"),
        lambda: nova.cell_get(ctx, "child"),
        lambda: nova.cell_get_all(ctx),
        lambda: nova.cell_update(ctx, "child", {"api_url": "x"}),
        lambda: nova.cell_delete(ctx, "child"),
    ]
    for call in calls:
        with pytest.raises(exception.AdminRequired):
            call()
    assert rows(nova_db) == before

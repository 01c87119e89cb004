"""Flavors, their access rows and extra specs (nova notes §2.18, §3.7) on every backend."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, DuplicateEntry, InvalidQuery, InvalidValue
from dblayer.stores.nova import RequestContext, exception, models
from dblayer.stores.nova.api import flavors as flavors_module
from tests.stores.nova.conftest import table_rows

T, SPECS, ACCESS = models.InstanceTypes, models.InstanceTypeExtraSpecs, models.InstanceTypeProjects


def everything(db: Database) -> tuple[list[dict], ...]:
    return table_rows(db, T), table_rows(db, SPECS), table_rows(db, ACCESS)


def flavor(admin, name="small", flavorid="1", projects=None, **values):
    values = {"name": name, "flavorid": flavorid, "memory_mb": 512, "vcpus": 1, **values}
    return nova.flavor_create(admin, values, projects=projects)


# -- create --------------------------------------------------------------------------------


def test_create_returns_the_dict_with_defaults_specs_and_access(nova_db, admin):
    made = flavor(
        admin, root_gb=10, extra_specs={"hw:cpu": "2", "quota:io": "x"}, projects=["p1", "p2", "p1"]
    )
    assert isinstance(made, dict)
    assert made["name"] == "small" and made["flavorid"] == "1" and made["root_gb"] == 10
    assert made["swap"] == 0 and made["rxtx_factor"] == 1.0
    assert made["disabled"] is False and made["is_public"] is True
    assert made["deleted"] == 0 and made["created_at"] is not None
    assert made["extra_specs"] == {"hw:cpu": "2", "quota:io": "x"}
    flavors, specs, access = everything(nova_db)
    assert [f["id"] for f in flavors] == [made["id"]]
    assert {(s["key"], s["value"]) for s in specs} == {("hw:cpu", "2"), ("quota:io", "x")}
    assert [a["project_id"] for a in access] == ["p1", "p2"]
    assert all(a["instance_type_id"] == made["id"] for a in specs + access)
    assert nova.flavor_get(admin, made["id"]) == made


def test_duplicates_are_flavor_id_exists_or_flavor_exists(nova_db, admin):
    flavor(admin, extra_specs={"a": "b"}, projects=["p1"])
    before = everything(nova_db)
    with pytest.raises(exception.FlavorIdExists) as caught:
        flavor(admin, name="other", flavorid="1", extra_specs={"c": "d"})
    assert "1" in str(caught.value)
    with pytest.raises(exception.FlavorExists) as caught:
        flavor(admin, name="small", flavorid="2", projects=["p9"])
    assert "small" in str(caught.value)
    assert everything(nova_db) == before


def test_create_is_one_transaction(nova_db, admin, monkeypatch):
    real = flavors_module.execute

    def failing(stmt, *args, **kwargs):
        if isinstance(stmt, sa.Insert) and stmt.table is ACCESS.__table__:
            raise DuplicateEntry("simulated failure after the flavor and its specs")
        return real(stmt, *args, **kwargs)

    monkeypatch.setattr(flavors_module, "execute", failing)
    with pytest.raises(DuplicateEntry):
        flavor(admin, extra_specs={"a": "b"}, projects=["p1"])
    assert everything(nova_db) == ([], [], [])


def test_create_rejects_bad_values_and_stores_nothing(nova_db, admin):
    bad = [
        ({"name": "x", "flavorid": "9", "memory_mb": 1}, InvalidQuery),  # no vcpus
        ({"name": "x", "flavorid": "9", "memory_mb": 1, "vcpus": 1, "bogus": 1}, InvalidQuery),
        ({"name": "x", "flavorid": "9", "memory_mb": "1", "vcpus": 1}, InvalidValue),
        (
            {"name": "x", "flavorid": "9", "memory_mb": 1, "vcpus": 1, "is_public": "yes"},
            InvalidValue,
        ),
        ({"name": "x" * 256, "flavorid": "9", "memory_mb": 1, "vcpus": 1}, InvalidValue),
        ({"name": "x", "memory_mb": 1, "vcpus": 1, "extra_specs": ["a"]}, InvalidQuery),
        ({"name": "x", "memory_mb": 1, "vcpus": 1, "extra_specs": {"a": 1}}, InvalidValue),
    ]
    for values, error in bad:
        with pytest.raises(error):
            nova.flavor_create(admin, values)
    with pytest.raises(InvalidQuery):
        flavor(admin, projects="p1")
    with pytest.raises(InvalidValue):
        flavor(admin, projects=["p" * 256])
    assert everything(nova_db) == ([], [], [])


def test_admin_only_calls(nova_db, admin, ctx):
    flavor(admin, projects=["project1"])
    before = everything(nova_db)
    for call in (
        lambda: flavor(ctx, name="mine", flavorid="7"),
        lambda: nova.flavor_destroy(ctx, "small"),
        lambda: nova.flavor_access_add(ctx, "1", "p2"),
        lambda: nova.flavor_access_remove(ctx, "1", "project1"),
        lambda: nova.flavor_access_get_by_flavor_id(ctx, "1"),
    ):
        with pytest.raises(exception.AdminRequired):
            call()
    half = RequestContext("user1", None)  # neither admin nor a user context
    for call in (
        lambda: nova.flavor_get(half, 1),
        lambda: nova.flavor_get_all(half),
        lambda: nova.flavor_get_by_name(half, "small"),
        lambda: nova.flavor_get_by_flavor_id(half, "1"),
        lambda: nova.flavor_extra_specs_get(half, "1"),
        lambda: nova.flavor_extra_specs_get_item(half, "1", "k"),
        lambda: nova.flavor_extra_specs_delete(half, "1", "k"),
        lambda: nova.flavor_extra_specs_update_or_create(half, "1", {"k": "v"}),
    ):
        with pytest.raises(exception.Forbidden):
            call()
    assert everything(nova_db) == before


# -- getters -------------------------------------------------------------------------------


def test_getters_and_their_not_found_errors(nova_db, admin, ctx):
    made = flavor(admin, extra_specs={"k": "v"})
    assert nova.flavor_get(ctx, made["id"]) == made
    assert nova.flavor_get_by_name(ctx, "small") == made
    assert nova.flavor_get_by_flavor_id(ctx, "1") == made
    with pytest.raises(exception.FlavorNotFound) as caught:
        nova.flavor_get(ctx, made["id"] + 1)
    assert str(made["id"] + 1) in str(caught.value)
    with pytest.raises(exception.FlavorNotFoundByName) as caught:
        nova.flavor_get_by_name(ctx, "Small")  # exact text on every backend
    assert isinstance(caught.value, exception.FlavorNotFound) and "Small" in str(caught.value)
    with pytest.raises(exception.FlavorNotFound):
        nova.flavor_get_by_flavor_id(ctx, "2")
    with pytest.raises(InvalidValue):
        nova.flavor_get(ctx, "1")
    with pytest.raises(InvalidValue):
        nova.flavor_get_by_flavor_id(ctx, 1)


def test_private_flavors_are_seen_by_granted_projects_only(nova_db, admin, ctx, other_ctx):
    private = flavor(admin, name="private", flavorid="p", is_public=False, projects=["project1"])
    public = flavor(admin, name="public", flavorid="q")
    for getter, key in (
        (nova.flavor_get, private["id"]),
        (nova.flavor_get_by_name, "private"),
        (nova.flavor_get_by_flavor_id, "p"),
    ):
        assert getter(ctx, key)["id"] == private["id"]
        assert getter(admin, key)["id"] == private["id"]
        with pytest.raises(exception.FlavorNotFound):
            getter(other_ctx, key)
    assert [f["id"] for f in nova.flavor_get_all(ctx)] == [private["id"], public["id"]]
    assert [f["id"] for f in nova.flavor_get_all(other_ctx)] == [public["id"]]
    # A removed grant hides it again.
    nova.flavor_access_remove(admin, "p", "project1")
    assert [f["id"] for f in nova.flavor_get_all(ctx)] == [public["id"]]


def test_read_deleted(nova_db, admin, ctx):
    old = flavor(admin)
    nova.flavor_destroy(admin, "small")
    new = flavor(admin)
    older = flavor(admin, name="gone", flavorid="1-old")
    nova.flavor_destroy(admin, "gone")
    with pytest.raises(exception.FlavorNotFound):
        nova.flavor_get(ctx, old["id"])
    with_deleted = RequestContext("user1", "project1", read_deleted="yes")
    assert nova.flavor_get(with_deleted, old["id"])["deleted"] == old["id"]
    # By flavorid: the live flavor wins; read_deleted given overrides the context's.
    assert nova.flavor_get_by_flavor_id(ctx, "1")["id"] == new["id"]
    assert nova.flavor_get_by_flavor_id(with_deleted, "1")["id"] == new["id"]
    assert nova.flavor_get_by_flavor_id(ctx, "1", read_deleted="only")["id"] == old["id"]
    assert nova.flavor_get_by_flavor_id(ctx, "1-old", read_deleted="yes")["id"] == older["id"]
    with pytest.raises(exception.FlavorNotFound):
        nova.flavor_get_by_flavor_id(with_deleted, "1-old", read_deleted="no")
    with pytest.raises(InvalidQuery):
        nova.flavor_get_by_flavor_id(ctx, "1", read_deleted="maybe")
    assert nova.flavor_get_by_name(with_deleted, "gone")["id"] == older["id"]
    # inactive lists the deleted flavors too.
    assert [f["id"] for f in nova.flavor_get_all(admin)] == [new["id"]]
    listed = nova.flavor_get_all(admin, inactive=True)
    assert sorted(f["id"] for f in listed) == sorted([old["id"], new["id"], older["id"]])


def test_get_all_filters(nova_db, admin, ctx):
    a = flavor(admin, name="a", flavorid="a", memory_mb=512, root_gb=1)
    b = flavor(admin, name="b", flavorid="b", memory_mb=2048, root_gb=20, disabled=True)
    c = flavor(admin, name="c", flavorid="c", memory_mb=4096, root_gb=None, is_public=False)
    d = flavor(
        admin,
        name="d",
        flavorid="d",
        memory_mb=8192,
        root_gb=80,
        is_public=False,
        projects=["project1"],
    )

    def ids(context, filters):
        return [f["flavorid"] for f in nova.flavor_get_all(context, filters=filters)]

    assert ids(admin, None) == ids(admin, {}) == ["a", "b", "c", "d"]
    assert ids(admin, {"min_memory_mb": 2048}) == ["b", "c", "d"]
    assert ids(admin, {"min_root_gb": 20}) == ["b", "d"]  # NULL root_gb never matches
    assert ids(admin, {"disabled": True}) == ["b"]
    assert ids(admin, {"disabled": False}) == ["a", "c", "d"]
    assert ids(admin, {"is_public": True}) == ["a", "b"]
    assert ids(admin, {"is_public": False}) == ["c", "d"]
    assert ids(admin, {"is_public": None}) == ["a", "b", "c", "d"]
    assert ids(admin, {"min_memory_mb": 1000, "disabled": 0, "is_public": 1}) == []
    # For a project, "public" also means "granted to it".
    assert ids(ctx, {"is_public": True}) == ["a", "b", "d"]
    assert ids(ctx, {"is_public": False}) == ["d"]
    assert ids(RequestContext("u", "project9"), {}) == ["a", "b"]
    for bad, error in (
        ({"min_memory_mb": "big"}, InvalidValue),
        ({"disabled": "no"}, InvalidValue),
        ({"ram": 1}, InvalidQuery),
        (["disabled"], InvalidQuery),
    ):
        with pytest.raises(error):
            nova.flavor_get_all(admin, filters=bad)
    assert [x["id"] for x in (a, b, c, d)] == [f["id"] for f in nova.flavor_get_all(admin)]


def test_get_all_sorting_limit_and_marker(nova_db, admin, ctx):
    for i, (name, flavorid, mem) in enumerate([("x", "10", 3), ("y", "2", 1), ("z", "1", 2)]):
        flavor(admin, name=name, flavorid=flavorid, memory_mb=mem, vcpus=i + 1)

    def ids(**kwargs):
        return [f["flavorid"] for f in nova.flavor_get_all(admin, **kwargs)]

    assert ids() == ["1", "10", "2"]  # flavorid is text: lexicographic order
    assert ids(sort_dir="desc") == ["2", "10", "1"]
    assert ids(sort_key="memory_mb") == ["2", "1", "10"]
    assert ids(sort_key="name", sort_dir="desc", limit=2) == ["1", "2"]
    assert ids(sort_key="memory_mb", marker="2") == ["1", "10"]
    assert ids(sort_key="memory_mb", marker="2", limit=1) == ["1"]
    assert ids(limit=0) == []
    with pytest.raises(exception.InvalidSortKey):
        nova.flavor_get_all(admin, sort_key="extra_specs")
    with pytest.raises(exception.InvalidSortKey):
        nova.flavor_get_all(admin, sort_key="id; DROP TABLE instance_types")
    with pytest.raises(InvalidQuery):
        nova.flavor_get_all(admin, sort_dir="sideways")
    with pytest.raises(InvalidQuery):
        nova.flavor_get_all(admin, limit=-1)
    with pytest.raises(exception.MarkerNotFound) as caught:
        nova.flavor_get_all(admin, marker="404")
    assert "404" in str(caught.value)
    flavor(admin, name="hidden", flavorid="h", is_public=False)
    assert ids(marker="h") == []
    with pytest.raises(exception.MarkerNotFound):
        nova.flavor_get_all(ctx, marker="h")  # a private flavor is no marker for others


# -- destroy and access --------------------------------------------------------------------


def test_destroy_soft_deletes_the_flavor_its_specs_and_access(nova_db, admin):
    made = flavor(admin, extra_specs={"a": "1", "b": "2"}, projects=["p1", "p2"])
    kept = flavor(admin, name="kept", flavorid="2", extra_specs={"a": "1"}, projects=["p1"])
    assert nova.flavor_destroy(admin, "small") is None
    flavors, specs, access = everything(nova_db)
    gone = next(f for f in flavors if f["id"] == made["id"])
    assert gone["deleted"] == made["id"] and gone["deleted_at"] is not None
    assert gone["updated_at"] is not None  # the row itself was deleted, as in nova
    for row in specs + access:
        assert (row["deleted"] != 0) == (row["instance_type_id"] == made["id"])
    assert nova.flavor_get_by_flavor_id(admin, "2")["extra_specs"] == kept["extra_specs"]
    with pytest.raises(exception.FlavorNotFoundByName):
        nova.flavor_destroy(admin, "small")
    before = everything(nova_db)
    with pytest.raises(exception.FlavorNotFoundByName):
        nova.flavor_destroy(admin, "nothing")
    assert everything(nova_db) == before
    # Name and flavorid are free again.
    assert flavor(admin)["extra_specs"] == {}


def test_access_add_list_remove(nova_db, admin):
    made = flavor(admin, is_public=False)
    row = nova.flavor_access_add(admin, "1", "p1")
    assert row.instance_type_id == made["id"] and row.project_id == "p1" and row.id
    nova.flavor_access_add(admin, "1", "p2")
    listed = nova.flavor_access_get_by_flavor_id(admin, "1")
    assert [(a.project_id, a["instance_type_id"]) for a in listed] == [
        ("p1", made["id"]),
        ("p2", made["id"]),
    ]
    before = everything(nova_db)
    with pytest.raises(exception.FlavorAccessExists) as caught:
        nova.flavor_access_add(admin, "1", "p1")
    assert "p1" in str(caught.value) and "1" in str(caught.value)
    with pytest.raises(exception.FlavorNotFound):
        nova.flavor_access_add(admin, "9", "p1")
    with pytest.raises(exception.FlavorNotFound):
        nova.flavor_access_remove(admin, "9", "p1")
    with pytest.raises(exception.FlavorAccessNotFound):
        nova.flavor_access_remove(admin, "1", "p3")
    with pytest.raises(InvalidValue):
        nova.flavor_access_add(admin, "1", "p" * 256)
    assert everything(nova_db) == before
    assert nova.flavor_access_remove(admin, "1", "p1") is None
    assert [a.project_id for a in nova.flavor_access_get_by_flavor_id(admin, "1")] == ["p2"]
    with pytest.raises(exception.FlavorAccessNotFound):
        nova.flavor_access_remove(admin, "1", "p1")
    nova.flavor_access_add(admin, "1", "p1")  # the slot is free again
    assert nova.flavor_access_get_by_flavor_id(admin, "9") == []


# -- extra specs ---------------------------------------------------------------------------


def test_extra_specs_get_update_delete(nova_db, admin, ctx):
    made = flavor(admin, extra_specs={"a": "1", "b": "2"})
    assert nova.flavor_extra_specs_get(ctx, "1") == {"a": "1", "b": "2"}
    assert nova.flavor_extra_specs_get_item(ctx, "1", "a") == {"a": "1"}
    assert nova.flavor_extra_specs_update_or_create(ctx, "1", {"b": "3", "c": "4"}) is None
    assert nova.flavor_extra_specs_get(ctx, "1") == {"a": "1", "b": "3", "c": "4"}
    assert nova.flavor_extra_specs_delete(ctx, "1", "a") is None
    assert nova.flavor_get(ctx, made["id"])["extra_specs"] == {"b": "3", "c": "4"}
    live = [s for s in table_rows(nova_db, SPECS) if s["deleted"] == 0]
    assert sorted((s["key"], s["value"]) for s in live) == [("b", "3"), ("c", "4")]
    assert nova.flavor_extra_specs_get(ctx, "9") == {}
    before = everything(nova_db)
    with pytest.raises(exception.FlavorExtraSpecsNotFound) as caught:
        nova.flavor_extra_specs_get_item(ctx, "1", "a")
    assert "a" in str(caught.value) and "1" in str(caught.value)
    with pytest.raises(exception.FlavorExtraSpecsNotFound):
        nova.flavor_extra_specs_delete(ctx, "1", "a")
    with pytest.raises(exception.FlavorExtraSpecsNotFound):
        nova.flavor_extra_specs_get_item(ctx, "9", "b")
    with pytest.raises(exception.FlavorNotFound):
        nova.flavor_extra_specs_update_or_create(ctx, "9", {"a": "1"})
    with pytest.raises(InvalidQuery):
        nova.flavor_extra_specs_update_or_create(ctx, "1", ["a"])
    with pytest.raises(InvalidValue):
        nova.flavor_extra_specs_update_or_create(ctx, "1", {"a": "1", "b": 2})
    assert everything(nova_db) == before
    nova.flavor_destroy(admin, "small")
    with pytest.raises(exception.FlavorNotFound):
        nova.flavor_extra_specs_update_or_create(ctx, "1", {"a": "1"})
    assert nova.flavor_extra_specs_get(ctx, "1") == {}


def test_extra_specs_of_a_private_flavor_are_its_projects_only(nova_db, admin, ctx, other_ctx):
    flavor(admin, is_public=False, extra_specs={"a": "1"}, projects=["project1"])
    assert nova.flavor_extra_specs_get(ctx, "1") == {"a": "1"}
    nova.flavor_extra_specs_update_or_create(ctx, "1", {"b": "2"})
    before = everything(nova_db)
    assert nova.flavor_extra_specs_get(other_ctx, "1") == {}
    with pytest.raises(exception.FlavorExtraSpecsNotFound):
        nova.flavor_extra_specs_get_item(other_ctx, "1", "a")
    with pytest.raises(exception.FlavorExtraSpecsNotFound):
        nova.flavor_extra_specs_delete(other_ctx, "1", "a")
    with pytest.raises(exception.FlavorNotFound):
        nova.flavor_extra_specs_update_or_create(other_ctx, "1", {"a": "x"})
    assert everything(nova_db) == before
    assert nova.flavor_extra_specs_get(admin, "1") == {"a": "1", "b": "2"}


def test_default_flavors_are_created_on_request_only(nova_db, admin, ctx):
    assert nova.flavor_get_all(admin) == []
    assert "create_default_flavors" not in nova.FUNCTIONS
    with pytest.raises(exception.AdminRequired):
        flavors_module.create_default_flavors(ctx)
    flavor(admin, name="m1.small", flavorid="99")  # a flavor of that name exists already
    made = flavors_module.create_default_flavors(admin)
    assert [(f["name"], f["flavorid"], f["memory_mb"], f["vcpus"], f["root_gb"]) for f in made] == [
        ("m1.tiny", "1", 512, 1, 1),
        ("m1.medium", "3", 4096, 2, 40),
        ("m1.large", "4", 8192, 4, 80),
        ("m1.xlarge", "5", 16384, 8, 160),
    ]
    assert all(f["is_public"] and not f["disabled"] and f["swap"] == 0 for f in made)
    assert flavors_module.create_default_flavors(admin) == []
    assert len(flavors_module.DEFAULT_FLAVORS) == 5


# -- paging over 1,000 flavors -------------------------------------------------------------

COUNT = 1000
PAGE = 97


def _flavor_row(i: int) -> dict:
    return {
        "name": f"flavor-{i:04d}",
        "flavorid": str(i * 7919 % 1009),  # unique, in an order unlike the ids' (text order)
        "memory_mb": 512 * (i % 13),  # ties
        "vcpus": 1 + i % 4,
        "root_gb": None if i % 6 == 0 else i % 50,  # NULLs and ties
        "rxtx_factor": 1.0 + (i % 3) / 2,
        "swap": 0,
        "is_public": i % 5 != 0,
        "disabled": False,
        "deleted": 0,
    }


@pytest.fixture
def thousand(nova_db: Database) -> list[dict]:
    """1,000 flavors in one bulk INSERT (every 10th soft-deleted, every 5th private, every
    15th private one granted to project1); their rows as stored."""
    table = T.__table__
    with nova_db.transaction() as conn:
        conn.execute(sa.insert(table), [_flavor_row(i) for i in range(COUNT)])
        conn.execute(sa.update(table).where(table.c.id % 10 == 0).values(deleted=table.c.id))
        private = conn.execute(sa.select(table.c.id).where(table.c.is_public.is_(False))).scalars()
        conn.execute(
            sa.insert(ACCESS.__table__),
            [{"instance_type_id": i, "project_id": "project1"} for i in private if i % 3 == 0],
        )
        ids = conn.execute(sa.select(table.c.id).order_by(table.c.id)).scalars().all()
        conn.execute(
            sa.insert(SPECS.__table__),
            [{"instance_type_id": i, "key": "k", "value": str(i)} for i in ids[::47]],
        )
    rows = table_rows(nova_db, T)
    granted = {a["instance_type_id"] for a in table_rows(nova_db, ACCESS)}
    specs = {s["instance_type_id"]: {s["key"]: s["value"]} for s in table_rows(nova_db, SPECS)}
    for row in rows:
        row["granted"] = row["id"] in granted
        row["extra_specs"] = specs.get(row["id"], {})
    return rows


def _walk(context, key: str, direction: str, **kwargs) -> list[dict]:
    """Every page by marker (the last flavorid) until a short page."""
    seen: list[dict] = []
    marker = None
    while True:
        page = nova.flavor_get_all(
            context, sort_key=key, sort_dir=direction, limit=PAGE, marker=marker, **kwargs
        )
        assert len(page) <= PAGE
        seen.extend(page)
        if len(page) < PAGE:
            return seen
        marker = page[-1]["flavorid"]


def _expected(rows: list[dict], key: str, descending: bool) -> list[int]:
    """Ids in order [key, id], NULL the smallest value."""

    def order(r: dict) -> tuple:
        return ((r[key] is not None, r[key]), r["id"])

    return [r["id"] for r in sorted(rows, key=order, reverse=descending)]


@pytest.mark.parametrize("key", ["flavorid", "memory_mb", "root_gb", "rxtx_factor"])
def test_pages_return_every_flavor_once_and_in_order(thousand, admin, key):
    live = [r for r in thousand if r["deleted"] == 0]
    for direction in ("asc", "desc"):
        walked = _walk(admin, key, direction)
        ids = [f["id"] for f in walked]
        assert len(ids) == len(set(ids)) == len(live)
        assert ids == _expected(live, key, direction == "desc")
    # Extra specs come with every page.
    stored = {r["id"]: r["extra_specs"] for r in live}
    assert {f["id"]: f["extra_specs"] for f in walked} == stored
    assert sum(1 for specs in stored.values() if specs) > 10


def test_inactive_pages_include_deleted_flavors(thousand, admin):
    walked = [f["id"] for f in _walk(admin, "name", "desc", inactive=True)]
    assert walked == _expected(thousand, "name", True)


def test_a_project_pages_through_what_it_may_see(thousand, ctx):
    visible = [r for r in thousand if r["deleted"] == 0 and (r["is_public"] or r["granted"])]
    assert any(not r["is_public"] for r in visible)
    walked = [f["id"] for f in _walk(ctx, "memory_mb", "asc", filters={"min_memory_mb": 1024})]
    wanted = [r for r in visible if r["memory_mb"] >= 1024]
    assert walked == _expected(wanted, "memory_mb", False)

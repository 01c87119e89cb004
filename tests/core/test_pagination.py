"""Keyset pagination on every backend: sort keys, walks over every page, NULL keys, markers, limits."""

from __future__ import annotations

import functools
import random
from typing import Any

import pytest
import sqlalchemy as sa

from dblayer.core import (
    Database,
    InvalidQuery,
    InvalidSortKey,
    MarkerNotFound,
    NotFound,
    paginate,
    sort_keys,
)
from dblayer.core.pagination import load_marker
from tests.core.query_schema import Page, metadata, pages, statements_sent

ROW_COUNT = 300


def make_rows() -> list[dict[str, Any]]:
    """A few hundred rows whose keys repeat a lot and are often NULL.

    ``b`` holds strings that MariaDB's default collation calls equal ('x', 'X', 'x ')
    and that PostgreSQL and SQLite tell apart: paging must agree with the
    backend's own ORDER BY either way.
    """
    rng = random.Random(20240611)
    return [
        {
            "id": i,
            "a": rng.choice([None, None, 0, 1, 2, 3, 4]),
            "b": rng.choice([None, "", "x", "X", "x ", "y", "z"]),
            "c": rng.randint(0, 9),
        }
        for i in range(1, ROW_COUNT + 1)
    ]


ROWS = make_rows()
BY_ID = {row["id"]: row for row in ROWS}


@pytest.fixture(params=["table", "orm"])
def target(request: pytest.FixtureRequest) -> Any:
    """The Core table or the mapped class."""
    return pages if request.param == "table" else Page


@pytest.fixture
def loaded(db: Database, tables_of: Any) -> Database:
    """``db`` with ROWS in both pagination tables."""
    tables_of(db, metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(pages), ROWS)
        conn.execute(sa.insert(Page.__table__), ROWS)
    return db


def fetch(db: Database, target: Any, stmt: sa.Select[Any]) -> list[Any]:
    """Rows (table) or objects (mapped class) of ``stmt``."""
    if isinstance(target, sa.Table):
        with db.transaction(readonly=True) as conn:
            return list(conn.execute(stmt).all())
    with db.session(readonly=True) as session:
        return list(session.scalars(stmt).all())


def walk(
    db: Database,
    target: Any,
    keys: list[Any],
    page_size: int,
    base: sa.Select[Any] | None = None,
    as_dict: bool = False,
) -> tuple[list[int], list[int]]:
    """(ids of every page in turn, ids of one unpaged query), the marker being each page's last row."""
    checked = sort_keys(target, *keys)
    base = sa.select(target) if base is None else base
    whole = [row.id for row in fetch(db, target, paginate(base, checked, backend=db.backend))]
    paged: list[int] = []
    marker = None
    for _ in range(len(whole) + 2):  # a walk that never ends fails instead of hanging
        stmt = paginate(base, checked, backend=db.backend, marker=marker, limit=page_size)
        page = fetch(db, target, stmt)
        paged.extend(row.id for row in page)
        if len(page) < page_size:
            break
        marker = page[-1]
        if as_dict:
            marker = {key.name: getattr(marker, key.name) for key in checked}
    return paged, whole


def null_first_order(names: list[str], descending: list[bool]) -> list[int]:
    """ROWS' ids ordered by ``names`` in Python, NULL being the smallest value."""

    def compare(x: dict[str, Any], y: dict[str, Any]) -> int:
        for name, desc in zip(names, descending, strict=True):
            u, v = x[name], y[name]
            if u == v:
                continue
            smaller = u is None or (v is not None and u < v)
            return (1 if smaller else -1) if desc else (-1 if smaller else 1)
        return 0

    return [row["id"] for row in sorted(ROWS, key=functools.cmp_to_key(compare))]


# (sort keys, directions); the primary key is appended by sort_keys.
KEY_SETS = [
    (["a"], "asc"),
    (["a"], "desc"),
    (["a", "c"], ["asc", "desc"]),
    (["c", "a"], ["DESC", "Asc"]),
    (["b"], "asc"),
    (["b"], ["desc"]),
    (["a", "b"], ["asc", "desc"]),
    (["b", "c", "a"], ["desc", "asc", "desc"]),
    ([], "asc"),
]


@pytest.mark.parametrize(("names", "directions"), KEY_SETS)
def test_walking_every_page_returns_every_row_once_in_order(loaded, target, names, directions):
    paged, whole = walk(loaded, target, [names, directions], page_size=13)
    assert paged == whole
    assert sorted(paged) == list(range(1, ROW_COUNT + 1))
    checked = sort_keys(target, names, directions)
    if all(key.name != "b" for key in checked):  # integers sort alike everywhere
        expected = null_first_order([k.name for k in checked], [k.descending for k in checked])
        assert whole == expected
    if checked[0].nullable:  # NULL is the smallest value: first ascending, last descending
        nulls = [BY_ID[i][names[0]] is None for i in whole]
        count = sum(nulls)
        assert count > 0
        if checked[0].descending:
            assert nulls == [False] * (ROW_COUNT - count) + [True] * count
        else:
            assert nulls == [True] * count + [False] * (ROW_COUNT - count)


@pytest.mark.parametrize("page_size", [1, 2, 299, 300, 301])
def test_page_sizes(loaded, page_size):
    paged, whole = walk(loaded, pages, [["a", "b"], ["desc", "asc"]], page_size=page_size)
    assert paged == whole
    assert len(paged) == ROW_COUNT


def test_marker_may_be_a_dict(loaded, target):
    paged, whole = walk(loaded, target, [["b", "a"], "desc"], page_size=17, as_dict=True)
    assert paged == whole
    assert len(paged) == ROW_COUNT


def test_paging_a_filtered_select(loaded, target):
    column = pages.c.c if target is pages else Page.c
    base = sa.select(target).where(column < 5)
    paged, whole = walk(loaded, target, [["a", "c"], "asc"], page_size=9, base=base)
    assert paged == whole
    assert sorted(paged) == sorted(row["id"] for row in ROWS if row["c"] < 5)


def test_page_after_a_null_keyed_marker(loaded, target):
    expected = null_first_order(["a", "id"], [False, False])
    nulls = [i for i in expected if BY_ID[i]["a"] is None]
    for direction, order in (("asc", expected), ("desc", expected[::-1])):
        checked = sort_keys(target, ["a"], direction)
        marker = {"a": None, "id": nulls[len(nulls) // 2]}
        stmt = paginate(sa.select(target), checked, backend=loaded.backend, marker=marker)
        rest = [row.id for row in fetch(loaded, target, stmt)]
        assert rest == order[order.index(marker["id"]) + 1 :]


def test_limit(loaded, target):
    checked = sort_keys(target, ["a"], "asc")
    assert (
        fetch(loaded, target, paginate(sa.select(target), checked, backend=loaded.backend, limit=0))
        == []
    )
    everything = paginate(sa.select(target), checked, backend=loaded.backend, limit=None)
    assert len(fetch(loaded, target, everything)) == ROW_COUNT


@pytest.mark.parametrize("limit", [-1, True, False, "3", 1.5, 2**63])
def test_bad_limit_is_rejected_before_any_sql(loaded, target, limit):
    checked = sort_keys(target, ["a"], "asc")
    with statements_sent(loaded) as sent, pytest.raises(InvalidQuery) as info:
        fetch(
            loaded,
            target,
            paginate(sa.select(target), checked, backend=loaded.backend, limit=limit),
        )
    assert "limit must be a non-negative integer" in str(info.value)
    assert repr(limit) in str(info.value)
    assert sent == []


def test_marker_without_a_sort_key_is_rejected(loaded, target):
    checked = sort_keys(target, ["a", "b"], "asc")
    with statements_sent(loaded) as sent, pytest.raises(InvalidQuery) as info:
        paginate(sa.select(target), checked, backend=loaded.backend, marker={"a": 1, "id": 3})
    assert "marker has no value for sort key 'b'" in str(info.value)
    assert sent == []


# -- sort_keys ------------------------------------------------------------------------------------


def names_and_directions(keys: list[Any]) -> list[tuple[str, bool]]:
    return [(key.name, key.descending) for key in keys]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((["a"],), [("a", False), ("id", False)]),
        ((["a"], "desc"), [("a", True), ("id", True)]),
        ((["a"], "DESC"), [("a", True), ("id", True)]),
        ((["a", "b"], ["asc", "desc"]), [("a", False), ("b", True), ("id", True)]),
        ((["a", "b"], ["Desc", "ASC"]), [("a", True), ("b", False), ("id", False)]),
        ((["id", "a"], "desc"), [("id", True), ("a", True)]),
        ((["a", "a"], "asc"), [("a", False), ("id", False)]),
        (([],), [("id", False)]),
        (("a", "desc"), [("a", True), ("id", True)]),
        ((["a"], None), [("a", False), ("id", False)]),
        ((("b", "a"), ("desc", "asc")), [("b", True), ("a", False), ("id", False)]),
    ],
)
def test_sort_keys(db, target, args, expected):
    with statements_sent(db) as sent:
        assert names_and_directions(sort_keys(target, *args)) == expected
    assert sent == []


def test_sort_keys_know_nullable_columns(target):
    nullable = {key.name: key.nullable for key in sort_keys(target, ["a", "b", "c"])}
    assert nullable == {"a": True, "b": True, "c": False, "id": False}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ((["nope"],), ["unknown sort key 'nope'", "allowed: a, b, c, id"]),
        (
            (["a; DROP TABLE q_pages"],),
            ["unknown sort key 'a; DROP TABLE q_pages'", "allowed: a, b, c, id"],
        ),
        ((["A"],), ["unknown sort key 'A'"]),
        (([None],), ["unknown sort key None"]),
        ((["a"], "up"), ["unknown sort direction 'up'", "allowed: asc, desc"]),
        ((["a"], "asc; --"), ["unknown sort direction 'asc; --'", "allowed: asc, desc"]),
        ((["a", "b"], ["asc", None]), ["unknown sort direction None", "allowed: asc, desc"]),
        ((["a", "b"], ["asc"]), ["give one direction, or one per sort key"]),
        ((["a"], ["asc", "desc"]), ["give one direction, or one per sort key"]),
        ((["a"], 5), ["give one direction, or one per sort key"]),
        ((None,), ["sort keys must be a list of column names, got NoneType"]),
        ((5,), ["sort keys must be a list of column names, got int"]),
    ],
)
def test_bad_sort_keys_are_rejected_before_any_sql(db, target, args, fragments):
    with statements_sent(db) as sent, pytest.raises(InvalidSortKey) as info:
        sort_keys(target, *args)
    assert isinstance(info.value, InvalidQuery)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert sent == []


# -- load_marker ----------------------------------------------------------------------------------


def test_load_marker_from_a_table(loaded):
    with loaded.transaction(readonly=True) as conn:
        marker = load_marker(conn, pages, pages.c.id == 42)
    assert marker.id == 42
    assert (marker.a, marker.b, marker.c) == (BY_ID[42]["a"], BY_ID[42]["b"], BY_ID[42]["c"])
    checked = sort_keys(pages, ["c"], "asc")
    rest = fetch(
        loaded, pages, paginate(sa.select(pages), checked, backend=loaded.backend, marker=marker)
    )
    expected = null_first_order(["c", "id"], [False, False])
    assert [row.id for row in rest] == expected[expected.index(42) + 1 :]


def test_load_marker_of_a_mapped_class(loaded):
    with loaded.session(readonly=True) as session:
        obj = load_marker(session, Page, Page.id == 42)
    assert isinstance(obj, Page)
    assert (obj.id, obj.a, obj.b, obj.c) == tuple(BY_ID[42][k] for k in ("id", "a", "b", "c"))
    with loaded.transaction(readonly=True) as conn:
        row = load_marker(conn, Page, Page.id == 42)
    # Through a plain connection a mapped class gives its row, which works as a marker too.
    assert (row.id, row.a, row.b, row.c) == (obj.id, obj.a, obj.b, obj.c)
    checked = sort_keys(Page, ["b", "a"], "desc")
    after_obj = fetch(
        loaded, Page, paginate(sa.select(Page), checked, backend=loaded.backend, marker=obj)
    )
    after_row = fetch(
        loaded, Page, paginate(sa.select(Page), checked, backend=loaded.backend, marker=row)
    )
    assert [o.id for o in after_obj] == [o.id for o in after_row]


@pytest.mark.parametrize("kind", ["table", "orm", "orm-connection"])
def test_load_marker_missing(loaded, kind):
    missing = ROW_COUNT + 1
    with pytest.raises(MarkerNotFound) as info:
        if kind == "orm":
            with loaded.session(readonly=True) as session:
                load_marker(session, Page, Page.id == missing, what=f"marker {missing}")
        else:
            target, column = (pages, pages.c.id) if kind == "table" else (Page, Page.id)
            with loaded.transaction(readonly=True) as conn:
                load_marker(conn, target, column == missing, what=f"marker {missing}")
    assert isinstance(info.value, NotFound)
    assert str(info.value) == "marker 301 not found"

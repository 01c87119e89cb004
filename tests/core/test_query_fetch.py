"""fetch_query: the rows select_query selects, through a plan cached per query shape."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dblayer.core import Database, InvalidQuery, PreparedQuery, select_query
from dblayer.core.query import (
    _PLANS,
    _PLANS_MAX,
    _STRUCTURES,
    MAX_COUNT,
    _plan_of,
    check_query,
    fetch_query,
)
from tests.core.query_schema import Item, items, metadata
from tests.core.test_query import ERROR_CASES, ROWS


@pytest.fixture(params=["table", "orm"])
def target(request: pytest.FixtureRequest) -> Any:
    """The Core table or the mapped class."""
    return items if request.param == "table" else Item


@pytest.fixture
def loaded(db: Database, tables_of: Any) -> Database:
    """``db`` with ROWS in both the table and the mapped class's table."""
    tables_of(db, metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(items), ROWS)
        conn.execute(sa.insert(Item.__table__), ROWS)
    return db


def where(field: str, op: str, arg: Any, **rest: Any) -> dict[str, Any]:
    """A query of one filter (plus order_by, limit, offset)."""
    return {"filters": [{"field": field, "op": op, "arg": arg}], **rest}


def expected(conn: Any, target: Any, query: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """What executing select_query returns, as dicts."""
    return [dict(row) for row in conn.execute(select_query(target, query, **kwargs)).mappings()]


def plan(target: Any, query: Any) -> PreparedQuery:
    """The cached plan fetch_query runs ``query`` with."""
    return _plan_of(target, check_query(target, query))


def by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in id order, for queries with no ORDER BY of their own."""
    return sorted(rows, key=lambda row: row["id"])


ORDER = {"order_by": [{"field": "score", "direction": "desc"}, "id"]}
SAME_CASES = [
    where("name", "=", "apple"),
    where("name", "==", "apple"),
    where("score", "=", 10),
    where("name", "=", None),
    where("name", "!=", "apple"),
    where("name", "<>", None),
    where("name", "! =", "apple"),
    where("score", "<", 20),
    where("score", "<=", 20),
    where("score", ">", 30),
    where("score", ">=", 30),
    where("score", "IN", [10, 40]),
    where("score", "IN", (10, 40, 50)),
    where("score", "IN", [10, None]),
    where("score", "IN", [None]),
    where("score", "IN", []),
    where("score", "in", {20}),
    where("score", "NOT IN", [10, 40]),
    where("score", "NOT IN", [10, None]),
    where("score", "NOT IN", [None]),
    where("score", "NOT IN", []),
    where("score", "! in", [20, 30, 50]),
    where("name", "LIKE", "apple%"),
    where("name", "LIKE", "a\\_b\\%c"),
    where("name", "LIKE", "a_b%"),
    where("name", "NOT LIKE", "%an%"),
    where("name", "! like", "a\\_%"),
    where("flag", "IS", True),
    where("flag", "IS", False),
    where("flag", "IS", None),
    where("flag", "IS NOT", True),
    where("flag", "IS NOT", False),
    where("name", "! is", None),
    where("score", "BETWEEN", [10, 30]),
    where("score", "BETWEEN", (30, 10)),
    {
        "filters": [
            {"field": "score", "op": ">=", "arg": 10},
            {"field": "name", "op": "NOT LIKE", "arg": "%pie"},
            {"field": "flag", "op": "IS NOT", "arg": None},
        ]
    },
    {"filters": [{"field": "name", "arg": "date"}]},
    where("score", ">=", 10, **ORDER),
    where("score", "IN", [10, 20, None], **ORDER, limit=2),
    where("score", "IN", [10, 20, None], **ORDER, limit=2, offset=1),
    {"order_by": "name"},
    {"order_by": {"field": "name", "direction": "DESC"}},
    {"order_by": ["flag", {"field": "id", "direction": "DESC"}]},
    {"order_by": "id", "limit": 0},
    {"order_by": "id", "limit": 3, "offset": 0},
    {"order_by": "id", "limit": 3, "offset": 2},
    {"order_by": "id", "offset": 6},
    {"order_by": "id", "limit": MAX_COUNT, "offset": 7},
    {"filters": [], "order_by": []},
    {},
    None,
]


@pytest.mark.parametrize("query", SAME_CASES)
def test_same_rows_as_select_query(loaded, target, query):
    with loaded.transaction(readonly=True) as conn:
        want = expected(conn, target, query)
        got = fetch_query(conn, target, query)
    if query and query.get("order_by"):
        assert got == want
    else:
        assert by_id(got) == by_id(want)
    if got:
        assert set(got[0]) == {"id", "name", "score", "flag"}


def test_same_shape_reuses_the_plan_with_new_values(loaded, target):
    shape = [("apple", 0, 2), ("banana", 10, 1), ("nothing", 0, 5), ("a_b%c", 50, 1)]
    queries = [
        {
            "filters": [
                {"field": "name", "op": "!=", "arg": name},
                {"field": "score", "op": ">=", "arg": low},
            ],
            "order_by": [{"field": "score", "direction": "DESC"}, "id"],
            "limit": 3,
            "offset": offset,
        }
        for name, low, offset in shape
    ]
    first = plan(target, queries[0])
    with loaded.transaction(readonly=True) as conn:
        for query in queries:
            assert plan(target, query) is first
            assert fetch_query(conn, target, query) == expected(conn, target, query)


def test_in_lists_of_one_length_share_a_plan(loaded, target):
    with loaded.transaction(readonly=True) as conn:
        for values in ([10, 20], [30, 40], [50, 99], [None, 10, 20]):
            query = where("score", "IN", values, order_by="id")
            assert fetch_query(conn, target, query) == expected(conn, target, query)
    assert plan(target, where("score", "IN", [1, 2])) is plan(target, where("score", "IN", [3, 4]))


SHAPE_PAIRS = [
    (where("score", "=", None), where("score", "=", 10)),
    (where("score", "!=", None), where("score", "!=", 10)),
    (where("score", "IN", [10, 20]), where("score", "IN", [10, 20, 30])),
    (where("score", "IN", [10, 20]), where("score", "IN", [10, 20, None])),
    (where("score", "IN", [None]), where("score", "IN", [])),
    (where("score", "NOT IN", [10, 20]), where("score", "NOT IN", [10, 20, None])),
    (where("score", "NOT IN", [10]), where("score", "NOT IN", [])),
    (where("flag", "IS", True), where("flag", "IS", False)),
    (where("flag", "IS", None), where("flag", "IS", True)),
    (where("flag", "IS NOT", False), where("flag", "IS", False)),
    (where("score", ">", 10), where("score", ">=", 10)),
    (where("name", "LIKE", "a%"), where("name", "=", "a%")),
    (where("name", "LIKE", "a%"), where("name", "NOT LIKE", "a%")),
    ({"order_by": "id"}, {"order_by": {"field": "id", "direction": "DESC"}}),
    ({"order_by": ["id", "name"]}, {"order_by": ["name", "id"]}),
    ({"order_by": "id"}, {"order_by": "id", "limit": 3}),
    ({"order_by": "id", "limit": 3}, {"order_by": "id", "limit": 3, "offset": 2}),
    ({"order_by": "id", "limit": 3}, {"order_by": "id", "limit": 4}),
    ({"order_by": "id", "limit": 0}, {"order_by": "id"}),
    ({"filters": [where("id", ">", 1)["filters"][0]] * 2}, where("id", ">", 1)),
]


@pytest.mark.parametrize(("one", "other"), SHAPE_PAIRS)
def test_different_shapes_never_share_a_plan(loaded, target, one, other):
    with loaded.transaction(readonly=True) as conn:
        for query in (one, other, one):
            want = expected(conn, target, query)
            got = fetch_query(conn, target, query)
            assert by_id(got) == by_id(want)
    assert plan(target, one) is not plan(target, other)
    assert plan(target, one).stmt is not plan(target, other).stmt


def test_offset_zero_is_the_shape_without_offset(target):
    assert plan(target, {"limit": 3, "offset": 0}) is plan(target, {"limit": 3})
    assert plan(target, {"limit": 3, "offset": 1}) is plan(target, {"limit": 3, "offset": 9})


def test_the_table_and_the_mapped_class_never_share_a_plan():
    assert plan(items, where("id", "=", 1)) is not plan(Item, where("id", "=", 1))


HOSTILE = [
    "x'; DROP TABLE q_items; --",
    "apple' OR '1'='1",
    "%",
    "%s",
    "%(v0)s",
    "?",
    ":v0",
    "\\\\",
    '"; --',
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_bound(loaded, target, value):
    with loaded.transaction() as conn:
        conn.execute(sa.insert(items), [{"id": 100, "name": value}])
        conn.execute(sa.insert(Item.__table__), [{"id": 100, "name": value}])
    with loaded.transaction(readonly=True) as conn:
        assert [r["id"] for r in fetch_query(conn, target, where("name", "=", value))] == [100]
        assert [r["id"] for r in fetch_query(conn, target, where("name", "IN", [value, "x"]))] == [
            100
        ]
        rows = fetch_query(conn, target, where("name", "!=", value, order_by="id"))
        assert rows == expected(conn, target, where("name", "!=", value, order_by="id"))
        assert [r["id"] for r in rows] == [row["id"] for row in ROWS]
    with loaded.transaction(readonly=True) as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(items)) == len(ROWS) + 1


def test_like_escapes_exactly_as_select_query(loaded, target):
    with loaded.transaction(readonly=True) as conn:
        for pattern in ("a\\_b\\%c", "a_b%c", "a\\_%", "%\\%%", "a\\\\%", "_____"):
            for op in ("LIKE", "NOT LIKE"):
                query = where("name", op, pattern, order_by="id")
                assert fetch_query(conn, target, query) == expected(conn, target, query)
        assert [r["id"] for r in fetch_query(conn, target, where("name", "LIKE", "a\\_b\\%c"))] == [
            8
        ]


def test_allowed_fields_and_transform_arg(loaded, target):
    def lower(_field: str, _op: str, arg: Any) -> Any:
        return arg.lower()

    query = where("name", "=", "APPLE")
    with loaded.transaction(readonly=True) as conn:
        got = fetch_query(conn, target, query, allowed_fields={"name"}, transform_arg=lower)
        assert got == expected(conn, target, query, allowed_fields={"name"}, transform_arg=lower)
        assert [r["id"] for r in got] == [1]
        # The transformed argument decides the shape: None turns = into IS NULL.
        as_null = fetch_query(
            conn, target, query, transform_arg=lambda f, o, a: None if a == "APPLE" else a
        )
        assert by_id(as_null) == by_id(expected(conn, target, where("name", "=", None)))
        with pytest.raises(InvalidQuery, match="unknown field 'score'; allowed: name"):
            fetch_query(conn, target, where("score", "=", 1), allowed_fields={"name"})


@pytest.mark.parametrize(("query", "fragments"), ERROR_CASES)
def test_rejects_exactly_as_select_query(loaded, target, query, fragments):
    with pytest.raises(InvalidQuery) as by_select:
        select_query(target, query)
    with loaded.transaction() as conn:
        with pytest.raises(InvalidQuery) as by_fetch:
            fetch_query(conn, target, query)
        # The unit of work is still usable: nothing reached the database.
        assert conn.scalar(sa.select(sa.func.count()).select_from(items)) == len(ROWS)
    assert str(by_fetch.value) == str(by_select.value)
    for fragment in fragments:
        assert fragment in str(by_fetch.value)


def test_rejects_what_is_not_a_table(loaded):
    with loaded.transaction(readonly=True) as conn:
        for query in (None, {}, where("id", "=", 1)):
            with pytest.raises(InvalidQuery, match="not a Table or mapped class"):
                fetch_query(conn, "q_items", query)


def test_the_plan_cache_stays_bounded():
    for limit in range(_PLANS_MAX + 50):
        plan(items, {"filters": [{"field": "id", "op": ">", "arg": 0}], "limit": limit})
    assert len(_PLANS) <= _PLANS_MAX
    latest = {"filters": [{"field": "id", "op": ">", "arg": 5}], "limit": _PLANS_MAX + 49}
    assert plan(items, latest) is plan(items, latest)


def test_a_checked_spelling_still_checks_every_value(loaded, target):
    # The second call of one spelling skips the field/operator checks, never the values'.
    good = where("score", "<", 50, order_by={"field": "id", "direction": "desc"}, limit=2)
    with loaded.transaction(readonly=True) as conn:
        assert fetch_query(conn, target, good) == expected(conn, target, good)
        for arg, fragment in ((None, "'<' with None"), ([1], "takes one value")):
            bad = {**good, "filters": [{"field": "score", "op": "<", "arg": arg}]}
            with pytest.raises(InvalidQuery, match=fragment):
                fetch_query(conn, target, bad)
        for count in (-1, True, "2"):
            with pytest.raises(InvalidQuery, match="limit must be"):
                fetch_query(conn, target, {**good, "limit": count})
            with pytest.raises(InvalidQuery, match="offset must be"):
                fetch_query(conn, target, {**good, "offset": count})
        assert fetch_query(conn, target, good) == expected(conn, target, good)


def test_spellings_of_one_query_agree(loaded, target):
    spellings = [
        {"filters": [{"field": "name", "arg": "apple"}], "order_by": "score"},
        {"filters": [{"field": "name", "op": "=", "arg": "apple"}], "order_by": ["score"]},
        {
            "filters": [{"field": "name", "op": "==", "arg": "apple"}],
            "order_by": {"field": "score"},
        },
        {
            "filters": [{"op": " = ", "field": "name", "arg": "apple"}],
            "order_by": [{"direction": "asc", "field": "score"}],
        },
    ]
    with loaded.transaction(readonly=True) as conn:
        want = expected(conn, target, spellings[0])
        for query in spellings:
            assert fetch_query(conn, target, query) == want


def test_allowed_fields_of_any_kind_are_honoured(loaded, target):
    query = where("name", "=", "apple")
    with loaded.transaction(readonly=True) as conn:
        want = expected(conn, target, query)
        for allowed in (["name"], {"name"}, frozenset({"name"}), ("name", "id")):
            assert fetch_query(conn, target, query, allowed_fields=allowed) == want
        for allowed in (["id"], {"id"}, frozenset({"id"}), ("id",)):
            with pytest.raises(InvalidQuery, match="unknown field 'name'; allowed: id"):
                fetch_query(conn, target, query, allowed_fields=allowed)


def test_hostile_keys_and_types_are_checked_in_full(loaded, target):
    class Sneaky(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    with loaded.transaction(readonly=True) as conn:
        fetch_query(conn, target, where("name", "=", "x"))
        for query in (
            where(Sneaky("name; DROP"), "=", "x"),
            where("name", Sneaky("= 1 OR 1"), "x"),
            {"filters": [{"field": "name", "op": "=", "arg": "x", "extra": 1}]},
            {"filters": [{"field": "name", "arg": "x"}], "order_by": {"field": "id", "x": 1}},
            {"filters": [], "order_by": [{"field": "id", "direction": Sneaky("DESC; --")}]},
            {"filters": [], "where": "1=1"},
        ):
            with pytest.raises(InvalidQuery):
                fetch_query(conn, target, query)


def test_the_structure_cache_stays_bounded(loaded):
    with loaded.transaction(readonly=True) as conn:
        for i in range(_PLANS_MAX + 20):
            query = where(
                "score", ">", 0, order_by=[{"field": "id", "direction": " asc" + " " * i}]
            )
            fetch_query(conn, items, query)
    assert len(_STRUCTURES) <= _PLANS_MAX
    assert len(_PLANS) <= _PLANS_MAX


def test_one_query_spelling_with_plain_and_other_values_in_turn(loaded, target):
    def query(name: Any, low: Any) -> dict[str, Any]:
        return {
            "filters": [
                {"field": "name", "op": "!=", "arg": name},
                {"field": "score", "op": ">=", "arg": low},
            ],
            "order_by": "id",
        }

    with loaded.transaction(readonly=True) as conn:
        for name, low in [
            ("apple", 10),
            (None, 10),
            ("banana", 20),
            ("date", 0),
            (None, 0),
        ]:
            assert fetch_query(conn, target, query(name, low)) == expected(
                conn, target, query(name, low)
            )
        for bad in ([1, 2], None):
            with pytest.raises(InvalidQuery):
                fetch_query(conn, target, query("apple", bad))

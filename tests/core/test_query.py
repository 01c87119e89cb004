"""The dict query language on every backend: operators, NULLs, ordering, paging, errors, SQL text."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import pymysql
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.dialects.sqlite import pysqlite

from dblayer.core import JSON, Database, InvalidQuery, equality, select_query, where_query
from dblayer.core.query import compile_query, normalise_operator, update_values
from tests.core.query_schema import Item, items, metadata, statements_sent

ROWS = [
    {"id": 1, "name": "apple", "score": 10, "flag": True},
    {"id": 2, "name": "banana", "score": 20, "flag": False},
    {"id": 3, "name": "cherry", "score": None, "flag": None},
    {"id": 4, "name": None, "score": 30, "flag": True},
    {"id": 5, "name": "apple pie", "score": 10, "flag": None},
    {"id": 6, "name": "date", "score": 40, "flag": False},
    {"id": 7, "name": None, "score": None, "flag": None},
    {"id": 8, "name": "a_b%c", "score": 50, "flag": True},
]
ALL = {row["id"] for row in ROWS}
FIELDS = "flag, id, name, score"


@pytest.fixture(params=["table", "orm"])
def target(request: pytest.FixtureRequest) -> Any:
    """The Core table or the mapped class: the language treats both alike."""
    return items if request.param == "table" else Item


@pytest.fixture
def loaded(db: Database, tables_of: Any) -> Database:
    """``db`` with ROWS in both the table and the mapped class's table."""
    tables_of(db, metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(items), ROWS)
        conn.execute(sa.insert(Item.__table__), ROWS)
    return db


def run(db: Database, target: Any, query: Any) -> list[int]:
    """The ids ``query`` selects from ``target``, in the order the database returns them."""
    if isinstance(target, sa.Table):
        with db.transaction(readonly=True) as conn:
            return [row.id for row in conn.execute(select_query(target, query))]
    with db.session(readonly=True) as session:
        return [obj.id for obj in session.scalars(select_query(target, query))]


def where(field: str, op: str, arg: Any) -> dict[str, Any]:
    """A query of one filter."""
    return {"filters": [{"field": field, "op": op, "arg": arg}]}


# -- operators ----------------------------------------------------------------------------------

NOT_APPLE = ALL - {1}
NOT_APPLE_DATE = ALL - {1, 6}
OPERATOR_CASES = [
    ("=", "name", "apple", {1}),
    ("==", "name", "apple", {1}),
    ("=", "score", 10, {1, 5}),
    ("=", "name", None, {4, 7}),
    ("=", "name", "nothing", set()),
    ("!=", "name", "apple", NOT_APPLE),
    ("<>", "name", "apple", NOT_APPLE),
    ("! =", "name", "apple", NOT_APPLE),
    (" ! = ", "name", "apple", NOT_APPLE),
    ("!==", "name", "apple", NOT_APPLE),
    ("!=", "name", None, {1, 2, 3, 5, 6, 8}),
    ("<", "score", 20, {1, 5}),
    ("<=", "score", 20, {1, 2, 5}),
    (">", "score", 30, {6, 8}),
    (">=", "score", 30, {4, 6, 8}),
    ("<", "name", "b", {1, 5, 8}),
    ("IN", "name", ["apple", "date"], {1, 6}),
    ("in", "name", ["apple", "date"], {1, 6}),
    (" In ", "name", ["apple", "date"], {1, 6}),
    ("IN", "score", (10, 40), {1, 5, 6}),
    ("IN", "score", {20}, {2}),
    ("IN", "name", ["apple", None], {1, 4, 7}),
    ("IN", "name", [None], {4, 7}),
    ("IN", "name", [], set()),
    ("NOT IN", "name", ["apple", "date"], NOT_APPLE_DATE),
    ("not in", "name", ["apple", "date"], NOT_APPLE_DATE),
    ("NOT  IN", "name", ["apple", "date"], NOT_APPLE_DATE),
    ("! IN", "name", ["apple", "date"], NOT_APPLE_DATE),
    (" ! in ", "name", ["apple", "date"], NOT_APPLE_DATE),
    ("!in", "name", ["apple", "date"], NOT_APPLE_DATE),
    ("NOT IN", "name", ["apple", None], {2, 3, 5, 6, 8}),
    ("NOT IN", "name", [None], {1, 2, 3, 5, 6, 8}),
    ("NOT IN", "name", [], ALL),
    ("NOT IN", "score", [10, 20, 30, 40, 50], {3, 7}),
    ("LIKE", "name", "apple%", {1, 5}),
    ("like", "name", "%an%", {2}),
    ("LIKE", "name", "_____", {1, 8}),
    ("LIKE", "name", "a_b%", {8}),
    ("LIKE", "name", "%", {1, 2, 3, 5, 6, 8}),
    ("NOT LIKE", "name", "apple%", {2, 3, 4, 6, 7, 8}),
    ("not like", "name", "%", {4, 7}),
    ("! LIKE", "name", "apple%", {2, 3, 4, 6, 7, 8}),
    ("IS", "name", None, {4, 7}),
    ("is", "flag", True, {1, 4, 8}),
    ("IS", "flag", False, {2, 6}),
    ("IS NOT", "name", None, {1, 2, 3, 5, 6, 8}),
    ("is not", "flag", True, {2, 3, 5, 6, 7}),
    ("IS  NOT", "flag", False, {1, 3, 4, 5, 7, 8}),
    ("! IS", "flag", True, {2, 3, 5, 6, 7}),
    ("BETWEEN", "score", [20, 40], {2, 4, 6}),
    ("between", "score", (10, 10), {1, 5}),
    ("BETWEEN", "name", ["b", "d"], {2, 3}),
    ("BETWEEN", "score", [40, 20], set()),
]


@pytest.mark.parametrize(("op", "field", "arg", "expected"), OPERATOR_CASES)
def test_operator_selects_the_right_rows(loaded, target, op, field, arg, expected):
    assert set(run(loaded, target, where(field, op, arg))) == expected


# Each positive operator and its negation partition the rows: NULL rows land on exactly one side.
COMPLEMENTS = [
    ("=", "!=", "name", "apple"),
    ("=", "<>", "score", 10),
    ("=", "! =", "name", None),
    ("IN", "NOT IN", "name", ["apple", "banana"]),
    ("IN", "NOT IN", "name", ["apple", None]),
    ("IN", "! IN", "score", [10, None]),
    ("IN", "NOT IN", "name", [None]),
    ("IN", "NOT IN", "name", []),
    ("LIKE", "NOT LIKE", "name", "%a%"),
    ("LIKE", "! LIKE", "name", "%"),
    ("IS", "IS NOT", "flag", True),
    ("IS", "IS NOT", "flag", False),
    ("IS", "! IS", "name", None),
]


@pytest.mark.parametrize(("positive", "negative", "field", "arg"), COMPLEMENTS)
def test_negation_matches_exactly_the_complement(loaded, target, positive, negative, field, arg):
    matched = run(loaded, target, where(field, positive, arg))
    rest = run(loaded, target, where(field, negative, arg))
    assert set(matched) | set(rest) == ALL
    assert not set(matched) & set(rest)
    assert len(matched) + len(rest) == len(ALL)


def test_filters_are_anded(loaded, target):
    query = {
        "filters": [
            {"field": "name", "op": "LIKE", "arg": "apple%"},
            {"field": "score", "op": "=", "arg": 10},
            {"field": "flag", "op": "IS NOT", "arg": True},
        ]
    }
    assert run(loaded, target, query) == [5]


def test_or_inside_a_filter_stays_inside_it(loaded, target):
    # "IN with None" is an OR of two clauses: ANDed with another filter it must stay grouped.
    query = {
        "filters": [
            {"field": "name", "op": "IN", "arg": ["apple", None]},
            {"field": "score", "op": "=", "arg": 30},
        ]
    }
    assert run(loaded, target, query) == [4]


def test_op_defaults_to_equality(loaded, target):
    assert run(loaded, target, {"filters": [{"field": "name", "arg": "banana"}]}) == [2]


def test_no_query_and_empty_query_select_everything(loaded, target):
    assert set(run(loaded, target, None)) == ALL
    assert set(run(loaded, target, {})) == ALL
    assert set(run(loaded, target, {"filters": []})) == ALL


def test_values_are_data_not_sql(loaded, target):
    assert run(loaded, target, where("name", "=", "x' OR '1'='1")) == []
    assert run(loaded, target, where("name", "IN", ["'); DELETE FROM q_items; --"])) == []
    assert run(loaded, target, where("name", "=", "a_b%c")) == [8]
    assert set(run(loaded, target, None)) == ALL


def test_normalise_operator_spellings():
    assert normalise_operator("! =") == "!="
    assert normalise_operator(" ! in ") == "NOT IN"
    assert normalise_operator("not\tlike") == "NOT LIKE"
    assert normalise_operator("is  not") == "IS NOT"
    assert normalise_operator("! is") == "IS NOT"
    assert normalise_operator("between") == "BETWEEN"


# -- equality shorthand -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"name": "apple", "score": 10}, {1}),
        ({"score": 10}, {1, 5}),
        ({"name": None}, {4, 7}),
        ({"name": None, "score": None}, {7}),
        ({"flag": True}, {1, 4, 8}),
        ({}, ALL),
    ],
)
def test_equality(loaded, target, values, expected):
    stmt = sa.select(target).where(*equality(target, values))
    if isinstance(target, sa.Table):
        with loaded.transaction(readonly=True) as conn:
            found = {row.id for row in conn.execute(stmt)}
    else:
        with loaded.session(readonly=True) as session:
            found = {obj.id for obj in session.scalars(stmt)}
    assert found == expected


# -- order_by, limit, offset --------------------------------------------------------------------

SCORED = {"field": "score", "op": "IS NOT", "arg": None}  # NULLs sort differently per backend


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (
            [{"field": "score", "direction": "DESC"}, {"field": "id", "direction": "ASC"}],
            [8, 6, 4, 2, 1, 5],
        ),
        (
            [{"field": "score", "direction": "desc"}, {"field": "id", "direction": "desc"}],
            [8, 6, 4, 2, 5, 1],
        ),
        ([{"field": "score", "direction": " Desc "}, {"field": "id"}], [8, 6, 4, 2, 1, 5]),
        ([{"field": "score"}, {"field": "id", "direction": "DESC"}], [5, 1, 2, 4, 6, 8]),
        ({"field": "id", "direction": "DESC"}, [8, 6, 5, 4, 2, 1]),
        ({"field": "id", "direction": "asc"}, [1, 2, 4, 5, 6, 8]),
        ("id", [1, 2, 4, 5, 6, 8]),
        (["score", "id"], [1, 5, 2, 4, 6, 8]),
        (["score", {"field": "id", "direction": "DESC"}], [5, 1, 2, 4, 6, 8]),
    ],
)
def test_order_by(loaded, target, order_by, expected):
    assert run(loaded, target, {"filters": [SCORED], "order_by": order_by}) == expected


@pytest.mark.parametrize(
    ("limit", "offset", "expected"),
    [
        (0, None, []),
        (0, 3, []),
        (3, None, [1, 2, 3]),
        (3, 0, [1, 2, 3]),
        (3, 2, [3, 4, 5]),
        (None, 6, [7, 8]),
        (100, 7, [8]),
        (5, 8, []),
        (None, None, [1, 2, 3, 4, 5, 6, 7, 8]),
    ],
)
def test_limit_and_offset(loaded, target, limit, offset, expected):
    query = {"order_by": "id", "limit": limit, "offset": offset}
    assert run(loaded, target, query) == expected


# -- updates and deletes ------------------------------------------------------------------------


def test_where_query_drives_update_and_delete(loaded):
    with loaded.transaction() as conn:
        changed = conn.execute(
            sa.update(items)
            .where(*where_query(items, where("name", "NOT IN", ["apple", None])))
            .values(**update_values(items, {"score": 0}))
        ).rowcount
        deleted = conn.execute(sa.delete(items).where(*where_query(items, where("score", "=", 0))))
    assert changed == 5
    assert deleted.rowcount == 5
    with loaded.transaction(readonly=True) as conn:
        assert set(conn.scalars(sa.select(items.c.id))) == {1, 4, 7}


def test_allowed_fields_and_transform_arg(loaded, target):
    lower = compile_query(
        target,
        where("name", "=", "APPLE"),
        allowed_fields={"name"},
        transform_arg=lambda field, op, arg: arg.lower(),
    )
    stmt = lower.apply(sa.select(target.id if target is Item else target.c.id))
    with loaded.transaction(readonly=True) as conn:
        assert conn.scalars(stmt).all() == [1]
    with statements_sent(loaded) as sent, pytest.raises(InvalidQuery) as info:
        select_query(target, where("score", "=", 1), allowed_fields={"name"})
    assert "unknown field 'score'; allowed: name" in str(info.value)
    assert sent == []


# -- errors: raised before any SQL, naming the fault and what is allowed --------------------------

ERROR_CASES = [
    (where("nope", "=", 1), ["unknown field 'nope'", f"allowed: {FIELDS}"]),
    (
        where("name; DROP TABLE q_items", "=", 1),
        ["unknown field 'name; DROP TABLE q_items'", FIELDS],
    ),
    (where("NAME", "=", 1), ["unknown field 'NAME'", FIELDS]),
    (where(5, "=", 1), ["unknown field 5", FIELDS]),
    ({"filters": [{"op": "=", "arg": 1}]}, ["unknown field None", FIELDS]),
    (where("name", "~", "a"), ["unknown operator '~'", "allowed:", "NOT IN", "BETWEEN"]),
    (where("name", "= 'a' OR 1=1 --", "a"), ["unknown operator \"= 'a' OR 1=1 --\"", "allowed:"]),
    (where("name", "!<", "a"), ["unknown operator '!<'", "allowed:", "'!' negates"]),
    (where("name", "NOT", "a"), ["unknown operator 'NOT'", "allowed:"]),
    (where("name", "", "a"), ["unknown operator ''", "allowed:"]),
    (where("name", None, "a"), ["operator must be a string, got NoneType"]),
    (where("name", 5, "a"), ["operator must be a string, got int"]),
    (where("name", "ＩＮ", ["a"]), ["unknown operator 'ＩＮ'", "allowed:"]),
    (
        {"order_by": {"field": "id", "direction": "sideways"}},
        ["unknown direction 'sideways'", "allowed: ASC, DESC"],
    ),
    ({"order_by": {"field": "id", "direction": None}}, ["unknown direction None", "ASC, DESC"]),
    (
        {"order_by": {"field": "id", "direction": "ASC; DROP TABLE q_items"}},
        ["unknown direction", "ASC, DESC"],
    ),
    ({"order_by": {"field": "nope"}}, ["unknown field 'nope'", FIELDS]),
    ({"order_by": ["id", "id DESC"]}, ["unknown field 'id DESC'", FIELDS]),
    (
        {"order_by": {"field": "id", "dir": "ASC"}},
        ["unknown order_by keys ['dir']", "allowed: field, direction"],
    ),
    ({"order_by": 5}, ["order_by must be a dict, a list of dicts, or a field name"]),
    ({"order_by": [5]}, ["an order_by entry must be a dict with field, direction; got 5"]),
    (
        {"filter": []},
        ["unknown query keys ['filter']", "allowed: filters, order_by, limit, offset"],
    ),
    ({"filters": [], "fields": "*"}, ["unknown query keys ['fields']", "allowed: filters"]),
    (["filters"], ["a query must be a dict, got list"]),
    (
        {"filters": {"field": "name", "op": "=", "arg": 1}},
        ["filters must be a list of {field, op, arg} dicts"],
    ),
    ({"filters": "name = 1"}, ["filters must be a list"]),
    ({"filters": ["name = 1"]}, ["a filter must be a dict with field, op, arg; got 'name = 1'"]),
    (
        {"filters": [{"field": "name", "op": "=", "arg": 1, "value": 2}]},
        ["unknown filter keys ['value']", "allowed: field, op, arg"],
    ),
    ({"limit": -1}, ["limit must be a non-negative integer", "got -1"]),
    ({"limit": True}, ["limit must be a non-negative integer", "got True"]),
    ({"limit": "5"}, ["limit must be a non-negative integer", "got '5'"]),
    ({"limit": 1.5}, ["limit must be a non-negative integer", "got 1.5"]),
    ({"limit": 2**64}, ["limit must be", str(2**63 - 1)]),
    ({"offset": -3}, ["offset must be a non-negative integer", "got -3"]),
    ({"offset": False}, ["offset must be a non-negative integer", "got False"]),
    ({"offset": "2"}, ["offset must be a non-negative integer", "got '2'"]),
    (where("name", "IN", "apple"), ["'name'", "IN needs a list of values, got str"]),
    (where("name", "NOT IN", 5), ["'name'", "NOT IN needs a list of values, got int"]),
    (where("name", "IN", None), ["'name'", "IN needs a list of values, got NoneType"]),
    (where("score", "BETWEEN", [1]), ["'score'", "BETWEEN needs a pair [low, high], got [1]"]),
    (where("score", "BETWEEN", 5), ["'score'", "BETWEEN needs a pair [low, high], got 5"]),
    (where("score", "BETWEEN", [1, 2, 3]), ["BETWEEN needs a pair [low, high], got [1, 2, 3]"]),
    (where("score", "BETWEEN", [None, 3]), ["'score'", "BETWEEN", "None", "IS / IS NOT"]),
    (where("name", "IS", 5), ["'name'", "IS takes None, True or False, got 5"]),
    (where("name", "IS", "NULL"), ["IS takes None, True or False, got 'NULL'"]),
    (where("flag", "IS NOT", 0), ["IS NOT takes None, True or False, got 0"]),
    (where("score", "IS", True), ["'score'", "IS True/False needs a Boolean field", "IS None"]),
    (where("score", "<", None), ["'score'", "'<' with None", "use IS / IS NOT"]),
    (where("score", ">=", None), ["'>=' with None", "use IS / IS NOT"]),
    (where("name", "LIKE", 5), ["'name'", "LIKE needs a string pattern, got int"]),
    (where("name", "NOT LIKE", None), ["NOT LIKE needs a string pattern, got NoneType"]),
    (
        where("score", "LIKE", "1%"),
        ["'score'", "LIKE needs a text field, got a field of type Integer"],
    ),
    (
        where("flag", "NOT LIKE", "t%"),
        ["'flag'", "NOT LIKE needs a text field, got a field of type Boolean"],
    ),
    (where("id", "! LIKE", "%"), ["'id'", "NOT LIKE needs a text field"]),
    (where("score", "=", [1, 2]), ["'score'", "'=' takes one value, got a list", "use IN"]),
    (where("score", "!=", (1, 2)), ["'!=' takes one value, got a tuple", "use NOT IN"]),
    (where("score", ">", [1]), ["'>' takes one value, got a list"]),
]


@pytest.mark.parametrize(("query", "fragments"), ERROR_CASES)
def test_rejected_before_any_sql(loaded, target, query, fragments):
    with statements_sent(loaded) as sent, pytest.raises(InvalidQuery) as info:
        run(loaded, target, query)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert sent == []


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda t: where_query(t, {"limit": 1}), ["limit, offset and order_by do not apply"]),
        (lambda t: where_query(t, {"order_by": "id"}), ["do not apply to updates and deletes"]),
        (lambda t: where_query(t, where("nope", "=", 1)), ["unknown field 'nope'", FIELDS]),
        (lambda t: equality(t, {"nope": 1}), ["unknown field 'nope'", FIELDS]),
        (
            lambda t: equality(t, {"name": 1}, allowed_fields={"id"}),
            ["unknown field 'name'; allowed: id"],
        ),
        (lambda t: equality(t, [("name", 1)]), ["expected a dict of field: value pairs, got list"]),
        (lambda t: equality(t, {"score": [1, 2]}), ["'score'", "'=' takes one value", "use IN"]),
    ],
)
def test_update_helpers_reject_before_any_sql(loaded, target, call, fragments):
    with (
        statements_sent(loaded) as sent,
        pytest.raises(InvalidQuery) as info,
        loaded.transaction() as conn,
    ):
        conn.execute(sa.update(target).where(*call(target)).values(score=-1))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert sent == []
    assert run(loaded, target, where("score", "=", -1)) == []


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ({}, ["updates must be a non-empty dict"]),
        ([("score", 1)], ["updates must be a non-empty dict"]),
        ({"nope": 1}, ["unknown field 'nope'", FIELDS]),
        ({"score": 1, "id; --": 2}, ["unknown field 'id; --'", FIELDS]),
    ],
)
def test_update_values_rejects_before_any_sql(loaded, target, values, fragments):
    with (
        statements_sent(loaded) as sent,
        pytest.raises(InvalidQuery) as info,
        loaded.transaction() as conn,
    ):
        conn.execute(sa.update(target).values(**update_values(target, values)))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert sent == []
    assert set(run(loaded, target, where("score", "IN", [10, 20, 30, 40, 50, None]))) == ALL


def test_only_tables_and_mapped_classes_are_queried(loaded):
    with statements_sent(loaded) as sent, pytest.raises(InvalidQuery) as info:
        run(loaded, object, None)
    assert "not a Table or mapped class" in str(info.value)
    assert sent == []


# -- pinned SQL: values are bound parameters on every dialect -----------------------------------

DIALECTS = {
    "sqlite": pysqlite.dialect(),
    "postgresql": psycopg.dialect(),
    "mysql": pymysql.dialect(),
}
COLUMNS = "SELECT q_items.id, q_items.name, q_items.score, q_items.flag \nFROM q_items \nWHERE "
PINNED = [
    (
        {
            "filters": [{"field": "name", "op": "=", "arg": "x'; DROP TABLE q_items; --"}],
            "order_by": [{"field": "score", "direction": "desc"}, "id"],
            "limit": 5,
            "offset": 2,
        },
        {
            "sqlite": "q_items.name = ? ORDER BY q_items.score DESC, q_items.id ASC\n LIMIT ? OFFSET ?",
            "postgresql": "q_items.name = %(name_1)s::VARCHAR ORDER BY q_items.score DESC, q_items.id ASC \n LIMIT %(param_1)s::INTEGER OFFSET %(param_2)s::INTEGER",
            "mysql": "q_items.name = %s ORDER BY q_items.score DESC, q_items.id ASC \n LIMIT %s, %s",
        },
        ["x'; DROP TABLE q_items; --", 5, 2],
    ),
    (
        where("name", "! in", ["a'b", None, "c;d"]),
        {
            "sqlite": "(q_items.name NOT IN (?, ?))",
            "postgresql": "(q_items.name NOT IN (%(name_1_1)s::VARCHAR, %(name_1_2)s::VARCHAR))",
            "mysql": "(q_items.name NOT IN (%s, %s))",
        },
        ["a'b", "c;d"],
    ),
    (
        where("name", "IN", ["a'b", None]),
        {
            "sqlite": "q_items.name IN (?) OR q_items.name IS NULL",
            "postgresql": "q_items.name IN (%(name_1_1)s::VARCHAR) OR q_items.name IS NULL",
            "mysql": "q_items.name IN (%s) OR q_items.name IS NULL",
        },
        ["a'b"],
    ),
    (
        {
            "filters": [
                {"field": "name", "op": "NOT LIKE", "arg": "%'--"},
                {"field": "score", "op": "BETWEEN", "arg": [1, 9]},
                {"field": "name", "op": "!=", "arg": "O'Brien"},
            ]
        },
        {
            "sqlite": "(q_items.name NOT LIKE ? ESCAPE '\\' OR q_items.name IS NULL) AND q_items.score BETWEEN ? AND ? AND (q_items.name != ? OR q_items.name IS NULL)",
            "postgresql": "(q_items.name NOT LIKE %(name_1)s::VARCHAR ESCAPE '\\' OR q_items.name IS NULL) AND q_items.score BETWEEN %(score_1)s::INTEGER AND %(score_2)s::INTEGER AND (q_items.name != %(name_2)s::VARCHAR OR q_items.name IS NULL)",
            "mysql": "(q_items.name NOT LIKE %s ESCAPE '\\\\' OR q_items.name IS NULL) AND q_items.score BETWEEN %s AND %s AND (q_items.name != %s OR q_items.name IS NULL)",
        },
        ["%'--", 1, 9, "O'Brien"],
    ),
    (
        # IS takes only None/True/False, which SQLAlchemy renders as keywords: no user text.
        {
            "filters": [
                {"field": "flag", "op": "IS NOT", "arg": True},
                {"field": "name", "op": "IS", "arg": None},
            ]
        },
        {
            "sqlite": "q_items.flag IS NOT 1 AND q_items.name IS NULL",
            "postgresql": "q_items.flag IS NOT true AND q_items.name IS NULL",
            "mysql": "q_items.flag IS NOT true AND q_items.name IS NULL",
        },
        [],
    ),
]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize(("query", "expected", "values"), PINNED)
def test_pinned_sql(dialect, query, expected, values):
    compiled = select_query(items, query).compile(
        dialect=DIALECTS[dialect], compile_kwargs={"render_postcompile": True}
    )
    assert str(compiled) == COLUMNS + expected[dialect]
    params = compiled.params
    assert sorted(map(repr, params.values())) == sorted(map(repr, values))
    for value in values:
        if isinstance(value, str):
            assert value not in str(compiled)


def test_pinned_sql_of_a_mapped_class():
    compiled = select_query(Item, where("name", "=", "a'b")).compile(dialect=DIALECTS["sqlite"])
    assert str(compiled) == (
        "SELECT q_orm_items.id, q_orm_items.name, q_orm_items.score, q_orm_items.flag \n"
        "FROM q_orm_items \nWHERE q_orm_items.name = ?"
    )
    assert compiled.params == {"name_1": "a'b"}


class Flag(sa.types.TypeDecorator):
    """A Boolean under a TypeDecorator, as stores declare them."""

    impl = sa.Boolean
    cache_ok = True


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("sqlite", "q_typed.data = ? AND q_typed.ok IS NOT 0 AND q_typed.ok IS 1"),
        (
            "postgresql",
            "q_typed.data = %(data_1)s::JSONB AND q_typed.ok IS NOT false AND q_typed.ok IS true",
        ),
        ("mysql", "q_typed.data = %s AND q_typed.ok IS NOT false AND q_typed.ok IS true"),
    ],
)
def test_container_and_is_checks_see_through_type_decorators(dialect, expected):
    typed = sa.Table(
        "q_typed",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("data", JSON()),
        sa.Column("ok", Flag()),
    )
    query = {
        "filters": [
            {"field": "data", "op": "=", "arg": [1, "a'b"]},
            {"field": "ok", "op": "IS NOT", "arg": False},
            {"field": "ok", "op": "IS", "arg": True},
        ]
    }
    compiled = select_query(typed, query).compile(dialect=DIALECTS[dialect])
    assert str(compiled).split("WHERE ")[1] == expected
    assert list(compiled.params.values()) == [[1, "a'b"]]


def test_empty_in_needs_no_sql_list():
    # PostgreSQL rejects "IN ()": an empty list compiles to a constant instead.
    for dialect in DIALECTS.values():
        text = str(select_query(items, where("name", "IN", [])).compile(dialect=dialect))
        assert "IN ()" not in text
        assert " IN " not in text.split("WHERE", 1)[1]


# -- backend facts the language does not hide -----------------------------------------------------


def test_like_escapes_with_backslash_on_every_backend(loaded, target):
    # A backslash escapes % and _ everywhere (SQLite has no default escape character).
    assert run(loaded, target, where("name", "LIKE", "a\\_b\\%c")) == [8]
    assert run(loaded, target, where("name", "LIKE", "a\\_b\\%")) == []
    assert set(run(loaded, target, where("name", "NOT LIKE", "%\\%%"))) == ALL - {8}


def test_like_rejects_a_dangling_escape(loaded, target):
    with statements_sent(loaded) as sent, pytest.raises(InvalidQuery) as info:
        run(loaded, target, where("name", "LIKE", "abc\\"))
    assert "ends with a lone escape" in str(info.value)
    assert sent == []

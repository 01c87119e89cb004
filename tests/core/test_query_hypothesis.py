"""Property tests of the dict query language: hostile names are refused, hostile values are data."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from dblayer.core import Database, InvalidQuery, InvalidSortKey, equality, select_query, sort_keys
from dblayer.core.query import OPERATORS, normalise_operator
from tests.core.query_schema import Item, items, metadata, statements_sent, texts

SETTINGS = settings(max_examples=50, deadline=None)
FIELDS = {"id", "name", "score", "flag"}

# Pieces of SQL and of text that trips up quoting, escaping and LIKE.
SQL_BITS = [
    "'",
    '"',
    "`",
    ";",
    "--",
    "/*",
    "*/",
    "%",
    "_",
    "\\",
    "\\'",
    "''",
    "\n",
    "\t",
    " ",
    " OR 1=1",
    "' OR '1'='1",
    "); DROP TABLE q_texts; --",
    "NULL",
    "IN",
    "!",
    "=",
    "é",
    "ß",
    "İ",
    "😀",
    "\u200b",
    "\x1c",
]
NO_NUL = st.characters(codec="utf-8", exclude_characters="\x00")
hostile_text = st.lists(
    st.one_of(st.sampled_from(SQL_BITS), st.text(alphabet=NO_NUL, max_size=12)), max_size=6
).map("".join)
# Near misses of real operators and directions: a valid word wrapped in something else.
near_miss = st.builds(
    lambda before, word, after: before + word + after,
    st.sampled_from(["", " ", "!", "! ", "NOT ", "'", ";", "\x1c", "Ｉ"]),
    st.sampled_from([*OPERATORS, "in", "! in", "is not", "asc", "DESC", "Desc"]),
    st.sampled_from(["", " ", ";", " --", "'", " OR 1=1", "\x1c", "\u00a0", "=", "ſ"]),
)
anything = st.one_of(hostile_text, near_miss, st.text(alphabet=NO_NUL, max_size=20))

# Python's str.split()/strip() also treat \x1c-\x1f as whitespace; the language ignores it too.
_WS = r"[\s\x1c-\x1f]"
_OPERATOR = re.compile(
    rf"{_WS}*(=|==|!=|<>|<|<=|>|>=|in|not{_WS}+in|like|not{_WS}+like|is|is{_WS}+not|between"
    rf"|!{_WS}*(=|==|in|like|is)){_WS}*",
    re.IGNORECASE | re.ASCII,
)
_DIRECTION = re.compile(rf"{_WS}*(asc|desc){_WS}*", re.IGNORECASE | re.ASCII)


def valid_operator(op: str) -> bool:
    """The oracle: an allow-listed operator in any ASCII case and spacing."""
    return op.isascii() and _OPERATOR.fullmatch(op) is not None


def run(db: Database, target: Any, query: Any) -> list[int]:
    """The ids ``query`` selects from ``target``."""
    if isinstance(target, sa.Table):
        with db.transaction(readonly=True) as conn:
            return [row.id for row in conn.execute(select_query(target, query))]
    with db.session(readonly=True) as session:
        return [obj.id for obj in session.scalars(select_query(target, query))]


def refused(db: Database, call: Any, *args: Any) -> str:
    """``call(*args)`` must raise InvalidQuery having sent no SQL; returns the message."""
    with statements_sent(db) as sent:
        try:
            call(*args)
        except InvalidQuery as e:
            message = str(e)
        else:
            raise AssertionError("accepted")
    assert sent == []
    return message


def test_hostile_field_names_are_refused(db, tables_of):
    tables_of(db, metadata)

    @SETTINGS
    @given(name=anything)
    def check(name: str) -> None:
        if name in FIELDS:
            return
        for target in (items, Item):
            message = refused(db, run, db, target, {"filters": [{"field": name, "arg": 1}]})
            assert f"unknown field {name!r}; allowed: flag, id, name, score" in message
            refused(db, run, db, target, {"order_by": name})
            refused(db, run, db, target, {"order_by": [{"field": name, "direction": "ASC"}]})
            refused(db, equality, target, {name: 1})
            with statements_sent(db) as sent:
                try:
                    sort_keys(target, [name])
                except InvalidSortKey as e:
                    assert repr(name) in str(e)
                else:
                    raise AssertionError("accepted")
            assert sent == []

    check()


def test_operators_are_allow_listed(db, tables_of):
    tables_of(db, metadata)

    @SETTINGS
    @given(op=anything)
    def check(op: str) -> None:
        if valid_operator(op):
            assert normalise_operator(op) in OPERATORS
            return
        for target in (items, Item):
            query = {"filters": [{"field": "name", "op": op, "arg": "x"}]}
            message = refused(db, run, db, target, query)
            assert f"unknown operator {op!r}; allowed:" in message

    check()


def test_directions_are_allow_listed(db, tables_of):
    tables_of(db, metadata)

    @SETTINGS
    @given(direction=anything)
    def check(direction: str) -> None:
        query = {"order_by": {"field": "id", "direction": direction}}
        if direction.isascii() and _DIRECTION.fullmatch(direction):
            assert run(db, items, query) == []
        else:
            message = refused(db, run, db, items, query)
            assert f"unknown direction {direction!r}; allowed: ASC, DESC" in message
        if not re.fullmatch("asc|desc", direction, re.IGNORECASE | re.ASCII):
            with statements_sent(db) as sent:
                try:
                    sort_keys(items, ["id"], direction)
                except InvalidSortKey as e:
                    assert f"unknown sort direction {direction!r}" in str(e)
                else:
                    raise AssertionError("accepted")
            assert sent == []

    check()


def like_literal(value: str) -> str:
    """A LIKE pattern that matches ``value`` and nothing else."""
    return re.sub(r"([\\%_])", r"\\\1", value)


def test_hostile_values_round_trip_as_data(db, tables_of):
    tables_of(db, metadata)

    @SETTINGS
    @given(value=hostile_text)
    def check(value: str) -> None:
        # Decoys that a value pasted into SQL, or read as a LIKE pattern, would also match.
        # None of them is equal to the value under any backend's collation.
        decoys = [value.replace("%", "x").replace("_", "y"), value + "z"]
        if value.rstrip(" ") != "%":
            decoys.append("%")
        rows = [{"id": 1, "value": value}] + [
            {"id": i, "value": d} for i, d in enumerate(decoys, start=2) if d != value
        ]
        with db.transaction() as conn:
            conn.execute(sa.delete(texts))
            conn.execute(sa.insert(texts), rows)
        for op, arg in (
            ("=", value),
            ("IN", [value, value + "never stored"]),
            ("LIKE", like_literal(value)),
        ):
            query = {"filters": [{"field": "value", "op": op, "arg": arg}]}
            with db.transaction(readonly=True) as conn:
                found = conn.execute(select_query(texts, query)).all()
            assert [(row.id, row.value) for row in found] == [(1, value)], op
        with db.transaction(readonly=True) as conn:
            count = conn.scalar(sa.select(sa.func.count()).select_from(texts))
            by_equality = conn.scalars(
                sa.select(texts.c.id).where(*equality(texts, {"value": value}))
            )
            assert by_equality.all() == [1]
        assert count == len(rows)

    check()
    with db.transaction() as conn:
        conn.execute(sa.delete(texts))


def test_string_comparison_is_exact_on_every_backend(db, tables_of):
    # dblayer's tables use a binary collation on MariaDB and case-sensitive LIKE on SQLite,
    # so '=', IN, '!=' and LIKE treat case, accents, trailing spaces and emoji alike everywhere.
    tables_of(db, metadata)
    values = ["abc", "ABC", "abc ", "ábc", "abd", "😀", "😁"]
    with db.transaction() as conn:
        conn.execute(sa.insert(texts), [{"id": i, "value": v} for i, v in enumerate(values, 1)])

    def ids(op: str, arg: Any) -> list[int]:
        query = {"filters": [{"field": "value", "op": op, "arg": arg}], "order_by": "id"}
        return run(db, texts, query)

    assert ids("=", "abc") == [1]
    assert ids("IN", ["ABC"]) == [2]
    assert ids("!=", "abc") == [2, 3, 4, 5, 6, 7]
    assert ids("=", "😀") == [6]
    assert ids("LIKE", "abc") == [1]
    assert ids("LIKE", "ab%") == [1, 3, 5]

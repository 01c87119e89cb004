"""insert_many / upsert / insert_ignore on every backend."""

from __future__ import annotations

import sys

import pytest
import sqlalchemy as sa

from dblayer.core import (
    JSON,
    ConflictError,
    DuplicateEntry,
    InvalidQuery,
    InvalidValue,
    insert_ignore,
    insert_many,
    new_metadata,
    upsert,
)
from dblayer.core.upsert import insert_many_ids
from tests.core import claims_schema as cs

upsert_module = sys.modules["dblayer.core.upsert"]

things = cs.things
pairs = cs.pairs


@pytest.fixture
def empty(db, tables_of):
    tables_of(db, cs.metadata)
    return db


def seed(db, rows) -> None:
    with db.transaction() as conn:
        conn.execute(sa.insert(things), rows)


SEED = [
    {"id": 1, "name": "one", "score": 10, "note": "first", "tags": ["a"]},
    {"id": 2, "name": "two", "score": 20, "note": "second", "tags": None},
]


@pytest.fixture
def seeded(empty):
    seed(empty, SEED)
    return empty


def state(db, table=things) -> list[dict]:
    with db.transaction(readonly=True) as conn:
        order = list(table.primary_key.columns)
        return [dict(r) for r in conn.execute(sa.select(table).order_by(*order)).mappings()]


def run(db, fn, *args, **kwargs):
    with db.transaction() as conn:
        return fn(conn, *args, **kwargs)


def row(id: int, name: str, score: int = 0, note: str | None = None, tags=None) -> dict:
    return {"id": id, "name": name, "score": score, "note": note, "tags": tags}


# -- insert_many ----------------------------------------------------------------------------


def test_insert_many_stores_every_row(empty):
    db = empty
    rows = [{"id": i, "name": f"n{i}", "tags": {"i": i}} for i in range(1, 51)]
    assert run(db, insert_many, things, rows) == 50
    assert state(db) == [row(i, f"n{i}", tags={"i": i}) for i in range(1, 51)]


def test_insert_many_takes_one_dict(empty):
    db = empty
    assert run(db, insert_many, things, {"id": 7, "name": "seven"}) == 1
    assert state(db) == [row(7, "seven")]


def test_insert_many_keeps_columns_that_only_later_rows_name(empty):
    # One executemany would compile from the first row and drop "note"/"score" of the others.
    db = empty
    rows = [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b", "note": "kept", "score": 5},
        {"id": 3, "name": "c", "score": 6},
        {"id": 4, "name": "d", "note": "also kept"},
    ]
    assert run(db, insert_many, things, rows) == 4
    assert state(db) == [
        row(1, "a"),
        row(2, "b", 5, "kept"),
        row(3, "c", 6),
        row(4, "d", note="also kept"),
    ]


def test_insert_many_with_no_rows_does_nothing(seeded):
    db = seeded
    assert run(db, insert_many, things, []) == 0
    assert state(db) == SEED


def test_insert_many_duplicate_raises_duplicate_entry_and_keeps_nothing(seeded):
    db = seeded
    with pytest.raises(DuplicateEntry), db.transaction() as conn:
        insert_many(conn, things, [{"id": 10, "name": "ten"}, {"id": 11, "name": "eleven"}])
        insert_many(conn, things, [{"id": 12, "name": "twelve"}, {"id": 1, "name": "dup"}])
    assert state(db) == SEED


def test_insert_many_duplicate_within_the_batch(empty):
    db = empty
    with pytest.raises(DuplicateEntry):
        run(
            db,
            insert_many,
            things,
            [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 1, "name": "c"}],
        )
    assert state(db) == []


def test_insert_many_duplicate_on_a_unique_column(seeded):
    db = seeded
    with pytest.raises(DuplicateEntry):
        run(db, insert_many, things, [{"id": 3, "name": "one"}])
    assert state(db) == SEED


def test_insert_many_error_is_catchable_inside_the_transaction(seeded):
    # The call raises dblayer's error itself, not a SQLAlchemy one, even before the block ends.
    db = seeded
    with pytest.raises(DuplicateEntry), db.transaction() as conn:
        try:
            insert_many(conn, things, [{"id": 1, "name": "dup"}])
        except sa.exc.SQLAlchemyError:  # pragma: no cover - the failure this test is about
            pytest.fail("a SQLAlchemy error escaped insert_many")
    assert state(db) == SEED


@pytest.mark.parametrize(
    "rows",
    [
        [{"id": 1, "name": "a", "nope": 1}],
        [{"id": 1, "name": "a"}, {"id": 2, "name": "b", "bogus": 2}],
        [{1: "x"}],
        ["not a dict"],
        "text",
        5,
    ],
    ids=["unknown", "unknown-later", "non-str", "not-a-dict", "str", "int"],
)
def test_bad_rows_are_rejected_before_anything_is_written(empty, rows):
    db = empty
    for fn in (insert_many, upsert, insert_ignore):
        with pytest.raises(InvalidQuery):
            run(db, fn, things, rows)
    assert state(db) == []


def test_a_value_the_column_cannot_hold_is_invalid_value(empty):
    db = empty
    with pytest.raises(InvalidValue):
        run(db, insert_many, things, [{"id": 1, "name": "a", "tags": {1, 2}}])
    assert state(db) == []


# -- upsert ---------------------------------------------------------------------------------


def test_upsert_inserts_new_rows(empty):
    db = empty
    assert (
        run(db, upsert, things, [{"id": 1, "name": "a", "score": 1}, {"id": 2, "name": "b"}]) == 2
    )
    assert state(db) == [row(1, "a", 1), row(2, "b")]


def test_upsert_replaces_every_given_non_key_column_by_default(seeded):
    db = seeded
    n = run(
        db,
        upsert,
        things,
        [{"id": 1, "name": "uno", "score": 11, "tags": {"x": 1}}, {"id": 3, "name": "three"}],
    )
    assert n == 2
    # "note" was not given, so row 1 keeps its own.
    assert state(db) == [row(1, "uno", 11, "first", {"x": 1}), SEED[1], row(3, "three")]


def test_upsert_with_an_update_list_replaces_only_those(seeded):
    db = seeded
    run(
        db, upsert, things, [{"id": 1, "name": "uno", "score": 11, "note": "new"}], update=["score"]
    )
    assert state(db) == [row(1, "one", 11, "first", ["a"]), SEED[1]]


def test_upsert_updating_nothing_keeps_existing_rows_and_adds_new(seeded):
    db = seeded
    rows = [{"id": 1, "name": "uno", "score": 99}, {"id": 5, "name": "five", "score": 5}]
    assert run(db, upsert, things, rows, update=[]) == 2
    assert state(db) == [*SEED, row(5, "five", 5)]


def test_upsert_updating_nothing_still_reports_bad_data(seeded):
    # INSERT IGNORE would store a NULL "name" as '' on MariaDB; it must fail as elsewhere.
    db = seeded
    with pytest.raises(ConflictError):
        run(db, upsert, things, [{"id": 9, "name": None}], update=[])
    assert state(db) == SEED


def test_upsert_on_a_unique_key(seeded):
    db = seeded
    run(
        db, upsert, things, [{"id": 3, "name": "one", "score": 100}], key=["name"], update=["score"]
    )
    assert state(db) == [row(1, "one", 100, "first", ["a"]), SEED[1]]


def test_upsert_same_key_twice_in_one_batch_keeps_the_last(empty):
    db = empty
    run(
        db, upsert, things, [{"id": 1, "name": "a", "score": 1}, {"id": 1, "name": "a", "score": 2}]
    )
    assert state(db) == [row(1, "a", 2)]


def test_upsert_with_rows_naming_different_columns(seeded):
    db = seeded
    rows = [{"id": 1, "name": "one", "score": 5}, {"id": 2, "name": "two", "note": "changed"}]
    run(db, upsert, things, rows)
    assert state(db) == [row(1, "one", 5, "first", ["a"]), row(2, "two", 20, "changed")]


def test_upsert_composite_key(empty):
    db = empty
    run(db, insert_many, pairs, [{"a": 1, "b": "x", "value": 1}, {"a": 1, "b": "y", "value": 2}])
    run(db, upsert, pairs, [{"a": 1, "b": "x", "value": 10}, {"a": 2, "b": "x", "value": 20}])
    assert [(r["a"], r["b"], r["value"]) for r in state(db, pairs)] == [
        (1, "x", 10),
        (1, "y", 2),
        (2, "x", 20),
    ]


def test_upsert_with_no_rows_does_nothing(seeded):
    db = seeded
    assert run(db, upsert, things, []) == 0
    assert state(db) == SEED


def test_upsert_in_an_orm_session(seeded):
    db = seeded
    with db.session() as session:
        assert upsert(session, things, {"id": 2, "name": "two", "score": 22}) == 1
    assert state(db)[1]["score"] == 22


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": ["nope"]},
        {"key": "nope"},
        {"key": ["score"]},
        {"key": ["id", "note"]},
        {"update": ["nope"]},
        {"update": [1]},
    ],
    ids=[
        "unknown-key",
        "unknown-key-str",
        "non-unique-key",
        "not-a-unique-set",
        "unknown-update",
        "non-str-update",
    ],
)
def test_upsert_bad_key_or_update_is_rejected(seeded, kwargs):
    db = seeded
    with pytest.raises(InvalidQuery):
        run(db, upsert, things, [{"id": 1, "name": "x", "score": 1}], **kwargs)
    with pytest.raises(InvalidQuery):
        run(db, upsert, things, [], **kwargs)
    assert state(db) == SEED


# -- insert_ignore --------------------------------------------------------------------------


def test_insert_ignore_counts_only_new_rows(seeded):
    db = seeded
    rows = [
        {"id": 1, "name": "one", "score": 99},
        {"id": 3, "name": "three"},
        {"id": 2, "name": "two", "score": 99},
        {"id": 4, "name": "four"},
        {"id": 5, "name": "five"},
    ]
    assert run(db, insert_ignore, things, rows) == 3
    assert state(db) == [*SEED, row(3, "three"), row(4, "four"), row(5, "five")]


def test_insert_ignore_all_existing(seeded):
    db = seeded
    assert run(db, insert_ignore, things, [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]) == 0
    assert state(db) == SEED


def test_insert_ignore_same_key_twice_in_one_batch(empty):
    db = empty
    assert (
        run(
            db,
            insert_ignore,
            things,
            [{"id": 1, "name": "a"}, {"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        )
        == 2
    )
    assert state(db) == [row(1, "a"), row(2, "b")]


def test_insert_ignore_when_the_database_sees_a_duplicate_python_does_not(seeded):
    # "1" is not 1 to Python, but it is the same key to the database: still skipped, still counted.
    db = seeded
    rows = [{"id": "1", "name": "uno"}, {"id": 3, "name": "three"}, {"id": "3", "name": "tres"}]
    assert run(db, insert_ignore, things, rows) == 1
    assert state(db) == [*SEED, row(3, "three")]


def test_insert_ignore_one_dict(seeded):
    db = seeded
    assert run(db, insert_ignore, things, {"id": 1, "name": "one"}) == 0
    assert run(db, insert_ignore, things, {"id": 3, "name": "three"}) == 1
    assert state(db) == [*SEED, row(3, "three")]


def test_insert_ignore_composite_key(empty):
    db = empty
    run(db, insert_many, pairs, [{"a": 1, "b": "x", "value": 1}])
    rows = [
        {"a": 1, "b": "x", "value": 9},
        {"a": 1, "b": "y", "value": 2},
        {"a": 2, "b": "x", "value": 3},
    ]
    assert run(db, insert_ignore, pairs, rows) == 2
    assert [(r["a"], r["b"], r["value"]) for r in state(db, pairs)] == [
        (1, "x", 1),
        (1, "y", 2),
        (2, "x", 3),
    ]


def test_insert_ignore_on_a_unique_key(seeded):
    db = seeded
    assert (
        run(
            db,
            insert_ignore,
            things,
            [{"id": 3, "name": "one"}, {"id": 4, "name": "four"}],
            key=["name"],
        )
        == 1
    )
    assert state(db) == [*SEED, row(4, "four")]


def test_insert_ignore_with_rows_naming_different_columns(empty):
    db = empty
    rows = [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b", "note": "kept"},
        {"id": 1, "name": "a", "note": "x"},
    ]
    assert run(db, insert_ignore, things, rows) == 2
    assert state(db) == [row(1, "a"), row(2, "b", note="kept")]


def test_insert_ignore_does_not_hide_bad_data(seeded):
    db = seeded
    with pytest.raises(ConflictError):
        run(db, insert_ignore, things, [{"id": 3, "name": None}])
    assert state(db) == SEED


def test_insert_ignore_with_no_rows(seeded):
    db = seeded
    assert run(db, insert_ignore, things, []) == 0
    assert state(db) == SEED


def test_insert_ignore_joins_the_transaction(seeded):
    db = seeded
    with pytest.raises(RuntimeError), db.transaction() as conn:
        assert (
            insert_ignore(conn, things, [{"id": 1, "name": "one"}, {"id": 3, "name": "three"}]) == 1
        )
        raise RuntimeError("roll back")
    assert state(db) == SEED


@pytest.mark.parametrize(
    "key", [["nope"], ["score"], ["note"]], ids=["unknown", "non-unique", "nullable-non-unique"]
)
def test_insert_ignore_bad_key_is_rejected(seeded, key):
    db = seeded
    with pytest.raises(InvalidQuery):
        run(db, insert_ignore, things, [{"id": 3, "name": "three"}], key=key)
    with pytest.raises(InvalidQuery):
        run(db, insert_ignore, things, [], key=key)
    assert state(db) == SEED


# -- insert_many_ids ------------------------------------------------------------------------

numbered_metadata = new_metadata()
numbered = sa.Table(
    "cl_numbered",
    numbered_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
    sa.Column("score", sa.Integer),
    sa.Column("tags", JSON()),
)
defaulted = sa.Table(
    "cl_numbered_defaulted",
    numbered_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
    sa.Column("score", sa.Integer, default=7),
)


@pytest.fixture
def numbered_db(db, tables_of):
    tables_of(db, numbered_metadata)
    return db


def stored(db, table=numbered) -> dict:
    with db.transaction(readonly=True) as conn:
        return {r.id: r for r in conn.execute(sa.select(table))}


@pytest.mark.parametrize("count", [1, 2, 300])
def test_insert_many_ids_returns_new_keys_in_input_order(numbered_db, count):
    db = numbered_db
    names = [f"n{(i * 7919) % 1000:04d}" for i in range(count)]  # not in key order
    rows = [{"name": n, "score": i, "tags": {"i": i}} for i, n in enumerate(names)]
    ids = run(db, insert_many_ids, numbered, rows)
    assert len(ids) == count and len(set(ids)) == count
    rows_by_id = stored(db)
    assert [rows_by_id[i].name for i in ids] == names
    assert [rows_by_id[i].tags for i in ids] == [{"i": i} for i in range(count)]


def test_insert_many_ids_continues_after_existing_rows(numbered_db):
    db = numbered_db
    first = run(db, insert_many_ids, numbered, [{"name": "a"}, {"name": "b"}])
    second = run(db, insert_many_ids, numbered, [{"name": "c"}, {"name": "d"}, {"name": "e"}])
    assert not set(first) & set(second)
    assert {i: r.name for i, r in stored(db).items()} == dict(
        zip(first + second, "abcde", strict=True)
    )


def test_insert_many_ids_with_value_sequences(numbered_db):
    db = numbered_db
    rows = [(5, "five"), [6, "six"], (7, "seven")]
    ids = run(db, insert_many_ids, numbered, rows, columns=["score", "name"])
    rows_by_id = stored(db)
    assert [(rows_by_id[i].score, rows_by_id[i].name) for i in ids] == [
        (5, "five"),
        (6, "six"),
        (7, "seven"),
    ]


def test_insert_many_ids_keeps_given_keys(numbered_db):
    db = numbered_db
    ids = run(db, insert_many_ids, numbered, [{"id": 40, "name": "x"}, {"id": 30, "name": "y"}])
    assert ids == [40, 30]
    mixed = [{"id": 50, "name": "m"}, {"id": None, "name": "n"}, {"name": "o"}]
    more = run(db, insert_many_ids, numbered, mixed)
    assert more[0] == 50 and len(set(more)) == 3
    names = {i: r.name for i, r in stored(db).items()}
    assert [names[i] for i in ids + more] == ["x", "y", "m", "n", "o"]


def test_insert_many_ids_computes_python_defaults(numbered_db):
    db = numbered_db
    ids = run(db, insert_many_ids, defaulted, [{"name": "a"}, {"name": "b"}])
    rows_by_id = stored(db, defaulted)
    assert [(rows_by_id[i].name, rows_by_id[i].score) for i in ids] == [("a", 7), ("b", 7)]


def test_insert_many_ids_in_an_orm_session(numbered_db):
    db = numbered_db
    with db.session() as session:
        ids = insert_many_ids(session, numbered, [{"name": "s1"}, {"name": "s2"}])
    assert [stored(db)[i].name for i in ids] == ["s1", "s2"]


def test_insert_many_ids_with_no_rows(numbered_db):
    db = numbered_db
    assert run(db, insert_many_ids, numbered, []) == []
    assert run(db, insert_many_ids, numbered, [], columns=["name"]) == []
    assert stored(db) == {}


def test_insert_many_ids_duplicate_raises_and_keeps_nothing(numbered_db):
    db = numbered_db
    with pytest.raises(DuplicateEntry):
        run(db, insert_many_ids, numbered, [{"name": "d"}, {"name": "e"}, {"name": "d"}])
    assert stored(db) == {}


@pytest.mark.parametrize(
    ("rows", "kwargs"),
    [
        ([{"name": "a", "nope": 1}], {}),
        ([("a",)], {"columns": ["nope"]}),
        ([("a", 1)], {"columns": ["name"]}),
        (["ab"], {"columns": ["name"]}),
        ([{"name": "a"}], {"columns": ["name"]}),
        ([("a", "b")], {"columns": ["name", "name"]}),
        ([("a",)], {"columns": "name"}),
        ("name", {}),
    ],
)
def test_insert_many_ids_bad_rows_are_rejected_before_anything_is_written(
    numbered_db, rows, kwargs
):
    db = numbered_db
    with pytest.raises(InvalidQuery):
        run(db, insert_many_ids, numbered, rows, **kwargs)
    assert stored(db) == {}


def test_insert_many_ids_needs_a_one_column_key(empty):
    with pytest.raises(InvalidQuery, match="one-column primary key"):
        run(empty, insert_many_ids, pairs, [{"a": 1, "b": "x"}])


def test_insert_many_ids_numbers_rows_that_give_only_a_none_key(numbered_db):
    db = numbered_db
    ids = run(db, insert_many_ids, defaulted, [(None,), (None,)], columns=["id"])
    assert len(set(ids)) == 2 and None not in ids
    assert sorted(stored(db, defaulted)) == sorted(ids)


def test_insert_many_ids_over_several_statements(numbered_db, monkeypatch):
    # MariaDB splits a batch into multi-row INSERTs by size; each numbers its own rows.
    monkeypatch.setattr(upsert_module, "_MAX_STATEMENT", 300)
    db = numbered_db
    names = [f"row-{i:03d}" for i in range(60)]
    ids = run(
        db,
        insert_many_ids,
        numbered,
        [(n, i) for i, n in enumerate(names)],
        columns=["name", "score"],
    )
    rows_by_id = stored(db)
    assert [(rows_by_id[i].name, rows_by_id[i].score) for i in ids] == [
        (n, i) for i, n in enumerate(names)
    ]


def test_insert_many_ids_with_percent_in_names(numbered_db):
    db = numbered_db
    ids = run(db, insert_many_ids, numbered, [("50%",), ("%s",), ("%(x)s",)], columns=["name"])
    assert [stored(db)[i].name for i in ids] == ["50%", "%s", "%(x)s"]


# -- bulk rows on the driver path --------------------------------------------------------------


def test_rows_naming_as_many_but_other_columns_are_each_stored_whole(empty):
    db = empty
    rows = [{"id": 1, "name": "a", "score": 1}, {"id": 2, "name": "b", "note": "n"}]
    assert run(db, insert_many, things, rows) == 2
    upserted = [{"id": 2, "name": "b2", "score": 9}, {"id": 3, "name": "c", "note": "m"}]
    assert run(db, upsert, things, upserted) == 2
    assert state(db) == [row(1, "a", 1), row(2, "b2", 9, "n"), row(3, "c", note="m")]


def test_many_rows_with_json_round_trip_through_insert_and_upsert(empty):
    db = empty
    rows = [row(i, f"n{i}", i, None if i % 3 else "x", [i, {"k": "ü"}]) for i in range(1, 301)]
    assert run(db, insert_many, things, rows[:200]) == 200
    changed = [{**r, "tags": {"v": r["id"]}, "score": -r["id"]} for r in rows[100:]]
    assert run(db, upsert, things, changed) == 200
    assert state(db) == rows[:100] + changed


def test_a_bad_value_late_in_a_bulk_stores_nothing(empty):
    db = empty
    rows = [row(i, f"n{i}") for i in range(1, 50)] + [row(50, "bad", tags={1, 2})]
    for fn in (insert_many, upsert):
        with pytest.raises(InvalidValue):
            run(db, fn, things, rows)
    assert state(db) == []


# -- rows as value sequences ------------------------------------------------------------------

COLUMNS = ["name", "id", "tags"]  # not the table's order: the values are placed by name


def test_insert_many_and_upsert_take_value_rows_in_columns_order(empty):
    db = empty
    rows = [(f"n{i}", i, {"i": i}) for i in range(1, 4)] + [["n4", 4, None]]
    assert run(db, insert_many, things, rows, columns=COLUMNS) == 4
    assert run(db, upsert, things, [("two", 2, [2]), ("five", 5, None)], columns=COLUMNS) == 2
    assert state(db) == [
        row(1, "n1", tags={"i": 1}),
        row(2, "two", tags=[2]),
        row(3, "n3", tags={"i": 3}),
        row(4, "n4"),
        row(5, "five"),
    ]


def test_value_rows_with_json_text_store_that_json(empty):
    db = empty
    rows = [("a", 1, '{"b":1,"a":[1,"é"]}'), ("b", 2, None), ("c", 3, "null")]
    assert run(db, insert_many, things, rows, columns=COLUMNS, json_text=True) == 3
    assert run(db, upsert, things, [("c", 3, "[3]")], columns=COLUMNS, json_text=True) == 1
    assert state(db) == [
        row(1, "a", tags={"b": 1, "a": [1, "é"]}),
        row(2, "b"),
        row(3, "c", tags=[3]),
    ]


def test_value_rows_in_an_orm_session(seeded):
    db = seeded
    with db.session() as session:
        insert_many(session, things, [("three", 3, '{"x":1}')], columns=COLUMNS, json_text=True)
        upsert(session, things, [("one", 1, "[1]")], columns=COLUMNS, json_text=True)
    assert state(db) == [row(1, "one", 10, "first", [1]), SEED[1], row(3, "three", tags={"x": 1})]


def test_upsert_of_value_rows_with_an_update_list(seeded):
    db = seeded
    run(db, upsert, things, [("uno", 1, [9])], columns=COLUMNS, update=["tags"])
    assert state(db)[0] == row(1, "one", 10, "first", [9])


@pytest.mark.parametrize(
    ("rows", "kwargs"),
    [
        ([("a", 1)], {"columns": COLUMNS}),
        ([("a", 1, None, 5)], {"columns": COLUMNS}),
        ([("a", 1, None), ("b", 2)], {"columns": COLUMNS}),
        ([("a", 1, None)], {"columns": ["name", "id", "nope"]}),
        ([("a", 1, "a")], {"columns": ["name", "id", "name"]}),
        ([{"name": "a", "id": 1, "tags": None}], {"columns": COLUMNS}),
        (["abc"], {"columns": COLUMNS}),
        ("abc", {"columns": COLUMNS}),
        ([{"id": 1, "name": "a", "tags": "[]"}], {"json_text": True}),
    ],
    ids=[
        "short",
        "long",
        "short-later",
        "unknown",
        "twice",
        "dict-row",
        "str-row",
        "str-rows",
        "json-text-of-dicts",
    ],
)
def test_bad_value_rows_are_rejected_before_anything_is_written(empty, rows, kwargs):
    db = empty
    for fn in (insert_many, upsert):
        with pytest.raises(InvalidQuery):
            run(db, fn, things, rows, **kwargs)
    assert state(db) == []


stamped_metadata = new_metadata()
stamped = sa.Table(
    "upsert_stamped",
    stamped_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(20)),
    sa.Column("version", sa.Integer, default=lambda: 1),
)


def test_bulk_writes_apply_python_side_defaults(db, tables_of):
    tables_of(db, stamped_metadata)
    run(db, upsert, stamped, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    with db.transaction(readonly=True) as conn:
        assert conn.execute(sa.select(stamped.c.version)).scalars().all() == [1, 1]
    run(db, upsert, stamped, [{"id": 1, "name": "a2"}, {"id": 3, "name": "c"}])
    run(db, insert_many, stamped, [{"id": 4, "name": "d"}, {"id": 5, "name": "e", "version": 5}])
    with db.transaction(readonly=True) as conn:
        got = conn.execute(sa.select(stamped).order_by(stamped.c.id)).all()
    assert [tuple(r) for r in got] == [
        (1, "a2", 1),
        (2, "b", 1),
        (3, "c", 1),
        (4, "d", 1),
        (5, "e", 5),
    ]


# -- paused_gc -----------------------------------------------------------------------------------


def test_paused_gc_nests_and_restores_the_collector():
    import gc

    from dblayer.core.upsert import paused_gc

    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause is still open
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), paused_gc():
        raise ZeroDivisionError
    assert gc.isenabled()
    with paused_gc(False):
        assert gc.isenabled()


def test_paused_gc_leaves_a_collector_the_application_disabled_alone():
    import gc

    from dblayer.core.upsert import paused_gc

    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()

"""PreparedQuery and PreparedWrite: the same rows and writes as SQLAlchemy's own execution,
types converted, errors typed."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from dblayer.core import DatabaseError, InvalidQuery, PreparedQuery
from dblayer.core.prepared import PreparedWrite
from tests.core import schema

items = schema.items

ROWS = [
    {
        "id": i,
        "name": f"it's; {i}%",
        "status": "A" if i % 2 else None,
        "score": i * 10,
        "data": {"n": i, "list": [1, None, "ü"]},
        "uid": uuid.UUID(int=i),
        "created": dt.datetime(2026, 1, 2, 3, 4, 5, 123456 + i),
    }
    for i in range(1, 6)
]


@pytest.fixture
def filled(db, tables_of):
    tables_of(db, schema.metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(items), ROWS)
    return db


def test_first_returns_the_row_with_converted_types(filled):
    query = PreparedQuery(sa.select(items).where(items.c.id == sa.bindparam("id")))
    with filled.transaction(readonly=True) as conn:
        assert query.first(conn, id=3) == ROWS[2]
        assert query.first(conn, id=99) is None


def test_all_matches_sqlalchemys_own_execution(filled):
    stmt = (
        sa.select(items.c.id, items.c.data, items.c.uid)
        .where(items.c.score >= sa.bindparam("low"), items.c.status == "A")
        .order_by(items.c.id.desc())
    )
    query = PreparedQuery(stmt)
    with filled.transaction(readonly=True) as conn:
        expected = [dict(r) for r in conn.execute(stmt, {"low": 20}).mappings()]
        assert query.all(conn, low=20) == expected
        assert [r["id"] for r in expected] == [5, 3]


def test_values_are_bound_not_pasted(filled):
    query = PreparedQuery(sa.select(items.c.id).where(items.c.name == sa.bindparam("name")))
    with filled.transaction(readonly=True) as conn:
        assert query.all(conn, name="it's; 2%") == [{"id": 2}]
        assert query.all(conn, name="x' OR '1'='1") == []


def test_a_missing_value_is_invalid_query(filled):
    query = PreparedQuery(sa.select(items).where(items.c.id == sa.bindparam("id")))
    with filled.transaction(readonly=True) as conn, pytest.raises(InvalidQuery, match="id"):
        query.first(conn)


def test_in_lists_and_writes_without_returning_are_refused():
    with pytest.raises(InvalidQuery):
        PreparedQuery(sa.update(items).values(name="x"))
    with pytest.raises(InvalidQuery, match="IN"):
        PreparedQuery(sa.select(items).where(items.c.id.in_([1, 2])))


def test_driver_errors_are_translated(db):
    missing = sa.table("no_such_table_here", sa.column("id"))
    query = PreparedQuery(sa.select(missing.c.id))
    with pytest.raises(DatabaseError), db.transaction(readonly=True) as conn:
        query.all(conn)


def test_prepared_write_updates_and_counts(filled):
    write = PreparedWrite(
        sa.update(items)
        .where(items.c.id == sa.bindparam("key"))
        .values(name=sa.bindparam("new_name", type_=items.c.name.type))
    )
    with filled.transaction() as conn:
        assert write.run(conn, key=2, new_name="it's; 'x'") == 1
        assert write.run(conn, key=-1, new_name="nobody") == 0
        assert conn.scalar(sa.select(items.c.name).where(items.c.id == 2)) == "it's; 'x'"
    with filled.transaction() as conn, pytest.raises(InvalidQuery, match="new_name"):
        write.run(conn, key=2)


def test_prepared_write_refuses_selects_returning_and_in_lists():
    with pytest.raises(InvalidQuery):
        PreparedWrite(sa.select(items))  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery):
        PreparedWrite(sa.delete(items).returning(items.c.id))
    with pytest.raises(InvalidQuery, match="IN"):
        PreparedWrite(sa.delete(items).where(items.c.id.in_([1, 2])))


def test_returning_statements_give_their_rows_converted(filled):
    # UPDATE ... RETURNING where the backend has it (SQLite, PostgreSQL), else DELETE.
    if filled.facts.update_returning:
        stmt: sa.UpdateBase = (
            sa.update(items)
            .where(items.c.id == sa.bindparam("key"))
            .values(data=sa.bindparam("data", type_=items.c.data.type))
        )
        expected = {**ROWS[1], "data": {"new": [1, "ü"]}}
    else:
        stmt = sa.delete(items).where(items.c.id == sa.bindparam("key"))
        expected = ROWS[1]
    query = PreparedQuery(stmt.returning(*items.c))
    with filled.transaction() as conn:
        assert query.first(conn, key=2, data={"new": [1, "ü"]}) == expected
        assert query.first(conn, key=-1, data=None) is None
        stored = conn.execute(sa.select(items).where(items.c.id == 2)).mappings().first()
    assert stored is None if not filled.facts.update_returning else dict(stored) == expected


def test_run_many_writes_every_parameter_set(filled):
    # status: the statement's own literal; the rest bound per row.
    values: dict[str, Any] = {c.name: sa.bindparam(c.name, type_=c.type) for c in items.columns}
    insert = PreparedWrite(sa.insert(items).values({**values, "status": "new"}))
    shared = dt.datetime(2026, 5, 6, 7, 8, 9, 10)  # one object in every row, converted once
    rows = [
        {**ROWS[0], "id": 100 + i, "name": f"many {i}", "created": shared, "data": {"i": [i]}}
        for i in range(3)
    ]
    for row in rows:
        del row["status"]
    rows[1]["data"] = None
    bump = PreparedWrite(
        sa.update(items)
        .where(items.c.id == sa.bindparam("key"))
        .values(score=items.c.score + sa.bindparam("by", type_=sa.Integer))
    )
    with filled.transaction() as conn:
        assert insert.run_many(conn, rows) == 3
        assert insert.run_many(conn, []) == 0
        assert bump.run_many(conn, [{"key": 100, "by": 1}, {"key": 102, "by": 2}]) == 2
        assert bump.run_many(conn, [{"key": 101, "by": 5}]) == 1
        got = [
            dict(r)
            for r in conn.execute(
                sa.select(items).where(items.c.id >= 100).order_by(items.c.id)
            ).mappings()
        ]
        null_data = conn.scalar(
            sa.select(sa.func.count()).where(items.c.id == 101, items.c.data.is_(None))
        )
    assert got == [
        {**row, "status": "new", "score": 10 + by} for row, by in zip(rows, (1, 5, 2), strict=True)
    ]
    # None stored as SQLAlchemy's own execution stores it for this column type.
    with filled.transaction() as conn:
        conn.execute(sa.update(items).where(items.c.id == 1).values(data=None))
        same = conn.scalar(
            sa.select(sa.func.count()).where(items.c.id == 1, items.c.data.is_(None))
        )
    assert null_data == same


def test_run_many_with_a_missing_value_changes_nothing(filled):
    insert = PreparedWrite(
        sa.insert(items).values(id=sa.bindparam("id"), name=sa.bindparam("name"))
    )
    with filled.transaction() as conn:
        with pytest.raises(InvalidQuery, match="name"):
            insert.run_many(conn, [{"id": 200, "name": "a"}, {"id": 201}])
        assert conn.scalar(sa.select(sa.func.count()).where(items.c.id >= 200)) == 0


def test_a_value_given_twice_in_the_sql_is_bound_each_time(filled):
    # One name used twice: positional paramstyles send it twice, named ones once.
    query = PreparedQuery(
        sa.select(items.c.id)
        .where(sa.or_(items.c.id == sa.bindparam("k"), items.c.score == sa.bindparam("k") * 10))
        .order_by(items.c.id)
    )
    with filled.transaction(readonly=True) as conn:
        assert query.all(conn, k=3) == [{"id": 3}]


def _item(conn: Any, key: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(items).where(items.c.id == key)).mappings().first()
    return None if row is None else dict(row)


def test_insert_returns_the_new_rows_id(db, tables_of):
    tables_of(db, schema.metadata)
    values: dict[str, Any] = {
        c.name: sa.bindparam(c.name, type_=c.type) for c in items.columns if c.name != "id"
    }
    insert = PreparedWrite(sa.insert(items).values(values))
    row = {k: v for k, v in ROWS[0].items() if k != "id"}
    with db.transaction() as conn:
        first = insert.insert(conn, **row)
        second = insert.insert(conn, **{**row, "name": "second", "data": None})
        assert second > first
        assert _item(conn, first) == {**row, "id": first}
        assert _item(conn, second)["name"] == "second"  # type: ignore[index]
    # The key given by the caller is the id it returns.
    explicit = PreparedWrite(sa.insert(items).values(id=sa.bindparam("id"), name="fixed"))
    with db.transaction() as conn:
        assert explicit.insert(conn, id=second + 100) == second + 100
        assert _item(conn, second + 100)["name"] == "fixed"  # type: ignore[index]
        assert conn.scalar(sa.select(sa.func.count()).select_from(items)) == 3


def test_insert_refuses_what_has_no_single_new_id(db, tables_of):
    tables_of(db, schema.metadata)
    named = sa.insert(items).values(name=sa.bindparam("name"))
    with db.transaction() as conn:
        with pytest.raises(InvalidQuery, match="name"):
            PreparedWrite(named).insert(conn)
        with pytest.raises(InvalidQuery, match="single-row"):
            PreparedWrite(sa.insert(items).values([{"name": "a"}, {"name": "b"}])).insert(conn)
        with pytest.raises(InvalidQuery, match="single-row"):
            PreparedWrite(sa.update(items).values(name="x")).insert(conn)
        with pytest.raises(InvalidQuery, match="autoincrement"):
            PreparedWrite(sa.insert(schema.kv).values(key="k")).insert(conn)
        assert conn.scalar(sa.select(sa.func.count()).select_from(items)) == 0

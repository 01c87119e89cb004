"""PreparedQuery: the same rows as SQLAlchemy's own execution, types converted, errors typed."""

from __future__ import annotations

import datetime as dt
import uuid

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


def test_in_lists_and_non_selects_are_refused():
    with pytest.raises(InvalidQuery):
        PreparedQuery(sa.update(items).values(name="x"))  # type: ignore[arg-type]
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

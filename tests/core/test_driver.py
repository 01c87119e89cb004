"""The driver path's conversions: numeric columns come back as SQLAlchemy itself returns them."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from dblayer.core import PreparedQuery, new_metadata
from dblayer.core.query import fetch_query

metadata = new_metadata()
numbers = sa.Table(
    "driver_numbers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ratio", sa.Float),
    sa.Column("exact_ratio", sa.Float(asdecimal=True, decimal_return_scale=4)),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("loose_price", sa.Numeric(10, 2, asdecimal=False)),
    sa.Column("wide", sa.Double),
)

ROWS = [
    {
        "id": 1,
        "ratio": 0.25,
        "exact_ratio": 1.5,
        "price": Decimal("12.34"),
        "loose_price": 5.5,
        "wide": 1e300,
    },
    {"id": 2, "ratio": None, "exact_ratio": None, "price": None, "loose_price": None, "wide": None},
    {
        "id": 3,
        "ratio": -3.0,
        "exact_ratio": 2.0,
        "price": Decimal("0.10"),
        "loose_price": 7.0,
        "wide": 2.5,
    },
]


@pytest.fixture
def filled(db, tables_of):
    tables_of(db, metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(numbers), ROWS)
    return db


def test_prepared_query_returns_float_and_numeric_columns_as_sqlalchemy_does(filled):
    stmt = sa.select(numbers).order_by(numbers.c.id)
    with filled.transaction(readonly=True) as conn:
        expected = [dict(r) for r in conn.execute(stmt).mappings()]
        got = PreparedQuery(stmt).all(conn)
    assert got == expected
    for row, want in zip(got, expected, strict=True):
        for name, value in row.items():
            assert type(value) is type(want[name]), name
    assert got[0]["ratio"] == 0.25 and type(got[0]["ratio"]) is float
    assert got[0]["price"] == Decimal("12.34") and type(got[0]["price"]) is Decimal
    assert type(got[0]["exact_ratio"]) is Decimal and got[0]["exact_ratio"] == Decimal("1.5")
    assert type(got[0]["loose_price"]) is float and got[0]["loose_price"] == 5.5
    assert got[1] == {"id": 2, **{k: None for k in ROWS[1] if k != "id"}}


def test_fetch_query_filters_on_a_float_column(filled):
    with filled.transaction(readonly=True) as conn:
        rows = fetch_query(
            conn,
            numbers,
            {"filters": [{"field": "ratio", "op": ">", "arg": 0.0}], "order_by": "id"},
        )
    assert [(r["id"], r["ratio"]) for r in rows] == [(1, 0.25)]


def test_statements_on_one_connection_each_get_their_own_rows(filled):
    from dblayer.core.driver import cursor_execute

    with filled.transaction(readonly=True) as conn:
        ids = "SELECT id FROM driver_numbers ORDER BY id"
        first = cursor_execute(conn, ids, ())
        assert first.fetchone()[0] == 1
        second = cursor_execute(conn, "SELECT COUNT(*) FROM driver_numbers", ())
        assert second.fetchone()[0] == 3
        second.close()
        assert [r[0] for r in first.fetchall()] == [2, 3]  # not clobbered by the second
        first.close()
        for _ in range(3):  # cursors handed back are used again, with fresh results
            cursor = cursor_execute(conn, ids, ())
            assert [r[0] for r in cursor.fetchall()] == [1, 2, 3]
            cursor.close()


def test_a_failed_statement_does_not_spoil_the_next_one(db, tables_of):
    from dblayer.core import DatabaseError
    from dblayer.core.driver import cursor_execute

    tables_of(db, metadata)
    with pytest.raises(DatabaseError), db.transaction() as conn:
        cursor_execute(conn, "SELECT no_such_column FROM driver_numbers", ())
    with db.transaction() as conn:
        cursor = cursor_execute(conn, "SELECT COUNT(*) FROM driver_numbers", ())
        assert cursor.fetchone()[0] == 0
        cursor.close()


def test_large_results_come_back_whole_again_and_again(db, tables_of):
    tables_of(db, metadata)
    rows = [{"id": i, "ratio": i / 2} for i in range(1, 1201)]
    with db.transaction() as conn:
        conn.execute(sa.insert(numbers), rows)
    query = PreparedQuery(sa.select(numbers.c.id, numbers.c.ratio).order_by(numbers.c.id))
    with db.transaction(readonly=True) as conn:
        for _ in range(3):
            assert query.all(conn) == rows

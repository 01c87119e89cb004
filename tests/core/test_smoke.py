import sqlalchemy as sa

from tests.core import schema


def test_round_trip(db, tables_of):
    tables_of(db, schema.metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(schema.items), [{"name": "a", "data": {"x": [1, None]}}])
    with db.transaction(readonly=True) as conn:
        row = conn.execute(sa.select(schema.items)).mappings().one()
    assert row["name"] == "a"
    assert row["data"] == {"x": [1, None]}

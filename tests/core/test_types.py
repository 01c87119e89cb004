"""Column types: JSON, UUID and UTCDateTime round-trip the same way on every backend."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from dblayer.core import JSON, UUID, Database, DBLayerError, InvalidValue, UTCDateTime, utcnow
from dblayer.core.types import json_dumps, json_dumps_sorted
from tests.core.orm_schema import ty_metadata, values

JSON_VALUES = [
    {"a": 1, "b": [1, 2, {"c": None}], "d": {"e": True}},
    [1, "two", 3.5, None, False, [], {}],
    "just a string",
    "",
    42,
    -(2**53) - 1,
    1.5,
    0.1,
    True,
    False,
    {},
    [],
    {"naïve": "ünïcödé", "中文": ["日本語", "한국어"], "emoji": "🎉🚀", "combining": "é"},
    {'quote"and\\slash': "line\nbreak\ttab", "nul-free": "\u2028\u2029"},
]


def read(db: Database, column: sa.Column, row_id: int = 1):
    with db.transaction(readonly=True) as conn:
        return conn.execute(sa.select(column).where(values.c.id == row_id)).scalar_one()


def count(db: Database) -> int:
    with db.transaction(readonly=True) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(values)).scalar_one()


# -- JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", JSON_VALUES, ids=lambda v: type(v).__name__)
def test_json_round_trips(db, tables_of, value):
    tables_of(db, ty_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "data": value})
    got = read(db, values.c.data)
    assert got == value
    assert type(got) is type(value)


def test_json_none_is_sql_null(db, tables_of):
    tables_of(db, ty_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(values), [{"id": 1, "data": None}, {"id": 3, "data": 0}])
        conn.execute(sa.insert(values), {"id": 2})
        nulls = conn.execute(sa.select(values.c.id).where(values.c.data.is_(None)))
        assert sorted(nulls.scalars()) == [1, 2]
    assert read(db, values.c.data) is None
    with db.session() as session:
        session.execute(sa.update(values).where(values.c.id == 3).values(data=None))
    assert read(db, values.c.data, 3) is None


def test_json_is_a_real_json_column(db, backend, tables_of):
    tables_of(db, ty_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "data": {"k": "v", "n": [1, 2]}})
        if backend == "postgresql":
            kind = conn.exec_driver_sql(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'ty_values' AND column_name = 'data'"
            ).scalar()
            assert kind == "jsonb"
            assert conn.exec_driver_sql("SELECT data->>'k' FROM ty_values").scalar() == "v"
            assert conn.exec_driver_sql("SELECT jsonb_typeof(data) FROM ty_values").scalar() == (
                "object"
            )
        elif backend == "mariadb":
            # MariaDB's JSON is LONGTEXT checked by JSON_VALID; the value is an object, not
            # a JSON string holding an encoded object.
            assert conn.exec_driver_sql("SELECT JSON_TYPE(data) FROM ty_values").scalar() == (
                "OBJECT"
            )
            assert (
                conn.exec_driver_sql("SELECT JSON_VALUE(data, '$.k') FROM ty_values").scalar()
                == "v"
            )
            checks = conn.exec_driver_sql(
                "SELECT check_clause FROM information_schema.check_constraints "
                "WHERE table_name = 'ty_values' AND constraint_name = 'data'"
            ).scalar()
            assert "json_valid" in checks.lower()
        else:
            info = {r[1]: r[2] for r in conn.exec_driver_sql("PRAGMA table_info(ty_values)")}
            assert info["data"] == "TEXT"
            assert conn.exec_driver_sql("SELECT typeof(data) FROM ty_values").scalar() == "text"
            assert (
                conn.exec_driver_sql("SELECT json_extract(data, '$.k') FROM ty_values").scalar()
                == "v"
            )


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_native_json_column_rejects_text_that_is_not_json(db, tables_of):
    tables_of(db, ty_metadata)
    with pytest.raises(DBLayerError), db.transaction() as conn:
        conn.exec_driver_sql("INSERT INTO ty_values (id, data) VALUES (1, 'not json')")
    assert count(db) == 0


def _circular() -> list:
    loop: list = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "bad",
    [
        object(),
        {1, 2},
        {"when": dt.datetime(2020, 1, 1)},
        float("nan"),
        [float("inf")],
        {"id": uuid.uuid4()},
        b"bytes",
        _circular(),
    ],
    ids=["object", "set", "datetime", "nan", "inf", "uuid", "bytes", "circular"],
)
def test_json_rejects_what_json_cannot_hold_and_stores_nothing(db, tables_of, bad):
    tables_of(db, ty_metadata)
    with pytest.raises(InvalidValue), db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "data": {"fine": True}})
        conn.execute(sa.insert(values), {"id": 2, "data": bad})
    with pytest.raises(InvalidValue), db.transaction() as conn:
        conn.execute(sa.insert(values), [{"id": 3, "data": [1]}, {"id": 4, "data": bad}])
    with pytest.raises(InvalidValue), db.session() as session:
        session.execute(sa.insert(values), {"id": 5, "data": bad})
    assert count(db) == 0


def test_json_dumps_is_strict_and_compact():
    assert json_dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    with pytest.raises(InvalidValue):
        json_dumps(float("nan"))
    with pytest.raises(InvalidValue):
        json_dumps(object())


def test_json_dumps_sorted_sorts_keys_at_every_level():
    assert (
        json_dumps_sorted({"b": {"d": 1, "c": (2,)}, "a": "é"}) == '{"a":"é","b":{"c":[2],"d":1}}'
    )
    assert json_dumps_sorted({10: "x", 9.5: "y"}) == '{"9.5":"y","10":"x"}'
    for bad in (float("inf"), {1: "int", "a": "str"}, {"s": {1, 2}}):
        with pytest.raises(InvalidValue):
            json_dumps_sorted(bad)


def test_json_type_hooks():
    """The TypeDecorator hooks as TopChef's own tests call them."""
    column_type = JSON()
    lite, pg, my = sqlite.dialect(), postgresql.dialect(), mysql.dialect()
    assert column_type.process_bind_param({"a": 1}, lite) == '{"a":1}'
    assert column_type.process_bind_param(None, lite) is None
    assert column_type.process_result_value('{"a":1}', lite) == {"a": 1}
    assert column_type.process_result_value(None, lite) is None
    assert column_type.process_bind_param({"a": 1}, pg) == {"a": 1}  # the driver serialises
    assert isinstance(column_type.load_dialect_impl(pg), postgresql.JSONB)
    assert isinstance(column_type.load_dialect_impl(my), sa.JSON)
    assert isinstance(column_type.load_dialect_impl(lite), sa.Text)
    with pytest.raises(InvalidValue):
        column_type.process_bind_param(object(), lite)
    assert isinstance(column_type.copy(), JSON)


# -- UUID -----------------------------------------------------------------------------------

# Not an RFC 4122 variant: still a uuid.UUID every backend must keep (MariaDB's native
# UUID type would refuse it).
U = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")


@pytest.mark.parametrize(
    "form",
    [U, str(U), U.hex, str(U).upper(), U.hex.upper(), "{" + str(U) + "}", U.urn],
    ids=["uuid", "hyphens", "hex", "upper", "upper-hex", "braces", "urn"],
)
def test_uuid_accepts_its_forms_and_returns_uuid(db, tables_of, form):
    tables_of(db, ty_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "uid": form})
        found = conn.execute(sa.select(values.c.id).where(values.c.uid == form)).scalar_one()
        assert found == 1
    got = read(db, values.c.uid)
    assert type(got) is uuid.UUID
    assert got == U


def test_uuid_none_is_null(db, tables_of):
    tables_of(db, ty_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "uid": None})
    assert read(db, values.c.uid) is None


@pytest.mark.parametrize(
    "bad", ["garbage", "", "12345678-9abc-def0-1234-56789abcdef", 12345, U.bytes, 1.5, ["x"]]
)
def test_uuid_rejects_garbage_and_stores_nothing(db, tables_of, bad):
    tables_of(db, ty_metadata)
    with pytest.raises(InvalidValue), db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "uid": uuid.uuid4()})
        conn.execute(sa.insert(values), {"id": 2, "uid": bad})
    with pytest.raises(InvalidValue), db.transaction() as conn:
        conn.execute(sa.select(values).where(values.c.uid == bad))
    assert count(db) == 0


def test_uuid_column_type(db, backend, tables_of):
    tables_of(db, ty_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "uid": U})
        if backend == "postgresql":
            assert conn.exec_driver_sql("SELECT pg_typeof(uid)::text FROM ty_values").scalar() == (
                "uuid"
            )
        else:  # 32 hex digits, TopChef's own on-disk format
            assert conn.exec_driver_sql("SELECT uid FROM ty_values").scalar() == U.hex


def test_uuid_type_hooks():
    column_type = UUID()
    lite = sqlite.dialect()
    assert column_type.process_bind_param(U.hex, lite) == U
    assert column_type.process_result_value(str(U), lite) == U
    assert column_type.process_result_value(U, lite) is U
    assert column_type.process_bind_param(None, lite) is None
    with pytest.raises(InvalidValue):
        column_type.process_bind_param("nope", lite)


# -- UTCDateTime ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (dt.datetime(2021, 3, 4, 5, 6, 7, 891011), dt.datetime(2021, 3, 4, 5, 6, 7, 891011)),
        (dt.datetime(2021, 3, 4, 5, 6, 7, 1), dt.datetime(2021, 3, 4, 5, 6, 7, 1)),
        (
            dt.datetime(2021, 3, 4, 5, 6, 7, 999999, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            dt.datetime(2021, 3, 4, 3, 6, 7, 999999),
        ),
        (
            dt.datetime(2021, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
            dt.datetime(2020, 12, 31, 19, 0),
        ),
        (
            dt.datetime(2021, 3, 4, 5, 6, 7, 250000, tzinfo=dt.UTC),
            dt.datetime(2021, 3, 4, 5, 6, 7, 250000),
        ),
    ],
    ids=["micro", "one-micro", "plus-two", "date-change", "utc"],
)
def test_utc_datetime_keeps_microseconds_and_stores_naive_utc(db, tables_of, given, stored):
    tables_of(db, ty_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "at": given})
        # Comparisons bind the same way as inserts.
        found = conn.execute(sa.select(values.c.id).where(values.c.at == given)).scalar_one()
        assert found == 1
    got = read(db, values.c.at)
    assert got == stored
    assert got.tzinfo is None


@pytest.mark.parametrize("backend", ["mariadb"])
def test_mariadb_datetime_has_six_digits(db, tables_of):
    tables_of(db, ty_metadata)
    with db.transaction(readonly=True) as conn:
        precision = conn.exec_driver_sql(
            "SELECT datetime_precision FROM information_schema.columns WHERE "
            "table_schema = DATABASE() AND table_name = 'ty_values' AND column_name = 'at'"
        ).scalar()
    assert precision == 6


@pytest.mark.parametrize(
    "bad", ["2021-03-04T05:06:07", dt.date(2021, 3, 4), 1614834367, dt.time(5, 6)]
)
def test_utc_datetime_rejects_what_is_not_a_datetime(db, tables_of, bad):
    tables_of(db, ty_metadata)
    with pytest.raises(InvalidValue), db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "at": dt.datetime(2020, 1, 1)})
        conn.execute(sa.insert(values), {"id": 2, "at": bad})
    assert count(db) == 0


def test_utc_datetime_none_is_null(db, tables_of):
    tables_of(db, ty_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(values), {"id": 1, "at": None})
    assert read(db, values.c.at) is None


def test_utcnow_is_naive_utc():
    now = utcnow()
    assert now.tzinfo is None
    aware = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert abs(aware - now) < dt.timedelta(minutes=1)
    assert isinstance(UTCDateTime().load_dialect_impl(mysql.dialect()), mysql.DATETIME)

"""TopChef's JSON and UUID column types: the hooks called directly on each dialect, and
real round trips on every backend (None, nested JSON, unicode, every UUID form)."""

from __future__ import annotations

import json
import math
import uuid

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.types import CHAR, VARCHAR

from dblayer.core import InvalidValue
from dblayer.stores.topchef import JSON, UUID, Job, JobStatus, Service
from dblayer.stores.topchef.schemas import database

DIALECTS = {
    name: sa.create_engine(url).dialect
    for name, url in {
        "sqlite": "sqlite://",
        "postgresql": "postgresql+psycopg://",
        "mysql": "mysql+pymysql://",
        "mariadb": "mariadb+pymysql://",
    }.items()
}
NATIVE_JSON = ["postgresql", "mysql", "mariadb"]
NON_POSTGRES = ["sqlite", "mysql", "mariadb"]
SAMPLE = uuid.UUID("7490bda6-7c69-47c2-ad97-c7453f15811c")
NESTED = {
    "type": "object",
    "properties": {"volts": {"type": "number", "minimum": -1.5}, "tags": [1, "二", None, True]},
    "nested": {"deeper": {"deepest": ["ü", {"é": "ø"}]}},
}


# -- UUID hooks -----------------------------------------------------------------------------


def test_uuid_is_a_type_decorator_with_native_uuid_on_postgresql_only():
    pg = DIALECTS["postgresql"]
    impl = UUID().load_dialect_impl(pg)
    assert isinstance(impl, pg.type_descriptor(postgresql.UUID()).__class__)
    for name in NON_POSTGRES:
        dialect = DIALECTS[name]
        impl = UUID().load_dialect_impl(dialect)
        assert isinstance(impl, dialect.type_descriptor(CHAR(32)).__class__), name
        assert impl.length == 32, name
    assert isinstance(UUID(), sa.types.TypeDecorator) and UUID.cache_ok is True


@pytest.mark.parametrize("name", list(DIALECTS))
def test_uuid_binds_none_as_none(name):
    assert UUID().process_bind_param(None, DIALECTS[name]) is None


@given(st.uuids())
@settings(max_examples=50, deadline=None)
def test_uuid_binds_hyphenated_on_postgresql_and_32_hex_digits_elsewhere(value):
    for form in (value, str(value), value.hex, str(value).upper()):
        assert UUID().process_bind_param(form, DIALECTS["postgresql"]) == str(value)
        for name in NON_POSTGRES:
            stored = UUID().process_bind_param(form, DIALECTS[name])
            assert stored == f"{int(value):032x}" == value.hex


@pytest.mark.parametrize(
    "bad", ["", "not-a-uuid", "7490bda6", SAMPLE.hex + "0", 42, 4.2, b"x" * 16]
)
@pytest.mark.parametrize("name", list(DIALECTS))
def test_uuid_rejects_anything_but_a_uuid_or_its_string_with_value_error(name, bad):
    with pytest.raises(ValueError) as info:
        UUID().process_bind_param(bad, DIALECTS[name])
    assert isinstance(info.value, InvalidValue)


@pytest.mark.parametrize("name", list(DIALECTS))
def test_uuid_results_are_uuid_objects_whatever_the_driver_hands_back(name):
    dialect = DIALECTS[name]
    for raw in (SAMPLE, str(SAMPLE), SAMPLE.hex):
        result = UUID().process_result_value(raw, dialect)
        assert isinstance(result, uuid.UUID) and result == SAMPLE
    assert UUID().process_result_value(None, dialect) is None


def test_uuid_copy_is_a_fresh_uuid_type():
    original = UUID()
    copied = original.copy()
    assert isinstance(copied, UUID) and copied is not original


# -- JSON hooks -----------------------------------------------------------------------------


def test_json_is_real_json_on_postgresql_and_mariadb_and_varchar_on_sqlite():
    assert isinstance(JSON().load_dialect_impl(DIALECTS["postgresql"]), postgresql.JSON)
    assert not isinstance(JSON().load_dialect_impl(DIALECTS["postgresql"]), postgresql.JSONB)
    for name in ("mysql", "mariadb"):
        assert isinstance(JSON().load_dialect_impl(DIALECTS[name]), mysql.JSON), name
    assert isinstance(JSON().load_dialect_impl(DIALECTS["sqlite"]), VARCHAR)
    assert isinstance(JSON().impl_instance, VARCHAR)
    assert JSON.cache_ok is True


@pytest.mark.parametrize("name", list(DIALECTS))
def test_json_binds_none_as_sql_null(name):
    assert JSON().process_bind_param(None, DIALECTS[name]) is None


@pytest.mark.parametrize("value", [NESTED, [1, [2, [3]]], "text", 42, 1.5, True, {}, []])
def test_json_is_encoded_once_text_on_sqlite_the_document_itself_on_native_json(value):
    encoded = JSON().process_bind_param(value, DIALECTS["sqlite"])
    assert isinstance(encoded, str) and json.loads(encoded) == value
    for name in NATIVE_JSON:
        # The native JSON type encodes it (once); a pre-encoded string would be encoded twice.
        assert JSON().process_bind_param(value, DIALECTS[name]) == value


@pytest.mark.parametrize("bad", [{1, 2}, math.nan, {"x": math.inf}, object(), b"bytes"])
@pytest.mark.parametrize("name", list(DIALECTS))
def test_json_rejects_what_is_not_strict_json_on_every_dialect(name, bad):
    with pytest.raises(ValueError) as info:
        JSON().process_bind_param(bad, DIALECTS[name])
    assert isinstance(info.value, InvalidValue)


def test_json_results_are_decoded_text_on_sqlite_and_untouched_on_native_json():
    assert JSON().process_result_value(json.dumps(NESTED), DIALECTS["sqlite"]) == NESTED
    for name in NATIVE_JSON:
        assert JSON().process_result_value(NESTED, DIALECTS[name]) is NESTED
    for name in DIALECTS:
        assert JSON().process_result_value(None, DIALECTS[name]) is None


def test_json_copy_is_a_fresh_json_type():
    original = JSON()
    copied = original.copy()
    assert isinstance(copied, JSON) and copied is not original


# -- real round trips -----------------------------------------------------------------------


def test_nested_unicode_json_round_trips_and_is_a_json_object_in_sql(session, db):
    service = Service.new("odmr", "ODMR ✓", NESTED, {"type": "object", "title": "résultat"})
    session.add(service)
    session.commit()
    service_id = service.id
    session.expunge_all()
    loaded = session.get(Service, service_id)
    assert loaded.job_registration_schema == NESTED
    assert loaded.job_result_schema == {"type": "object", "title": "résultat"}
    # SQL sees a JSON object, not a JSON string holding one (no double encoding).
    column = database.services.c.job_registration_schema
    if db.backend == "postgresql":
        kind = sa.func.json_typeof(column)
    elif db.backend == "mysql":
        kind = sa.func.lower(sa.func.json_type(column))
    else:
        kind = sa.func.json_type(column)
    assert session.scalar(sa.select(kind)) == "object"


@pytest.mark.parametrize(
    "results", [None, {"counts": [1, 2, {"k": "ü"}]}, [1, "二"], "just text", 0, False]
)
def test_json_results_round_trip_and_none_is_sql_null(session, results):
    service = Service.new("svc", "d", {}, {})
    job = Job.new(service, {"p": [1.25, None]})
    job.results = results
    session.add(service)
    session.commit()
    job_id = job.id
    session.expunge_all()
    assert session.get(Job, job_id).results == results
    assert session.get(Job, job_id).parameters == {"p": [1.25, None]}
    is_null = session.scalar(sa.select(database.jobs.c.results.is_(None)))
    assert bool(is_null) is (results is None)


def test_json_that_is_not_strict_is_refused_and_nothing_is_stored(session):
    session.add(Service.new("svc", "d", {"bad": math.nan}, {}))
    with pytest.raises(sa.exc.StatementError) as info:
        session.commit()
    assert isinstance(info.value.orig, InvalidValue)
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(database.services)) == 0


@pytest.mark.parametrize("form", [SAMPLE, str(SAMPLE), SAMPLE.hex, str(SAMPLE).upper()])
def test_every_uuid_form_is_stored_as_one_uuid(session, db, form):
    session.add(Service(form, "svc", "d", {}, {}))
    session.commit()
    session.expunge_all()
    (loaded,) = session.scalars(sa.select(Service)).all()
    assert isinstance(loaded.id, uuid.UUID) and loaded.id == SAMPLE
    for key in (SAMPLE, str(SAMPLE), SAMPLE.hex):
        assert session.scalars(sa.select(Service).filter_by(id=key)).one() is loaded
    raw = session.execute(sa.text("SELECT service_id FROM services")).scalar_one()
    if db.backend == "postgresql":
        assert str(raw) == str(SAMPLE)  # PostgreSQL's own uuid type
    else:
        assert raw == SAMPLE.hex  # CHAR(32), MariaDB included


def test_a_bad_uuid_is_refused_at_flush_and_nothing_is_stored(session):
    session.add(Service("not-a-uuid", "svc", "d", {}, {}))
    with pytest.raises(sa.exc.StatementError) as info:
        session.commit()
    assert isinstance(info.value.orig, InvalidValue)
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(database.services)) == 0


def test_job_status_is_stored_by_name(session):
    service = Service.new("svc", "d", {}, {})
    for status in JobStatus:
        Job(uuid.uuid4(), status, {}, service, None)
    session.add(service)
    session.commit()
    raw = session.execute(sa.text("SELECT status FROM jobs")).scalars().all()
    assert sorted(raw) == sorted(status.name for status in JobStatus)

"""TopChef's documented names, the package quirk, and its tables' columns, flags and defaults."""

from __future__ import annotations

import enum
import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.topchef as topchef
from dblayer.core import UTCDateTime, utcnow
from dblayer.stores.topchef import models, schemas
from dblayer.stores.topchef.json_type import JSON
from dblayer.stores.topchef.models.abstract_database_model import BASE
from dblayer.stores.topchef.uuid_database_type import UUID


def test_every_documented_name_is_importable():
    for name in ("UUID", "JSON", "Job", "Service", "JobSet", "DatabaseSchema"):
        assert hasattr(topchef, name), name
    for name in ("AbstractDatabaseModel", "AbstractDatabaseSchema", "JobStatus"):
        assert hasattr(topchef, name), name
    assert models.Service is topchef.Service and models.Job is topchef.Job
    assert models.JobSet is topchef.JobSet and models.BASE is BASE
    assert schemas.JobStatus is topchef.JobStatus
    assert isinstance(schemas.database, schemas.DatabaseSchema)
    assert BASE.metadata is schemas.database.metadata


def test_the_package_database_schema_is_the_abstract_one_and_schemas_has_the_concrete_one():
    assert topchef.DatabaseSchema is topchef.AbstractDatabaseSchema
    assert schemas.DatabaseSchema is not topchef.DatabaseSchema
    assert issubclass(schemas.DatabaseSchema, topchef.DatabaseSchema)
    with pytest.raises(TypeError):
        topchef.DatabaseSchema()
    concrete = schemas.DatabaseSchema()
    assert concrete.services is schemas.database.services  # class-level tables, one MetaData
    assert concrete.metadata is schemas.database.metadata
    assert {t.name for t in concrete.metadata.sorted_tables} == {"services", "jobs", "job_sets"}
    assert (concrete.services.name, concrete.jobs.name, concrete.job_sets.name) == (
        "services",
        "jobs",
        "job_sets",
    )
    with pytest.raises(AttributeError):
        concrete.jobs = sa.Table("other", sa.MetaData())  # read-only properties


def test_abstract_database_model_new_is_abstract_and_the_models_define_it():
    with pytest.raises(TypeError, match="abstract"):
        topchef.AbstractDatabaseModel.new()
    assert getattr(topchef.AbstractDatabaseModel.new, "__isabstractmethod__", False)
    for model in (topchef.Service, topchef.Job, topchef.JobSet):
        assert issubclass(model, topchef.AbstractDatabaseModel)
        assert model.new.__func__ is not topchef.AbstractDatabaseModel.new.__func__


def test_job_status_members():
    status = topchef.JobStatus
    assert issubclass(status, enum.Enum)
    assert [m.name for m in status] == ["REGISTERED", "COMPLETED", "WORKING", "ERROR"]
    assert all(m.value == m.name for m in status)


def columns(table: sa.Table) -> dict[str, tuple[type, bool, bool]]:
    return {c.name: (type(c.type), c.nullable, c.primary_key) for c in table.columns}


def test_services_columns():
    table = schemas.database.services
    assert columns(table) == {
        "service_id": (UUID, False, True),
        "name": (sa.String, False, False),
        "description": (sa.String, False, False),
        "last_checked_in": (UTCDateTime, False, False),
        "heartbeat_timeout_seconds": (sa.Integer, False, False),
        "is_service_available": (sa.Boolean, False, False),
        "job_registration_schema": (JSON, False, False),
        "job_result_schema": (JSON, False, False),
    }
    assert (table.c.name.type.length, table.c.description.type.length) == (30, 1000)
    assert table.c.description.default.arg == "No description"
    assert table.c.heartbeat_timeout_seconds.default.arg == 30
    # A callable: the time of each insert, not of the import.
    assert table.c.last_checked_in.default.is_callable


def test_jobs_and_job_sets_columns():
    jobs = schemas.database.jobs
    assert columns(jobs) == {
        "job_id": (UUID, False, True),
        "service_id": (UUID, False, False),
        "date_submitted": (UTCDateTime, False, False),
        "status": (sa.Enum, True, False),
        "parameters": (JSON, False, False),
        "results": (JSON, True, False),
        "job_set_id": (UUID, True, False),
    }
    assert jobs.c.status.type.enum_class is topchef.JobStatus
    assert jobs.c.status.default.arg is topchef.JobStatus.REGISTERED
    assert jobs.c.date_submitted.default.is_callable
    assert {fk.target_fullname for fk in jobs.foreign_keys} == {
        "services.service_id",
        "job_sets.job_set_id",
    }
    assert columns(schemas.database.job_sets) == {
        "job_set_id": (UUID, False, True),
        "description": (sa.String, False, False),
    }
    assert schemas.database.job_sets.c.description.type.length == 140


def test_model_attributes_map_the_documented_columns():
    service, job, job_set = topchef.Service, topchef.Job, topchef.JobSet
    assert service.id.property.columns[0].name == "service_id"
    assert service.timeout.property.columns[0].name == "heartbeat_timeout_seconds"
    for attr in ("name", "description", "job_registration_schema", "job_result_schema"):
        assert hasattr(service, attr)
    assert hasattr(service, "is_service_available") and hasattr(service, "last_checked_in")
    assert job.id.property.columns[0].name == "job_id"
    for attr in ("status", "results", "parameters", "date_submitted", "service_id", "job_set_id"):
        assert hasattr(job, attr)
    assert job_set.id.property.columns[0].name == "job_set_id"
    assert service.jobs.property.lazy == "dynamic"
    assert service.jobs.property.cascade.delete_orphan
    assert job.service.property.back_populates == "jobs"
    assert job.job_set.property.back_populates == "jobs"


def test_defaults_are_applied_by_a_core_insert(session, db):
    service_id = uuid.uuid4()
    before = utcnow()
    session.execute(
        sa.insert(schemas.database.services).values(
            service_id=service_id, name="svc", is_service_available=True
        )
    )
    session.execute(
        sa.insert(schemas.database.jobs).values(
            job_id=uuid.uuid4(), service_id=service_id, parameters={"a": 1}
        )
    )
    session.commit()
    after = utcnow()
    row = session.execute(sa.select(schemas.database.services)).one()
    assert row.description == "No description"
    assert row.heartbeat_timeout_seconds == 30
    assert row.job_registration_schema == row.job_result_schema == {"type": "object"}
    assert before <= row.last_checked_in <= after
    job = session.execute(sa.select(schemas.database.jobs)).one()
    assert job.status is topchef.JobStatus.REGISTERED
    assert job.results is None and job.job_set_id is None
    assert before <= job.date_submitted <= after


def test_tables_exist_on_the_backend(session, db):
    assert {"services", "jobs", "job_sets"} <= set(db.table_names())

"""Service, Job and JobSet on every backend: constructors, new(), service.jobs as a query,
cascades, jobs joining their service's session, timestamps and the consistency hook."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dblayer.core import utcnow
from dblayer.stores.topchef import Job, JobSet, JobStatus, Service, ServiceConsistency
from dblayer.stores.topchef.schemas import database

REG = {"type": "object", "properties": {"volts": {"type": "number"}}}
RES = {"type": "object", "properties": {"counts": {"type": "array"}}}


def rows(session: Session, table: sa.Table) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(table))


def make_service(session: Session, name: str = "odmr") -> Service:
    service = Service.new(name, "An ODMR experiment", REG, RES)
    session.add(service)
    session.commit()
    return service


# -- constructors ---------------------------------------------------------------------------


def test_service_constructor_and_new(session):
    service_id = uuid.uuid4()
    service = Service(service_id, "nmr", "NMR", REG, RES)
    assert (service.id, service.name, service.description) == (service_id, "nmr", "NMR")
    assert service.job_registration_schema == REG and service.job_result_schema == RES
    assert service.is_service_available is False
    fresh = Service.new("nmr", "NMR", REG, RES)
    other = Service.new("nmr", "NMR", REG, RES)
    assert isinstance(fresh.id, uuid.UUID) and fresh.id != other.id
    session.add_all([service, fresh])
    session.commit()
    session.expunge_all()
    loaded = session.get(Service, service_id)
    assert (loaded.name, loaded.description, loaded.is_service_available) == ("nmr", "NMR", False)
    assert loaded.timeout == 30


def test_job_constructor_and_new(session):
    service = make_service(session)
    job_id = uuid.uuid4()
    submitted = dt.datetime(2017, 8, 14, 9, 30, 1, 250000)
    job = Job(job_id, JobStatus.WORKING, {"volts": 1.5}, service, None, submitted)
    assert (job.id, job.status, job.parameters, job.results) == (
        job_id,
        JobStatus.WORKING,
        {"volts": 1.5},
        None,
    )
    assert job.service is service and job.date_submitted == submitted
    new = Job.new(service, {"volts": 2})
    assert isinstance(new.id, uuid.UUID) and new.status is JobStatus.REGISTERED
    assert new.results is None and new.service is service
    session.commit()
    service_id, new_id = service.id, new.id
    session.expunge_all()
    loaded = session.get(Job, job_id)
    assert loaded.date_submitted == submitted and loaded.status is JobStatus.WORKING
    assert loaded.service_id == service_id and loaded.service.name == "odmr"
    assert session.get(Job, new_id).status is JobStatus.REGISTERED


def test_job_set_constructor_and_new(session):
    service = make_service(session)
    jobs = [Job.new(service, {"n": n}) for n in range(3)]
    job_set = JobSet.new("sweep", jobs)
    assert isinstance(job_set.id, uuid.UUID) and job_set.description == "sweep"
    assert job_set.jobs == jobs and all(job.job_set is job_set for job in jobs)
    same_id = uuid.uuid4()
    assert JobSet(same_id, "empty", []).id == same_id
    session.commit()
    job_set_id = job_set.id
    session.expunge_all()
    loaded = session.get(JobSet, job_set_id)
    assert sorted(job.parameters["n"] for job in loaded.jobs) == [0, 1, 2]
    assert {job.job_set_id for job in loaded.jobs} == {job_set_id}


# -- sessions (SQLAlchemy 2 no longer cascades along backrefs) ------------------------------


def test_a_job_built_for_a_persistent_service_joins_its_session_and_is_saved(session):
    service = make_service(session)
    job = Job.new(service, {"volts": 3})
    assert job in session
    session.commit()
    job_id = job.id
    session.expunge_all()
    assert session.get(Job, job_id).parameters == {"volts": 3}


def test_a_job_for_a_new_service_is_saved_with_the_service(session):
    service = Service.new("svc", "d", REG, RES)
    job = Job.new(service, {})
    assert job not in session
    session.add(service)
    assert job in session
    session.commit()
    assert rows(session, database.jobs) == 1


def test_a_job_set_of_persistent_jobs_joins_their_session(session):
    service = make_service(session)
    jobs = [Job.new(service, {"n": n}) for n in range(2)]
    session.commit()
    job_set = JobSet.new("later", jobs)
    assert job_set in session
    session.commit()
    job_set_id = job_set.id
    session.expunge_all()
    assert len(session.get(JobSet, job_set_id).jobs) == 2


# -- service.jobs ---------------------------------------------------------------------------


def test_a_service_with_1000_jobs_is_queried_by_status_through_service_jobs(session):
    service = make_service(session)
    statuses = list(JobStatus)
    for n in range(1000):
        Job(uuid.uuid4(), statuses[n % 4], {"n": n}, service, None)
    session.commit()
    service_id = service.id
    session.expunge_all()
    service = session.get(Service, service_id)
    assert service.jobs.count() == 1000
    for status in JobStatus:
        jobs = service.jobs.filter(Job.status == status)
        assert jobs.count() == 250
        numbers = sorted(job.parameters["n"] for job in jobs)
        assert numbers == list(range(statuses.index(status), 1000, 4))
    assert sum(1 for _ in service.jobs) == 1000
    first = service.jobs.filter_by(status=JobStatus.ERROR).order_by(Job.date_submitted).first()
    assert first.status is JobStatus.ERROR
    assert session.query(Job).filter_by(service_id=service.id).count() == 1000
    assert session.query(Job).filter_by(id=first.id).one() is first


def test_service_jobs_append_and_remove(session):
    service = make_service(session)
    other = make_service(session, "other")
    job = Job.new(other, {})
    session.commit()
    service.jobs.append(job)  # moves it
    session.commit()
    assert (service.jobs.count(), other.jobs.count()) == (1, 0)
    service.jobs.remove(job)  # delete-orphan: a job without its service is deleted
    session.commit()
    assert rows(session, database.jobs) == 0


def test_deleting_a_service_deletes_its_jobs(session):
    gone = make_service(session, "gone")
    kept = make_service(session, "kept")
    for service in (gone, gone, kept):
        Job.new(service, {})
    session.commit()
    session.delete(gone)
    session.commit()
    assert rows(session, database.services) == 1
    assert session.scalars(sa.select(Job.service_id)).all() == [kept.id]


def test_deleting_a_job_set_keeps_its_jobs(session):
    service = make_service(session)
    job_set = JobSet.new("sweep", [Job.new(service, {}), Job.new(service, {})])
    session.commit()
    session.delete(job_set)
    session.commit()
    assert rows(session, database.job_sets) == 0
    assert session.scalars(sa.select(Job.job_set_id)).all() == [None, None]


# -- timestamps -----------------------------------------------------------------------------


def test_timestamps_are_taken_at_insert_time_not_import_time(session):
    before = utcnow()
    service = Service.new("svc", "d", REG, RES)
    job = Job.new(service, {})
    assert service.last_checked_in is None and job.date_submitted is None
    session.add(service)
    session.commit()
    after = utcnow()
    assert before <= service.last_checked_in <= after
    assert before <= job.date_submitted <= after
    session.expunge_all()
    loaded = session.get(Service, service.id)
    assert before <= loaded.last_checked_in <= after  # microseconds kept on every backend


# -- the consistency hook -------------------------------------------------------------------


class DocumentStore(ServiceConsistency):
    """Keeps each service's result schema in a second store (a dict standing in for MongoDB)."""

    def __init__(self, fail: bool = False) -> None:
        self.documents: dict[uuid.UUID, dict] = {}
        self.fail = fail

    def loaded(self, service):
        service.job_result_schema = self.documents.get(service.id, service.job_result_schema)

    def saved(self, service, connection):
        if self.fail:
            raise RuntimeError("document store unavailable")
        self.documents[service.id] = service.job_result_schema

    def deleted(self, service, connection):
        self.documents.pop(service.id, None)


def test_the_default_consistency_keeps_everything_in_sql(session):
    assert type(Service.consistency) is ServiceConsistency
    service_id = make_service(session).id
    session.expunge_all()
    assert session.get(Service, service_id).job_result_schema == RES


def test_a_consistency_hook_keeps_a_second_store_in_step(session, monkeypatch):
    store = DocumentStore()
    monkeypatch.setattr(Service, "consistency", store)
    service = make_service(session)
    assert store.documents == {service.id: RES}
    store.documents[service.id] = {"type": "object", "title": "from the other store"}
    session.expunge_all()
    loaded = session.get(Service, service.id)
    assert loaded.job_result_schema["title"] == "from the other store"
    session.delete(loaded)
    session.commit()
    assert store.documents == {}


def test_a_failing_consistency_hook_rolls_the_sql_write_back(session, monkeypatch):
    monkeypatch.setattr(Service, "consistency", DocumentStore(fail=True))
    session.add(Service.new("svc", "d", REG, RES))
    with pytest.raises(RuntimeError, match="unavailable"):
        session.commit()
    session.rollback()
    assert rows(session, database.services) == 0

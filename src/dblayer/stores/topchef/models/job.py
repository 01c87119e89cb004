"""A job: one run of a service with its parameters and, once done, its results
(``topchef.database.models.job``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import object_session, relationship

from ..schemas import JobStatus, database
from .abstract_database_model import BASE, AbstractDatabaseModel

if TYPE_CHECKING:
    from .service import Service


class Job(BASE, AbstractDatabaseModel["Job"]):
    """A job of a service. Its parameters must satisfy the service's registration
    schema and its results the service's result schema."""

    __table__ = database.jobs

    id = __table__.c.job_id
    status = __table__.c.status
    results = __table__.c.results
    parameters = __table__.c.parameters
    date_submitted = __table__.c.date_submitted
    service_id = __table__.c.service_id
    job_set_id = __table__.c.job_set_id

    service = relationship("Service", back_populates="jobs")
    job_set = relationship("JobSet", back_populates="jobs")

    def __init__(
        self,
        job_id: uuid.UUID,
        status: JobStatus,
        parameters: Any,
        service: Service,
        results: Any,
        date_submitted: dt.datetime | None = None,
    ) -> None:
        """A job; ``date_submitted`` left out means the time of the insert."""
        self.id = job_id
        self.status = status
        self.parameters = parameters
        self.results = results
        if date_submitted is not None:
            self.date_submitted = date_submitted
        # Last: a persistent service pulls the job into its session (see _join_session).
        self.service = service

    @classmethod
    def new(cls, service: Service, parameters: Any) -> Job:
        """A REGISTERED job of ``service`` with a fresh id and no results yet."""
        return cls(uuid.uuid4(), JobStatus.REGISTERED, parameters, service, None)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, status={self.status!r})"


def _join_session(target: Any, value: Any, *_: Any) -> None:
    """Put a job and the service or job set it is linked to in the same session.

    SQLAlchemy 2 no longer cascades along backrefs, so ``Job(..., service=s)`` would
    leave the job out of ``s``'s session and it would silently never be saved;
    TopChef relied on the old behaviour.
    """
    if value is None:
        return
    job_session, other_session = object_session(target), object_session(value)
    if job_session is None and other_session is not None:
        other_session.add(target)
    elif other_session is None and job_session is not None:
        job_session.add(value)


event.listen(Job.service, "set", _join_session)
event.listen(Job.job_set, "set", _join_session)

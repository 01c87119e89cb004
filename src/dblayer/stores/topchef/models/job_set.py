"""A set of jobs with a description (``topchef.database.models.job_set``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.orm import relationship

from ..schemas import database
from .abstract_database_model import BASE, AbstractDatabaseModel
from .job import Job


class JobSet(BASE, AbstractDatabaseModel["JobSet"]):
    """A described group of jobs (each job belongs to at most one set)."""

    __table__ = database.job_sets

    id = __table__.c.job_set_id
    description = __table__.c.description

    jobs = relationship(Job, back_populates="job_set")

    def __init__(self, job_set_id: uuid.UUID, description: str, jobs: Iterable[Job]) -> None:
        """A job set holding ``jobs``."""
        self.id = job_set_id
        self.description = description
        self.jobs = list(jobs)

    @classmethod
    def new(cls, description: str, jobs: Iterable[Job]) -> JobSet:
        """A job set with a fresh id."""
        return cls(uuid.uuid4(), description, jobs)

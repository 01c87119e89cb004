"""A service: any operation that maps a set of parameters to a set of results,
for example an ODMR resonance experiment (``topchef.database.models.service``).

TopChef lets a resource span several storage systems (a row here, a document in
MongoDB, ...) and makes the model class responsible for keeping them in step.
``Service.consistency`` is that duty's hook: the default keeps everything in the
SQL database and so has nothing to reconcile.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from sqlalchemy import Connection, event
from sqlalchemy.orm import Mapper, relationship

from ..schemas import database
from .abstract_database_model import BASE, AbstractDatabaseModel
from .job import Job


class ServiceConsistency:
    """How a Service keeps the parts it stores outside the SQL database in step with its row.

    The default keeps every part in SQL, so each step does nothing. A two-store
    application sets ``Service.consistency`` to a subclass: ``loaded`` runs when a row
    is loaded or refreshed, ``saved`` after the row is inserted or updated and
    ``deleted`` after it is deleted. ``saved`` and ``deleted`` run inside the flush, so
    an exception there rolls the SQL write back.
    """

    def loaded(self, service: Service) -> None:
        """Bring in what other stores hold for ``service`` (default: nothing, all is in SQL)."""

    def saved(self, service: Service, connection: Connection) -> None:
        """Write ``service``'s parts kept elsewhere (default: nothing, all is in SQL)."""

    def deleted(self, service: Service, connection: Connection) -> None:
        """Remove ``service``'s parts kept elsewhere (default: nothing, all is in SQL)."""


class Service(BASE, AbstractDatabaseModel["Service"]):
    """The database model for a compute service. This service has one job
    parameters schema, and one job result schema. These must be satisfied in
    order to allow jobs to be submitted."""

    __table__ = database.services

    id = __table__.c.service_id
    name = __table__.c.name
    description = __table__.c.description
    job_registration_schema = __table__.c.job_registration_schema
    job_result_schema = __table__.c.job_result_schema
    is_service_available = __table__.c.is_service_available
    last_checked_in = __table__.c.last_checked_in
    timeout = __table__.c.heartbeat_timeout_seconds

    # A query, not a list: iterate it, .filter() it, .count() it, .append() to it.
    jobs = relationship(Job, back_populates="service", cascade="all, delete-orphan", lazy="dynamic")

    # The consistency duty for resources spanning several stores (see ServiceConsistency).
    consistency: ClassVar[ServiceConsistency] = ServiceConsistency()

    def __init__(
        self,
        service_id: uuid.UUID,
        name: str,
        description: str,
        registration_schema: Any,
        result_schema: Any,
    ) -> None:
        """A service, not available until it checks in."""
        self.id = service_id
        self.name = name
        self.description = description
        self.job_registration_schema = registration_schema
        self.job_result_schema = result_schema
        self.is_service_available = False

    @classmethod
    def new(
        cls, name: str, description: str, registration_schema: Any, result_schema: Any
    ) -> Service:
        """A service with a fresh id."""
        return cls(uuid.uuid4(), name, description, registration_schema, result_schema)

    def __repr__(self) -> str:
        return f"Service(id={self.id!r}, name={self.name!r})"


@event.listens_for(Service, "load")
def _loaded(service: Service, _context: Any) -> None:
    type(service).consistency.loaded(service)


@event.listens_for(Service, "refresh")
def _refreshed(service: Service, _context: Any, _attrs: Any) -> None:
    type(service).consistency.loaded(service)


@event.listens_for(Service, "after_insert")
@event.listens_for(Service, "after_update")
def _saved(_mapper: Mapper[Any], connection: Connection, service: Service) -> None:
    type(service).consistency.saved(service, connection)


@event.listens_for(Service, "after_delete")
def _deleted(_mapper: Mapper[Any], connection: Connection, service: Service) -> None:
    type(service).consistency.deleted(service, connection)

"""TopChef's tables (``topchef.database.schemas.database_schema``).

One MetaData shared by every instance: ``services``, ``jobs`` and ``job_sets``.
Timestamps default to the time of the insert (the original computed them once,
at import). String columns have lengths, so the schema compiles on MariaDB too.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Enum, ForeignKey, Integer, MetaData, String, Table

from dblayer.core import UTCDateTime, new_metadata, utcnow

from ..json_type import JSON
from ..uuid_database_type import UUID
from .abstract_database_schema import AbstractDatabaseSchema
from .job_status import JobStatus


def _default_schema() -> dict[str, str]:
    # A fresh dict per row: a shared one could be changed in place by one service for all.
    return {"type": "object"}


class DatabaseSchema(AbstractDatabaseSchema):
    """Describes the schema for the database."""

    _metadata = new_metadata()

    _services = Table(
        "services",
        _metadata,
        Column("service_id", UUID(), primary_key=True, nullable=False),
        Column("name", String(30), nullable=False),
        Column("description", String(1000), nullable=False, default="No description"),
        Column("last_checked_in", UTCDateTime(), nullable=False, default=utcnow),
        Column("heartbeat_timeout_seconds", Integer, nullable=False, default=30),
        Column("is_service_available", Boolean, nullable=False),
        Column("job_registration_schema", JSON(), nullable=False, default=_default_schema),
        Column("job_result_schema", JSON(), nullable=False, default=_default_schema),
    )

    _jobs = Table(
        "jobs",
        _metadata,
        Column("job_id", UUID(), primary_key=True, nullable=False),
        Column("service_id", UUID(), ForeignKey("services.service_id"), nullable=False),
        Column("date_submitted", UTCDateTime(), nullable=False, default=utcnow),
        # Stores the member names (a PostgreSQL enum type "jobstatus", an ENUM on MariaDB).
        Column("status", Enum(JobStatus), nullable=True, default=JobStatus.REGISTERED),
        Column("parameters", JSON(), nullable=False),
        Column("results", JSON(), nullable=True),
        Column("job_set_id", UUID(), ForeignKey("job_sets.job_set_id"), nullable=True),
    )

    _job_sets = Table(
        "job_sets",
        _metadata,
        Column("job_set_id", UUID(), primary_key=True, nullable=False),
        Column("description", String(140), nullable=False),
    )

    @property
    def services(self) -> Table:
        """The services table."""
        return self._services

    @property
    def jobs(self) -> Table:
        """The jobs table."""
        return self._jobs

    @property
    def job_sets(self) -> Table:
        """The table containing job sets."""
        return self._job_sets

    @property
    def metadata(self) -> MetaData:
        """The SQLAlchemy metadata of the three tables."""
        return self._metadata

"""The job DAOs: JobsDaoMixin and the JobMan, engine and worker DAOs with their schemas."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from dblayer.core import InvalidQuery, claim

from . import utils as _dao_utils
from .orm import ORM
from .sqlite_dao import SqliteDAO


class JobsDaoMixin:
    """Common methods used by daos that work with jobs.

    The job table has an index on ``status`` (claims and queries select by it), created
    with the table and added to a job table created without it.
    """

    class JOB_STATUSES:
        """The statuses a job goes through."""

        CLAIMED = "CLAIMED"
        COMPLETED = "COMPLETED"
        EXECUTED = "EXECUTED"
        FAILED = "FAILED"
        PENDING = "PENDING"
        RUNNING = "RUNNING"
        UNKNOWN = "UNKNOWN"

    def _generate_orms(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # Claims and queries select jobs by status: index it (a TEXT or number status).
        orms: dict[str, Any] = super()._generate_orms(*args, **kwargs)  # type: ignore[misc]
        job = orms.get("job")
        if isinstance(job, ORM) and job.field_kind("status") in ("TEXT", "INTEGER", "FLOAT"):
            job.add_index("status")
        return orms

    def create_job(self, job: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Create a job record; return it as stored (defaults applied, every field)."""
        return self.create_ent(ent_type="job", ent=job)

    def save_jobs(
        self, jobs: Iterable[Mapping[str, Any]] | None = None, replace: bool = True
    ) -> list[dict[str, Any]]:
        """Save jobs in one transaction; ``replace=False`` raises IntegrityError on a key
        that exists and saves none of them. Returns the saved jobs."""
        return self.save_ents(ent_type="job", ents=jobs, replace=replace)

    def query_jobs(self, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The jobs matching a query dict (see ``SqliteDAO.query_ents``)."""
        return self.query_ents(ent_type="job", query=query)

    def update_jobs(
        self, updates: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None
    ) -> dict[str, int]:
        """Set ``updates`` on the jobs matching ``query``; ``{'rowcount': n}``."""
        return self.update_ents(ent_type="job", updates=updates, query=query)

    def claim_jobs(self, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Claim jobs which match a query: set status CLAIMED and a fresh ``modified``.

        Exclusive across threads, processes and DAOs on one database: each job is
        returned to one caller only. Only jobs that match ``query`` when the claim runs
        are taken (its ``order_by`` picks which, its ``limit`` how many), and never a job
        that is CLAIMED already: put it back to another status to have it claimed again.
        """
        orm = self._orm_for("job")
        compiled = orm.compile(query)
        if compiled.offset:
            raise InvalidQuery("claim_jobs takes no offset")
        table = orm.table
        claimed = self.JOB_STATUSES.CLAIMED
        where = [*compiled.where, sa.or_(table.c.status.is_(None), table.c.status != claimed)]
        values: dict[str, Any] = {"status": claimed}
        if "modified" in table.c:
            values["modified"] = _dao_utils.generate_timestamp()
        # A query without a limit claims every matching job.
        return claim(
            self.db, table, values, where=where, order_by=compiled.order_by, limit=compiled.limit
        )

    def get_job(self, key: Any = None) -> dict[str, Any] | None:
        """The job with ``key``, or None."""
        return self.get_ent(ent_type="job", key=key)

    def get_jobs_for_status(self, status: str | None = None) -> list[dict[str, Any]]:
        """The jobs with ``status`` (None: jobs without one)."""
        return self.query_jobs(query={"filters": [self.generate_status_filter(status=status)]})

    def generate_status_filter(self, status: str | None = None) -> dict[str, Any]:
        """A filter matching jobs with ``status``."""
        return {"field": "status", "op": "=", "arg": status}


def _job_orm_specs(schema: type[_dao_utils.Schema], extra_job_fields: Any) -> list[dict[str, Any]]:
    if extra_job_fields is not None and not isinstance(extra_job_fields, Mapping):
        raise TypeError(f"extra_job_fields must be a dict of field specs, got {extra_job_fields!r}")
    return [{"name": "job", "fields": {**schema.get_field_infos(), **(extra_job_fields or {})}}]


class _ExtensibleJobsDAO(JobsDaoMixin, SqliteDAO):
    """A jobs DAO whose table prefix and extra job fields are the caller's."""

    JobSchema: type[_dao_utils.Schema]

    def __init__(
        self,
        table_prefix: str | None = None,
        extra_job_fields: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Tables ``<table_prefix>job`` and ``<table_prefix>kvp``; ``extra_job_fields`` add to
        (or override) JobSchema's fields."""
        super().__init__(
            orm_specs=_job_orm_specs(self.JobSchema, extra_job_fields),
            table_prefix=table_prefix,
            **kwargs,
        )


class EngineSqliteDAO(_ExtensibleJobsDAO):
    """DAO of an engine's jobs."""

    class JobSchema(_dao_utils.TimestampedSchemaMixin, _dao_utils.Schema):
        """Fields for job records."""

        key = {"type": "TEXT", "primary_key": True, "default": _dao_utils.generate_key}
        status = {"type": "TEXT"}


class WorkerSqliteDAO(_ExtensibleJobsDAO):
    """DAO of a worker's jobs."""

    class JobSchema(_dao_utils.TimestampedSchemaMixin, _dao_utils.Schema):
        """Fields for job records."""

        key = {"type": "TEXT", "primary_key": True, "default": _dao_utils.generate_key}
        status = {"type": "TEXT"}
        batchable = {"type": "INTEGER"}
        """Flag to indicate whether a job can be included in a batch."""
        batch_meta = {"type": "JSON"}
        """Metadata for batch jobs, often includes list of subjobs"""
        is_batch = {"type": "INTEGER"}
        """Flag to indicate whether a job is a batch job."""
        parent_batch_key = {"type": "Text"}
        """If job is part of batch, this is the parent batch job's key."""
        engine_key = {"type": "TEXT"}
        """Key for engine handling the job."""
        engine_meta = {"type": "JSON"}
        """Metadata to retrieve related state from engine."""


class JobmanSqliteDAO(JobsDaoMixin, SqliteDAO):
    """DAO for JobMan: tables ``jobman_job`` and ``jobman_kvp``."""

    class JobSchema(_dao_utils.TimestampedSchemaMixin, _dao_utils.Schema):
        """Fields for job records."""

        key = {"type": "TEXT", "primary_key": True, "default": _dao_utils.generate_key}
        job_spec = {"type": "JSON"}
        """dict of job metadata/parameters (often batchable, dir, cfg, resources)."""
        status = {"type": "TEXT"}
        batchable = {"type": "INTEGER"}
        """Flag to indicate whether a job can be included in a batch."""
        worker_key = {"type": "TEXT"}
        """Key for worker handling the job."""
        worker_meta = {"type": "JSON"}
        """Metadata to retrieve related state from worker."""
        errors = {"type": "JSON"}
        source_key = {"type": "TEXT"}
        """Key for source that provided this job."""
        source_meta = {"type": "JSON"}
        """Metadata from source, to allow source to correlate jobman records with its own."""
        source_tag = {"type": "TEXT"}
        """A tag that the source can set (e.g. to post-process before marking a job complete)."""
        purgeable = {"type": "INTEGER"}
        """Whether a job can be purged from the db."""

    def __init__(self, lock_timeout: float = 30, debug: Any = None, **kwargs: Any) -> None:
        """JobMan's DAO; ``lock_timeout`` is how many seconds a claim or write waits for a lock."""
        for fixed in ("table_prefix", "orm_specs"):
            if fixed in kwargs:
                raise TypeError(
                    f"JobmanSqliteDAO sets {fixed} itself (tables jobman_job, jobman_kvp)"
                )
        self.lock_timeout = lock_timeout
        super().__init__(
            orm_specs=[{"name": "job", "fields": self.JobSchema.get_field_infos()}],
            table_prefix="jobman_",
            debug=debug,
            **kwargs,
        )

    def generate_source_key_filter(self, source_key: str | None = None) -> dict[str, Any]:
        """A filter matching jobs from the source ``source_key``."""
        return {"field": "source_key", "op": "=", "arg": source_key}

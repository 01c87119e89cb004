"""The job DAOs: JobsDaoMixin and the JobMan, engine and worker DAOs with their schemas."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from dblayer.core import (
    InvalidQuery,
    Lease,
    database_clock,
    extend_leases,
    requeue_expired,
)
from dblayer.core.claims import QueryClaims
from dblayer.core.lease_spec import check_lease_seconds, check_worker

from . import utils as _dao_utils
from .fields import Double
from .orm import ORM
from .sqlite_dao import SqliteDAO

# The job table's lease columns (not job fields: job dicts do not show them). Added by
# jobman's migration 0002, so the first migration leaves them out.
CLAIMED_BY = "claimed_by"
CLAIM_EXPIRES = "claim_expires"
CLAIMED_FROM = "claimed_from"
LEASE_COLUMNS = (CLAIMED_BY, CLAIM_EXPIRES, CLAIMED_FROM)
SINCE = "jobman_since"  # Column.info key: the migration that adds the column
JOB_LEASE = Lease(worker=CLAIMED_BY, expires=CLAIM_EXPIRES, restore={"status": CLAIMED_FROM})
DEFAULT_LEASE_SECONDS = 300.0
_MODIFIED = "claim_modified"  # the bind parameter of a claim's new ``modified``


def default_worker_id() -> str:
    """A worker id unique to this DAO: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _lease_columns(status: sa.Column[Any]) -> list[sa.Column[Any]]:
    info = {SINCE: "0002"}
    return [
        sa.Column(CLAIMED_BY, sa.Text(), info=info),
        sa.Column(CLAIM_EXPIRES, Double(53), info=info),
        # The status a claim took the job from, of the status field's own type.
        sa.Column(CLAIMED_FROM, status.type, info=info),
    ]


class JobsDaoMixin:
    """Common methods used by daos that work with jobs.

    The job table has an index on ``status`` (claims and queries select by it), created
    with the table and added to a job table created without it.

    Claims are leased: ``claim_jobs`` records this DAO's ``worker_id`` on the jobs it
    takes and when its lease on them ends (``lease_seconds`` from the claim, on the
    database's clock), in columns of the job table that job dicts do not show. A live
    worker calls ``extend_claims``; ``requeue_expired_jobs`` (any process, any number at
    once) puts jobs still CLAIMED after their lease ended back in the status they were
    claimed from. ``worker_id`` and ``lease_seconds`` are keyword-only options of every
    job DAO's constructor, and attributes.
    """

    # Seconds a claim holds its jobs unless extended.
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # claim_jobs' prepared claims, made on first use.
    _job_claims: QueryClaims | None = None

    def __init__(
        self,
        *args: Any,
        worker_id: str | None = None,
        lease_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        """``worker_id`` (default ``host:pid:random``) names this DAO's claims;
        ``lease_seconds`` (default 300) is how long they last unless extended."""
        if worker_id is not None:
            check_worker(worker_id)
        if lease_seconds is not None:
            self.lease_seconds = check_lease_seconds(lease_seconds)
        self.worker_id = worker_id or default_worker_id()
        super().__init__(*args, **kwargs)

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
        if isinstance(job, ORM) and "status" in job.table.c:
            job.add_columns(*_lease_columns(job.table.c.status))
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
        The claim is this DAO's for ``lease_seconds`` (see ``extend_claims`` and
        ``requeue_expired_jobs``).
        """
        claims = self._job_claims or self._make_job_claims()
        # A query without a limit claims every matching job. (The time goes unused by a
        # job table without ``modified``.)
        return claims.claim(
            self.db,
            query,
            {_MODIFIED: _dao_utils.generate_timestamp()},
            worker=self.worker_id,
            lease_seconds=self.lease_seconds,
        )

    def _make_job_claims(self) -> QueryClaims:
        """claim_jobs' claims, each shape of query prepared once: the job dicts come back
        as they are (their fields only, in schema order)."""
        orm = self._orm_for("job")
        c = orm.table.c
        claimed = self.JOB_STATUSES.CLAIMED
        values: dict[str, Any] = {"status": claimed}
        if "modified" in c:
            values["modified"] = sa.bindparam(_MODIFIED)
        claims = QueryClaims(
            orm.table,
            values,
            where=[sa.or_(c.status.is_(None), c.status != claimed)],
            lease=JOB_LEASE,
            returning=[c[f] for f in orm.fields],
            allowed_fields=orm._filterable,
            transform_arg=orm._query_arg,
        )
        self._job_claims = claims
        return claims

    def extend_claims(self, keys: Sequence[Any] | None = None) -> list[Any]:
        """Renew this DAO's claims (on the jobs ``keys``; None: all it holds) for another
        ``lease_seconds``; return the keys of the jobs still held, which were renewed.

        A job whose lease ended, or that was requeued or claimed by another DAO, is not
        this DAO's any more and is left out. Called inside ``self.db.transaction()``, the
        jobs returned stay locked until it ends: finish them there and no sweeper can
        requeue them in between.
        """
        if keys is not None and (
            isinstance(keys, (str, bytes, Mapping)) or not isinstance(keys, Sequence)
        ):
            raise InvalidQuery(f"keys must be a list of job keys or None, got {keys!r}")
        table = self._orm_for("job").table
        return extend_leases(
            self.db, table, JOB_LEASE, self.worker_id, self.lease_seconds, ids=keys
        )

    def requeue_expired_jobs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Put jobs that are still CLAIMED after their claim's lease ended back in the status
        they were claimed from (with a fresh ``modified``); return them, oldest lease first
        (at most ``limit``; None: all).

        Safe with any number of sweepers at once: each job is requeued by one of them.
        """
        orm = self._orm_for("job")
        table = orm.table
        values: dict[str, Any] = {}
        if "modified" in table.c:
            values["modified"] = _dao_utils.generate_timestamp()
        rows = requeue_expired(
            self.db,
            table,
            JOB_LEASE,
            values=values,
            where=[table.c.status == self.JOB_STATUSES.CLAIMED],
            limit=limit,
        )
        return _job_dicts(orm, rows)

    def job_stats(self) -> dict[str, Any]:
        """The queue at a glance: ``{"statuses": {status: count}, "total": n,
        "oldest_pending_age": seconds or None, "claimed": n, "expired_claims": n}``.

        Ages and leases are measured on the database's clock (``created`` is the creating
        host's ``time.time()``).
        """
        table = self._orm_for("job").table
        c = table.c
        now = database_clock(self.db)
        claimed = c.status == self.JOB_STATUSES.CLAIMED

        def read(conn: sa.Connection) -> dict[str, Any]:
            counts = conn.execute(sa.select(c.status, sa.func.count()).group_by(c.status)).all()
            oldest = None
            if "created" in c:
                pending = c.status == self.JOB_STATUSES.PENDING
                oldest = conn.execute(
                    sa.select(now - sa.func.min(c.created)).where(pending)
                ).scalar()
            expired = sa.func.count(sa.case((c[CLAIM_EXPIRES] < now, 1)))  # MariaDB: no FILTER
            held, lapsed = conn.execute(sa.select(sa.func.count(), expired).where(claimed)).one()
            return {
                "statuses": {status: n for status, n in counts},
                "total": sum(n for _, n in counts),
                "oldest_pending_age": None if oldest is None else max(0.0, float(oldest)),
                "claimed": held,
                "expired_claims": lapsed,
            }

        return self.db.run(read, readonly=True)

    def get_job(self, key: Any = None) -> dict[str, Any] | None:
        """The job with ``key``, or None."""
        return self.get_ent(ent_type="job", key=key)

    def get_jobs_for_status(self, status: str | None = None) -> list[dict[str, Any]]:
        """The jobs with ``status`` (None: jobs without one)."""
        return self.query_jobs(query={"filters": [self.generate_status_filter(status=status)]})

    def generate_status_filter(self, status: str | None = None) -> dict[str, Any]:
        """A filter matching jobs with ``status``."""
        return {"field": "status", "op": "=", "arg": status}


def _job_dicts(orm: ORM, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the job table as job dicts: the fields only, in schema order."""
    fields = tuple(orm.fields)
    return [{f: row[f] for f in fields} for row in rows]


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

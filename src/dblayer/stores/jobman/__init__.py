"""jobman's DAOs (seed 002, ``jobman.dao``) on dblayer's core, on every backend.

``JobmanSqliteDAO``, ``EngineSqliteDAO`` and ``WorkerSqliteDAO`` keep jobs (plain
dicts) in a table built from their ``JobSchema`` plus key-value pairs; ``claim_jobs``
is exclusive across processes and ``update_kvp`` is an atomic compare-and-set.
"""

from .jobs import EngineSqliteDAO, JobmanSqliteDAO, JobsDaoMixin, WorkerSqliteDAO
from .orm import ORM
from .sqlite_dao import SqliteDAO
from .utils import (
    Schema,
    SchemaMeta,
    TimestampedSchemaMixin,
    generate_key,
    generate_timestamp,
    generate_timestamp_fields,
    generate_uuid,
)

__all__ = [
    "ORM",
    "EngineSqliteDAO",
    "JobmanSqliteDAO",
    "JobsDaoMixin",
    "Schema",
    "SchemaMeta",
    "SqliteDAO",
    "TimestampedSchemaMixin",
    "WorkerSqliteDAO",
    "generate_key",
    "generate_timestamp",
    "generate_timestamp_fields",
    "generate_uuid",
]

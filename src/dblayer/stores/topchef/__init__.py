"""TopChef's database package (seed 001, ``topchef.database``) on every backend.

Services, their jobs and job sets as SQLAlchemy models over ``schemas.database``,
with the portable ``JSON`` and ``UUID`` column types. As in TopChef, the package's
``DatabaseSchema`` is the *abstract* schema (``AbstractDatabaseSchema``); the
concrete one is ``dblayer.stores.topchef.schemas.DatabaseSchema``.
"""

from .json_type import JSON
from .models import BASE, AbstractDatabaseModel, Job, JobSet, Service, ServiceConsistency
from .schemas import AbstractDatabaseSchema, JobStatus, database
from .schemas import AbstractDatabaseSchema as DatabaseSchema  # TopChef's own quirk
from .uuid_database_type import UUID

__all__ = [
    "BASE",
    "JSON",
    "UUID",
    "AbstractDatabaseModel",
    "AbstractDatabaseSchema",
    "DatabaseSchema",
    "Job",
    "JobSet",
    "JobStatus",
    "Service",
    "ServiceConsistency",
    "database",
]

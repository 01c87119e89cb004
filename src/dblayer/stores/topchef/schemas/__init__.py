"""TopChef's database schema: the concrete ``DatabaseSchema``, its shared instance
``database``, the interface ``AbstractDatabaseSchema`` and ``JobStatus``."""

from .abstract_database_schema import AbstractDatabaseSchema
from .database_schema import DatabaseSchema
from .job_status import JobStatus

# The schema instance the models map onto.
database = DatabaseSchema()

__all__ = ["AbstractDatabaseSchema", "DatabaseSchema", "JobStatus", "database"]

"""TopChef's models: ``Service``, ``Job`` and ``JobSet`` on the declarative ``BASE``."""

from .abstract_database_model import BASE, AbstractDatabaseModel
from .job import Job
from .job_set import JobSet
from .service import Service, ServiceConsistency

__all__ = ["BASE", "AbstractDatabaseModel", "Job", "JobSet", "Service", "ServiceConsistency"]

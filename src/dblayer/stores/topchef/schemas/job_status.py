"""The states a job goes through (``topchef.database.schemas.job_status``)."""

from __future__ import annotations

from enum import Enum


class JobStatus(Enum):
    """Status of a job: registered by a client, worked on, then completed or failed."""

    REGISTERED = "REGISTERED"
    COMPLETED = "COMPLETED"
    WORKING = "WORKING"
    ERROR = "ERROR"

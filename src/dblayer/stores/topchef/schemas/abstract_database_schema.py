"""The interface of TopChef's database schema (``topchef.database.schemas.abstract_database_schema``).

Each table is a read-only property, so that no table can be overwritten by accident;
``metadata`` holds the :class:`sqlalchemy.MetaData` the tables belong to.
"""

from __future__ import annotations

import abc

from sqlalchemy import MetaData, Table


class AbstractDatabaseSchema(metaclass=abc.ABCMeta):
    """Defines the interface for the database schema."""

    @property
    @abc.abstractmethod
    def services(self) -> Table:
        """The table used to write information about services."""

    @property
    @abc.abstractmethod
    def jobs(self) -> Table:
        """The table used to write information about jobs."""

    @property
    @abc.abstractmethod
    def job_sets(self) -> Table:
        """The table associated with job sets."""

    @property
    @abc.abstractmethod
    def metadata(self) -> MetaData:
        """The metadata container SQLAlchemy uses for the schema's tables."""

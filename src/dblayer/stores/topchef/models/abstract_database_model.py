"""The declarative base of TopChef's models and their common interface
(``topchef.database.models.abstract_database_model``)."""

from __future__ import annotations

import abc
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import DeclarativeBase

from ..schemas import database

T = TypeVar("T")


class BASE(DeclarativeBase):
    """Declarative base bound to the schema's MetaData (the models map its tables)."""

    metadata = database.metadata


class AbstractDatabaseModel(Generic[T]):
    """What every model offers: ``new(...)`` builds a fresh instance with a new id."""

    # Marked abstract but not enforced, as in TopChef: ABCMeta would clash with the
    # declarative base's metaclass in the models that inherit this interface.
    @classmethod
    @abc.abstractmethod
    def new(cls, *args: Any, **kwargs: Any) -> T:
        """Create a new instance of the database model."""
        raise TypeError(f"{cls.__name__} is abstract: a model class defines new()")

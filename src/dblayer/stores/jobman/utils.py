"""Schemas as classes of field dicts, and the key and timestamp generators (jobman.dao.utils)."""

from __future__ import annotations

import time
import types
import uuid
from collections.abc import Mapping
from typing import Any


def generate_uuid(*args: Any, **kwargs: Any) -> str:
    """A random UUID4 as a string; any arguments are ignored."""
    return str(uuid.uuid4())


def generate_key(*args: Any, **kwargs: Any) -> str:
    """A new record key (a UUID4 string); any arguments are ignored."""
    return generate_uuid()


def generate_timestamp(*args: Any, **kwargs: Any) -> float:
    """The current time as seconds since the epoch (``time.time()``); arguments are ignored."""
    return time.time()


def generate_timestamp_fields() -> dict[str, dict[str, Any]]:
    """Fresh ``created`` (set once) and ``modified`` (set on every save) FLOAT field specs."""
    return {
        "created": {"type": "FLOAT", "default": generate_timestamp},
        "modified": {"type": "FLOAT", "auto_update": generate_timestamp},
    }


class SchemaMeta(type):
    """Metaclass to propagate doc strings for Schema subclasses.

    A subclass without a docstring takes its nearest base's; so do its methods.
    (The original failed at import on Python 3.10+, where a classmethod's ``__doc__``
    is None; None is simply skipped here.)
    """

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> SchemaMeta:
        cls = super().__new__(mcs, name, bases, namespace)
        if cls.__doc__ is None:
            cls.__doc__ = next((b.__doc__ for b in cls.__mro__[1:] if b.__doc__), None)
        for attr, value in namespace.items():
            function = getattr(value, "__func__", value)
            if isinstance(function, types.FunctionType) and function.__doc__ is None:
                inherited = next(
                    (getattr(b, attr).__doc__ for b in cls.__mro__[1:] if hasattr(b, attr)), None
                )
                if inherited:
                    function.__doc__ = inherited
        return cls


class Schema(metaclass=SchemaMeta):
    """Base class for defining ORM schemas."""

    @classmethod
    def get_field_infos(cls) -> dict[str, dict[str, Any]]:
        """The field specs of this schema, base classes' first (so created, modified lead)."""
        infos: dict[str, dict[str, Any]] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if not name.startswith("_") and isinstance(value, Mapping):
                    infos[name] = dict(value)
        return infos


class TimestampedSchemaMixin(Schema):
    """Provides created and modified timestamp fields."""

    created = {"type": "FLOAT", "default": generate_timestamp}
    """created"""

    modified = {"type": "FLOAT", "auto_update": generate_timestamp}
    """modified"""

"""blitz.data.models: the client's tables (readings, sessions, config, categories, cache, errors).

Names follow the original (camelCase columns, table names ``reading``, ``session``, ...).
Timestamps are blitz timestamps, integer milliseconds since the epoch, so they are
BIGINT columns: the original's INTEGER overflows on PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from dblayer.core import new_metadata


def blitz_timestamp() -> int:
    """The current time as a blitz timestamp: ``ceil(time.time() * 1000)``."""
    return math.ceil(time.time() * 1000)


def as_text(value: Any) -> str | None:
    """A value as blitz stores it: text (``5.2`` -> ``'5.2'``), None as None.

    The models' validators apply it on assignment (SQLite's affinity did it for the
    original); strict backends would refuse a number in a VARCHAR.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _float(value: Any) -> float:
    # The original maps a missing (or the wire's "None") timestamp to 0.0.
    if value is None or value == "None":
        return 0.0
    return float(value)


class BlitzBase(DeclarativeBase):
    """Declarative base of the blitz models (their own MetaData)."""

    metadata = new_metadata()

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every model overrides it
        """The object as a JSON-ready dict."""
        raise TypeError(f"{type(self).__name__} has no to_dict")

    def __str__(self) -> str:
        return json.dumps(self.to_dict())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.to_dict()!r}>"


class Notification(BlitzBase):
    """An error notification to show to the user."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    timeLogged: Mapped[int | None] = mapped_column(sa.BigInteger)
    severity: Mapped[int | None] = mapped_column(sa.Integer)
    description: Mapped[str | None] = mapped_column(sa.Text)

    def to_dict(self) -> dict[str, Any]:
        """id, timeLogged (float), severity, description."""
        return {
            "id": self.id,
            "timeLogged": _float(self.timeLogged),
            "severity": self.severity,
            "description": self.description,
        }


class Category(BlitzBase):
    """A logged variable (its name is unique)."""

    __tablename__ = "category"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    variableName: Mapped[str | None] = mapped_column(sa.String(255), unique=True)

    def to_dict(self) -> dict[str, Any]:
        """id, variableName."""
        return {"id": self.id, "variableName": self.variableName}


class Reading(BlitzBase):
    """One value of one variable logged during a session.

    ``category`` (and the backref ``Category.readings``, ordered by timeLogged) load
    only inside a unit of work; outside one use ``categoryId`` or the client's helpers.
    """

    __tablename__ = "reading"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    sessionId: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    timeLogged: Mapped[int | None] = mapped_column(sa.BigInteger)
    categoryId: Mapped[int | None] = mapped_column(sa.Integer, sa.ForeignKey("category.id"))
    value: Mapped[str | None] = mapped_column(sa.String(255))

    category: Mapped[Category | None] = relationship(
        Category,
        backref=sa.orm.backref("readings", order_by="Reading.timeLogged"),
    )

    @validates("value")
    def _text(self, _key: str, value: Any) -> str | None:
        return as_text(value)

    def to_dict(self) -> dict[str, Any]:
        """id, sessionId, timeLogged (float), categoryId, value."""
        return {
            "id": self.id,
            "sessionId": self.sessionId,
            "timeLogged": _float(self.timeLogged),
            "categoryId": self.categoryId,
            "value": self.value,
        }


class Session(BlitzBase):
    """A logging session known to the client; ``ref_id`` is the logger's session number."""

    __tablename__ = "session"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    ref_id: Mapped[int | None] = mapped_column(sa.Integer, unique=True)
    available: Mapped[bool | None] = mapped_column(sa.Boolean, default=False)
    timeStarted: Mapped[int | None] = mapped_column(sa.BigInteger)
    timeStopped: Mapped[int | None] = mapped_column(sa.BigInteger)
    numberOfReadings: Mapped[int | None] = mapped_column(sa.Integer)

    def to_dict(self) -> dict[str, Any]:
        """id (the ref_id), sql_id (the row id), available, timeStarted, timeStopped, numberOfReadings.

        A missing start or stop time (a running session) is 0.0, as in the original.
        """
        return {
            "id": self.ref_id,
            "sql_id": self.id,
            "available": self.available,
            "timeStarted": _float(self.timeStarted),
            "timeStopped": _float(self.timeStopped),
            "numberOfReadings": self.numberOfReadings,
        }


class Config(BlitzBase):
    """A key/value setting (keys are not unique in the original schema; the first counts)."""

    __tablename__ = "config"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    key: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    value: Mapped[str | None] = mapped_column(sa.String(255))

    @validates("value")
    def _text(self, _key: str, value: Any) -> str | None:
        return as_text(value)

    def to_dict(self) -> dict[str, Any]:
        """id, key, value."""
        return {"id": self.id, "key": self.key, "value": self.value}


class Cache(BlitzBase):
    """A recent live value of a variable, kept for plotting (``categoryId`` has no FK)."""

    __tablename__ = "cache"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    timeLogged: Mapped[int | None] = mapped_column(sa.BigInteger)
    categoryId: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    value: Mapped[str | None] = mapped_column(sa.String(255))

    @validates("value")
    def _text(self, _key: str, value: Any) -> str | None:
        return as_text(value)

    def to_dict(self) -> dict[str, Any]:
        """id, timeLogged (float), categoryId, value."""
        return {
            "id": self.id,
            "timeLogged": _float(self.timeLogged),
            "categoryId": self.categoryId,
            "value": self.value,
        }


MODELS: tuple[type[BlitzBase], ...] = (Notification, Category, Reading, Session, Config, Cache)

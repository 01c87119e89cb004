"""Portable column types: JSON, UUID and a UTC DateTime, built on SQLAlchemy's own types."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from .errors import InvalidValue

# Backends whose JSON column type is a real JSON type; elsewhere JSON is stored as TEXT.
_NATIVE_JSON = {"postgresql", "mysql", "mariadb"}


def utcnow() -> dt.datetime:
    """The current time in UTC as a naive datetime (how every timestamp is stored)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# One encoder for the process: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_SORTED_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=True
)


def _c_encoder(sort_keys: bool) -> Callable[[Any], str] | None:
    """``_ENCODER.encode`` (or the sorted one's) without its per-call set-up: the C encoder,
    made once. It keeps no circular-reference markers (shared state): a cycle ends in
    RecursionError, refused like any other value JSON cannot hold."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        iterencode = make(
            None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",",
            sort_keys, False, False,
        )  # fmt: skip
    except TypeError:  # another signature in another Python: the plain encoder will do
        return None
    join = "".join

    def encode(value: Any) -> str:
        return join(iterencode(value, 0))

    return encode


_encode = _c_encoder(False) or _ENCODER.encode
_encode_sorted = _c_encoder(True) or _SORTED_ENCODER.encode


def json_dumps(value: Any) -> str:
    """Serialise ``value`` as strict JSON (no NaN/Infinity), else InvalidValue.

    Also the engines' ``json_serializer``, so every backend accepts and rejects the same values.
    """
    try:
        return _encode(value)
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidValue(f"value is not JSON-serialisable: {e}") from None


def json_dumps_sorted(value: Any) -> str:
    """``json_dumps`` with object keys sorted (as Python sorts them: a dict whose keys are
    of kinds that do not compare, such as str and int, is refused with InvalidValue)."""
    try:
        return _encode_sorted(value)
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidValue(f"value is not JSON-serialisable: {e}") from None


class JSON(TypeDecorator):
    """JSON values: JSONB on PostgreSQL, JSON on MariaDB/MySQL, TEXT elsewhere.

    dicts, lists, strings, numbers, booleans round-trip; Python ``None`` is SQL NULL.
    """

    impl = sa.JSON
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(none_as_null=True)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        if dialect.name in _NATIVE_JSON:
            return dialect.type_descriptor(sa.JSON(none_as_null=True))
        # TEXT, not a type named JSON: SQLite would give that NUMERIC affinity.
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name in _NATIVE_JSON:
            # Native types serialise with the engine's json_serializer (json_dumps).
            return value
        return json_dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name in _NATIVE_JSON:
            return value
        return json.loads(value)

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name in _NATIVE_JSON:
            return super().bind_processor(dialect)
        # TEXT: serialise in one call, not through TypeDecorator's layers (bulk inserts).
        return _dumps_or_none


def _dumps_or_none(value: Any) -> str | None:
    return None if value is None else json_dumps(value)


def coerce_uuid(value: Any) -> uuid.UUID:
    """A ``uuid.UUID`` from a UUID or its string form (hyphens optional), else InvalidValue."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidValue(f"not a UUID: {value!r} (give a uuid.UUID or its string form)")


class UUID(TypeDecorator):
    """UUIDs: native on PostgreSQL, 32 hex characters (CHAR(32)) elsewhere.

    Accepts ``uuid.UUID`` or its string form; always returns ``uuid.UUID``.
    """

    impl = sa.Uuid
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(as_uuid=True)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Uuid(as_uuid=True))
        # Not MariaDB's native UUID: it refuses valid uuid.UUID values whose variant is not
        # RFC 4122's (e.g. 12345678-9abc-def0-1234-56789abcdef0), which every other backend keeps.
        return dialect.type_descriptor(sa.Uuid(as_uuid=True, native_uuid=False))

    def process_bind_param(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        return None if value is None else coerce_uuid(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        return None if value is None else coerce_uuid(value)


class UTCDateTime(TypeDecorator):
    """Naive UTC datetimes with microseconds on every backend (DATETIME(6) on MariaDB).

    An aware datetime is converted to UTC before it is stored.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise InvalidValue(f"not a datetime: {value!r}")
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value


def long_text() -> TypeEngine[Any]:
    """Text up to 16 MB on MariaDB/MySQL (MEDIUMTEXT), plain TEXT elsewhere."""
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class ExactString(TypeDecorator):
    """A VARCHAR whose values compare byte for byte on every backend.

    MariaDB/MySQL's default collation ignores case and accents (and MariaDB's also
    trailing spaces), which would make "a", "A" and "a " one key there.
    """

    impl = sa.String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            collation = exact_collation(dialect)
            varchar = mysql.VARCHAR(self.impl.length, charset="utf8mb4", collation=collation)
            return dialect.type_descriptor(varchar)
        return dialect.type_descriptor(self.impl)


def exact_collation(dialect: Dialect) -> str:
    """The MariaDB/MySQL collation that compares text byte for byte, trailing spaces included."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = tuple(dialect.server_version_info or ())
    return "utf8mb4_0900_bin" if version >= (8, 0, 17) else "utf8mb4_bin"

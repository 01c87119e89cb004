"""A backend-agnostic column type for UUIDs (``topchef.database.uuid_database_type``).

PostgreSQL's own UUID type there; everywhere else (MariaDB included) CHAR(32)
holding the 32 lower-case hex digits, TopChef's on-disk format.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import CHAR, TypeDecorator, TypeEngine

from dblayer.core.types import coerce_uuid


class UUID(TypeDecorator):
    """UUIDs: native on PostgreSQL, CHAR(32) hex elsewhere; always read back as ``uuid.UUID``.

    Accepts a ``uuid.UUID`` or its string form (with or without hyphens); anything
    else raises InvalidValue (a ValueError).
    """

    impl = CHAR
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The column type used on ``dialect``."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=False))
        # Not MariaDB's UUID type: TopChef's tables hold CHAR(32) there, and MariaDB's
        # type refuses UUIDs whose variant is not RFC 4122's.
        return dialect.type_descriptor(CHAR(32))

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """``None`` stays NULL; a UUID becomes its hyphenated form on PostgreSQL, 32 hex digits elsewhere."""
        if value is None:
            return None
        value = coerce_uuid(value)
        return str(value) if dialect.name == "postgresql" else value.hex

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        """``None`` for NULL, else a ``uuid.UUID`` (from a string or a driver's UUID)."""
        return None if value is None else coerce_uuid(value)

    def copy(self, **kw: Any) -> UUID:
        """A fresh ``UUID`` type."""
        return UUID()

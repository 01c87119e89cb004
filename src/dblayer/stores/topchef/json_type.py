"""A backend-agnostic column type for JSON documents (``topchef.database.json_type``).

Real JSON columns on PostgreSQL and MariaDB/MySQL, text elsewhere. Values are
encoded once: on a native JSON column the document itself is stored (SQL's JSON
functions see it), never a JSON string holding the encoded document.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from dblayer.core.types import json_dumps

# Dialects with a JSON column type of their own (MariaDB's dialect is "mysql" under a
# mysql:// URL and "mariadb" under a mariadb:// one).
_NATIVE = {"postgresql", "mysql", "mariadb"}


class JSON(TypeDecorator):
    """JSON: ``postgresql.JSON`` on PostgreSQL, ``mysql.JSON`` on MariaDB/MySQL, VARCHAR elsewhere.

    Python ``None`` is SQL NULL; dicts, lists, strings, numbers and booleans round-trip.
    A value that is not strict JSON (a set, NaN, ...) raises InvalidValue (a ValueError).
    """

    impl = sa.VARCHAR
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The column type used on ``dialect``."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSON(none_as_null=True))
        if dialect.name in _NATIVE:
            return dialect.type_descriptor(mysql.JSON(none_as_null=True))
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.VARCHAR())
        # Servers other than the three supported ones want a length on VARCHAR.
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """``None`` stays NULL; on text columns the value is encoded here, on JSON columns
        by the driver (checked here, so that every backend rejects the same values)."""
        if value is None:
            return None
        encoded = json_dumps(value)
        return value if dialect.name in _NATIVE else encoded

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """``None`` for NULL; otherwise the decoded document."""
        if value is None or dialect.name in _NATIVE:
            # The JSON column type has decoded it already.
            return value
        return json.loads(value)

    def copy(self, **kw: Any) -> JSON:
        """A fresh ``JSON`` type."""
        return JSON()

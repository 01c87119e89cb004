"""Mapped objects made straight from rows, without the ORM's loading machinery.

For hot reads: the ORM turns a row into an object at several times the cost of the
SQL that fetched it. A RowObjects for a mapped class makes *detached* objects (they
have their identity and belong to no session) from plain rows, such as
PreparedQuery's dicts, with every relationship set to what the caller read or to an
empty list / None, so nothing lazy-loads later. A Session takes them back with
``add`` (updates) or ``merge``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.orm.attributes import set_committed_value

from .errors import InvalidQuery


class RowObjects:
    """Makes detached ``model`` objects from rows (mappings) holding its table's columns,
    each under ``prefix`` + the column's name."""

    def __init__(self, model: Any, prefix: str = "") -> None:
        """Prepare for ``model`` (a mapped class with a single-column primary key)."""
        mapper = sa.inspect(model, raiseerr=False)
        if mapper is None or not isinstance(mapper, sa.orm.Mapper):
            raise InvalidQuery(f"RowObjects needs a mapped class, got {model!r}")
        self.table = model.__table__
        primary_key = list(self.table.primary_key.columns)
        if len(primary_key) != 1:
            raise InvalidQuery(f"{model.__name__} needs a single-column primary key")
        self.keys = tuple(mapper.get_property_by_column(c).key for c in self.table.columns)
        self.prefix = prefix
        self.labels = tuple(prefix + c.name for c in self.table.columns)
        self.id_label = prefix + primary_key[0].name
        self.relationships = tuple((rel.key, rel.uselist) for rel in mapper.relationships)
        self.identity_class = mapper.identity_key_from_primary_key((0,))[0]
        self.new_instance = mapper.class_manager.new_instance

    def columns(self) -> list[Any]:
        """The table's columns for a SELECT, labelled with the prefix."""
        return [c.label(self.prefix + c.name) if self.prefix else c for c in self.table.columns]

    def make(self, row: Mapping[str, Any], related: Mapping[str, Any] | None = None) -> Any:
        """An object holding ``row``'s values and the ``related`` relationships (name ->
        object or list); the other relationships empty."""
        obj = self.new_instance()
        attrs = obj.__dict__
        attrs.update(zip(self.keys, map(row.__getitem__, self.labels), strict=True))
        related = related or {}
        for key, uselist in self.relationships:
            # Through SQLAlchemy, so that a list becomes the instrumented collection a
            # Session expects when the object is added back.
            set_committed_value(obj, key, related.get(key, [] if uselist else None))
        # Detached: it has its identity and belongs to no session.
        obj._sa_instance_state.key = (self.identity_class, (row[self.id_label],), None)
        return obj

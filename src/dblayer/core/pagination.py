"""Keyset (marker) pagination over several sort keys and directions.

Pages are ordered by the caller's keys followed by the primary key as a unique
tie-breaker, and a page after a marker row starts strictly after that row in
that order. NULL sorts as the smallest value on every backend (first when
ascending, last when descending), and NULL-keyed rows are paged like any
other, so walking every page returns every row exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection, Select
from sqlalchemy.orm import Session

from .errors import InvalidQuery, MarkerNotFound
from .query import MAX_COUNT, columns_of


class InvalidSortKey(InvalidQuery):
    """A sort key is not a column of the model, or a direction is not asc/desc."""


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY key: its name, the column, and whether it descends."""

    name: str
    column: Any
    descending: bool = False

    @property
    def nullable(self) -> bool:
        col = getattr(self.column, "expression", self.column)
        return bool(getattr(col, "nullable", True))


def _primary_key_names(target: Any) -> list[str]:
    table = target if isinstance(target, sa.Table) else target.__table__
    return [col.key for col in table.primary_key.columns]


def sort_keys(
    target: Any,
    keys: Sequence[str] | str,
    directions: Sequence[str] | str | None = "asc",
) -> list[SortKey]:
    """Checked sort keys for ``target``, with its primary key appended as the tie-breaker.

    ``keys`` is a list of column names (or one name); ``directions`` is one direction
    for every key, or one per key (None: ascending).
    """
    columns = columns_of(target)
    if isinstance(keys, str):  # one name, not a list of one-letter names
        keys = [keys]
    if not isinstance(keys, Sequence):
        raise InvalidSortKey(f"sort keys must be a list of column names, got {type(keys).__name__}")
    if directions is None or isinstance(directions, str):
        directions = ["asc" if directions is None else directions] * len(keys)
    if not isinstance(directions, Sequence) or len(directions) != len(keys):
        raise InvalidSortKey("give one direction, or one per sort key")
    result: list[SortKey] = []
    for name, direction in zip(keys, directions, strict=True):
        if not isinstance(name, str) or name not in columns:
            # keys(): iterating a Table's column collection yields Columns, not names.
            allowed = ", ".join(sorted(columns.keys()))
            raise InvalidSortKey(f"unknown sort key {name!r}; allowed: {allowed}")
        if not isinstance(direction, str) or direction.lower() not in ("asc", "desc"):
            raise InvalidSortKey(f"unknown sort direction {direction!r}; allowed: asc, desc")
        if name not in {k.name for k in result}:
            result.append(SortKey(name, columns[name], direction.lower() == "desc"))
    last_desc = result[-1].descending if result else False
    for name in _primary_key_names(target):
        if name not in {k.name for k in result}:
            result.append(SortKey(name, columns[name], last_desc))
    return result


def order_clauses(keys: Sequence[SortKey], backend: str) -> list[Any]:
    """ORDER BY clauses with NULL as the smallest value on every backend."""
    clauses = []
    for key in keys:
        clause = key.column.desc() if key.descending else key.column.asc()
        if backend == "postgresql" and key.nullable:
            # PostgreSQL alone sorts NULL as the largest value by default.
            clause = clause.nulls_last() if key.descending else clause.nulls_first()
        clauses.append(clause)
    return clauses


def _after(key: SortKey, value: Any) -> ColumnElement[bool]:
    """Rows strictly after ``value`` on one key, NULL being the smallest value."""
    col = key.column
    if key.descending:
        if value is None:
            return sa.false()
        return sa.or_(col < value, col.is_(None)) if key.nullable else col < value
    if value is None:
        return col.is_not(None)
    return col > value


def _same(key: SortKey, value: Any) -> ColumnElement[bool]:
    return key.column.is_(None) if value is None else key.column == value


def marker_value(marker: Any, name: str) -> Any:
    """The value of key ``name`` in a marker row (mapping, Row or object)."""
    mapping = marker if isinstance(marker, Mapping) else getattr(marker, "_mapping", None)
    try:
        return mapping[name] if mapping is not None else getattr(marker, name)
    except (KeyError, AttributeError):
        raise InvalidQuery(f"marker has no value for sort key {name!r}") from None


def after_marker(keys: Sequence[SortKey], marker: Any) -> ColumnElement[bool]:
    """The criterion "strictly after ``marker``" in the order the keys give."""
    values = [marker_value(marker, key.name) for key in keys]
    branches = []
    for i, key in enumerate(keys):
        equal_before = [_same(k, v) for k, v in zip(keys[:i], values[:i], strict=True)]
        branches.append(sa.and_(*equal_before, _after(key, values[i])))
    return sa.or_(*branches)


def paginate(
    stmt: Select[Any],
    keys: Sequence[SortKey],
    *,
    backend: str,
    marker: Any = None,
    limit: int | None = None,
) -> Select[Any]:
    """Order ``stmt`` by ``keys`` and keep the page after ``marker`` (a row), ``limit`` long."""
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_COUNT
    ):
        raise InvalidQuery(f"limit must be a non-negative integer up to {MAX_COUNT}, got {limit!r}")
    if marker is not None:
        stmt = stmt.where(after_marker(keys, marker))
    stmt = stmt.order_by(*order_clauses(keys, backend))
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


def load_marker(
    conn: Connection | Session,
    target: Any,
    *where: ColumnElement[bool],
    what: str = "marker",
) -> Any:
    """The one row matching ``where``, or MarkerNotFound naming ``what``.

    A mapped class gives its object through a Session, its Row through a Connection.
    """
    row = conn.execute(sa.select(target).where(*where).limit(1)).first()
    if row is None:
        raise MarkerNotFound(f"{what} not found")
    # Only a Session turns select(Model) into objects; a Connection returns the columns.
    return row[0] if isinstance(conn, Session) and not isinstance(target, sa.Table) else row

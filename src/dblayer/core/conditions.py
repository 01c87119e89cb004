"""Conditional updates: ``constraint(**conditions)`` with ``equal_any`` / ``not_equal``.

The conditions go into the UPDATE's own WHERE clause, so a racing writer cannot
slip between a check and the write; an update that matches no row raises
ConstraintNotMet and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection
from sqlalchemy.orm import Session

from .errors import ConstraintNotMet, InvalidQuery, translate
from .query import columns_of


class Condition:
    """A condition on one column; subclasses say how it becomes SQL."""

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values

    def clauses(self, column: Any) -> list[ColumnElement[bool]]:
        """The SQL clauses (ANDed) this condition puts on ``column``."""
        raise InvalidQuery("a condition must be made with equal_any() or not_equal()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.values!r}"


class EqualityCondition(Condition):
    """The column equals one of the values."""

    def clauses(self, column: Any) -> list[ColumnElement[bool]]:
        return [sa.or_(*[column == v for v in self.values])]


class InequalityCondition(Condition):
    """The column differs from every value (a NULL column does not match, as in SQL)."""

    def clauses(self, column: Any) -> list[ColumnElement[bool]]:
        return [column != v for v in self.values]


def equal_any(*values: Any) -> EqualityCondition:
    """A condition met when the column equals any of ``values`` (at least one)."""
    if not values:
        raise InvalidQuery("equal_any() needs at least one value")
    return EqualityCondition(values)


def not_equal(*values: Any) -> InequalityCondition:
    """A condition met when the column equals none of ``values``."""
    return InequalityCondition(values)


class Constraint:
    """Conditions on several columns, all of which must hold for an update to apply."""

    def __init__(self, conditions: Mapping[str, Condition]) -> None:
        if not isinstance(conditions, Mapping):
            raise InvalidQuery(
                f"a constraint takes a dict of column -> condition, got {conditions!r}"
            )
        for name, condition in conditions.items():
            if not isinstance(condition, Condition):
                raise InvalidQuery(
                    f"constraint on {name!r} must be equal_any(...) or not_equal(...), "
                    f"got {condition!r}"
                )
        self.conditions = dict(conditions)

    def clauses(self, target: Any) -> list[ColumnElement[bool]]:
        """The WHERE clauses for ``target`` (a Table or mapped class)."""
        columns = columns_of(target)
        result: list[ColumnElement[bool]] = []
        for name, condition in self.conditions.items():
            if not isinstance(name, str) or name not in columns:
                allowed = ", ".join(sorted(columns.keys()))
                raise InvalidQuery(f"constraint names unknown column {name!r}; allowed: {allowed}")
            result.extend(condition.clauses(columns[name]))
        return result

    def apply(self, model: Any, query: Any) -> Any:
        """Add the conditions to a select/update/ORM query and return it."""
        return query.where(*self.clauses(model))

    def __repr__(self) -> str:
        return f"Constraint({self.conditions!r})"


def constraint(**conditions: Condition) -> Constraint:
    """A Constraint: ``constraint(host=equal_any("h1"), vm_state=not_equal("error"))``."""
    return Constraint(conditions)


def _assignments(columns: Mapping[str, Any], values: Any) -> dict[Any, Any]:
    if not isinstance(values, Mapping) or not values:
        raise InvalidQuery(
            f"an update must set at least one column, given as a dict; got {values!r}"
        )
    unknown = [n for n in values if not isinstance(n, str) or n not in columns]
    if unknown:
        raise InvalidQuery(
            f"update names unknown columns {unknown!r}; allowed: {', '.join(sorted(columns.keys()))}"
        )
    return {columns[name]: value for name, value in values.items()}


def conditional_update(
    conn: Connection | Session,
    target: Any,
    values: Mapping[str, Any],
    *where: ColumnElement[bool],
    constraint: Constraint | None = None,
) -> int:
    """UPDATE the rows of ``target`` (a Table or mapped class) matching ``where`` and
    ``constraint``; return how many matched, or raise ConstraintNotMet (nothing changed)."""
    columns = columns_of(target)
    table = target if isinstance(target, sa.Table) else target.__table__
    assignments = _assignments(columns, values)
    if constraint is not None and not isinstance(constraint, Constraint):
        raise InvalidQuery(f"constraint must be made with constraint(...), got {constraint!r}")
    wrong = [
        w
        for w in where
        if not isinstance(w, sa.ClauseElement) and not hasattr(w, "__clause_element__")
    ]
    if wrong:
        raise InvalidQuery(f"where must be SQLAlchemy clauses, got {wrong!r}")
    clauses = list(where)
    if constraint is not None:
        clauses.extend(constraint.clauses(target))
    try:
        result = conn.execute(sa.update(table).where(*clauses).values(assignments))
    except sa.exc.SQLAlchemyError as e:
        raise translate(e) from e
    # MariaDB/MySQL report rows matched, not rows changed (SQLAlchemy sets FOUND_ROWS), so an
    # update that writes the values a row already holds still counts as met.
    if result.rowcount == 0:
        raise ConstraintNotMet("the update's conditions were not met; nothing changed")
    return result.rowcount

"""The dict query language, compiled to SQLAlchemy for tables and mapped classes alike.

A query is ``{"filters": [{"field", "op", "arg"}, ...], "order_by": [...] or {...},
"limit": n, "offset": n}``; filters are ANDed. Fields, operators and directions
come from allow-lists and are checked before any SQL is built; values are always
bound parameters. ``equality(target, {"field": value})`` is the shorthand of
blitz's ``find``.

A negated operator (``!=``, ``NOT IN``, ``NOT LIKE``, ``IS NOT``) matches exactly the
rows its positive form does not, including rows where the field is NULL. ``IN`` with
None listed also matches NULL rows; an empty ``IN`` matches nothing and an empty
``NOT IN`` everything. A LIKE pattern escapes ``%``, ``_`` and ``\\`` with a backslash on
every backend. ``IS`` takes None, or True/False on a Boolean field.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Select, Table

from .errors import InvalidQuery

QUERY_KEYS = ("filters", "order_by", "limit", "offset")
DIRECTIONS = ("ASC", "DESC")
# LIMIT and OFFSET are bound as signed 64-bit integers on every backend.
MAX_COUNT = 2**63 - 1
LIKE_ESCAPE = "\\"
# A container given to a one-value operator is a mistake (except for a JSON field).
_CONTAINERS = (list, tuple, set, frozenset)


def _has_type(col: Any, kind: type) -> bool:
    """Whether ``col`` is of SQLAlchemy type ``kind``, directly or under a TypeDecorator."""
    col_type = getattr(col, "type", None)
    return isinstance(col_type, kind) or isinstance(getattr(col_type, "impl_instance", None), kind)


def _one_value(op: str, col: Any, arg: Any) -> Any:
    if isinstance(arg, _CONTAINERS) and not _has_type(col, sa.JSON):
        hint = "NOT IN" if op in ("!=", "<>") else "IN"
        raise InvalidQuery(
            f"{op!r} takes one value, got a {type(arg).__name__}; use {hint} for a list"
        )
    return arg


def _eq(col: Any, arg: Any) -> ColumnElement[bool]:
    return col.is_(None) if arg is None else col == _one_value("=", col, arg)


def _in(col: Any, arg: Any) -> ColumnElement[bool]:
    values = _in_values("IN", arg)
    if not values:
        return sa.false()  # an empty IN matches nothing, on every backend
    non_null = [v for v in values if v is not None]
    clause = col.in_(non_null) if non_null else sa.false()
    return sa.or_(clause, col.is_(None)) if len(non_null) < len(values) else clause


def _like_pattern(op: str, arg: Any) -> str:
    if not isinstance(arg, str):
        raise InvalidQuery(f"{op} needs a string pattern, got {type(arg).__name__}")
    trailing = len(arg) - len(arg.rstrip(LIKE_ESCAPE))
    if trailing % 2:  # PostgreSQL rejects it, SQLite matches nothing, MariaDB reads it literally
        raise InvalidQuery(f"{op} pattern {arg!r} ends with a lone escape '\\'; write '\\\\'")
    return arg


def _like(col: Any, arg: Any) -> ColumnElement[bool]:
    # An explicit escape: SQLite has none by default, PostgreSQL and MariaDB use backslash.
    return col.like(_like_pattern("LIKE", arg), escape=LIKE_ESCAPE)


def _is_arg(op: str, col: Any, arg: Any) -> Any:
    if arg is not None and not isinstance(arg, bool):
        raise InvalidQuery(f"{op} takes None, True or False, got {arg!r}")
    if arg is not None and not _has_type(col, sa.Boolean):
        # PostgreSQL refuses "integer IS true"; the others would compare truthiness.
        raise InvalidQuery(f"{op} True/False needs a Boolean field; use IS None, or = for a value")
    return arg


def _truth(arg: bool | None) -> Any:
    # SQL's own true/false: a TypeDecorator would bind a parameter, and "IS $1" is no SQL.
    return None if arg is None else sa.true() if arg else sa.false()


def _is(col: Any, arg: Any) -> ColumnElement[bool]:
    return col.is_(_truth(_is_arg("IS", col, arg)))


def _between(col: Any, arg: Any) -> ColumnElement[bool]:
    if not isinstance(arg, (list, tuple)) or len(arg) != 2:
        raise InvalidQuery(f"BETWEEN needs a pair [low, high], got {arg!r}")
    if arg[0] is None or arg[1] is None:
        raise InvalidQuery("BETWEEN with None is always unknown; use IS / IS NOT for NULL")
    return col.between(arg[0], arg[1])


def _ordered(
    op: str, fn: Callable[[Any, Any], ColumnElement[bool]]
) -> Callable[[Any, Any], ColumnElement[bool]]:
    def build(col: Any, arg: Any) -> ColumnElement[bool]:
        if arg is None:
            raise InvalidQuery(f"{op!r} with None is always unknown; use IS / IS NOT")
        return fn(col, _one_value(op, col, arg))

    return build


def _not_eq(col: Any, arg: Any) -> ColumnElement[bool]:
    if arg is None:
        return col.is_not(None)
    return sa.or_(col != _one_value("!=", col, arg), col.is_(None))


def _in_values(op: str, arg: Any) -> list[Any]:
    if not isinstance(arg, _CONTAINERS):
        raise InvalidQuery(f"{op} needs a list of values, got {type(arg).__name__}")
    return list(arg)


def _not_in(col: Any, arg: Any) -> ColumnElement[bool]:
    values = _in_values("NOT IN", arg)
    if not values:
        return sa.true()
    non_null = [v for v in values if v is not None]
    if len(non_null) < len(values):  # None is listed: NULL rows are excluded
        return col.not_in(non_null) if non_null else col.is_not(None)
    return sa.or_(col.not_in(non_null), col.is_(None))


def _not_like(col: Any, arg: Any) -> ColumnElement[bool]:
    pattern = _like_pattern("NOT LIKE", arg)
    return sa.or_(col.not_like(pattern, escape=LIKE_ESCAPE), col.is_(None))


def _is_not(col: Any, arg: Any) -> ColumnElement[bool]:
    return col.is_not(_truth(_is_arg("IS NOT", col, arg)))


# The allow-list: normalised operator -> clause builder.
OPERATORS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": _eq,
    "==": _eq,
    "!=": _not_eq,
    "<>": _not_eq,
    "<": _ordered("<", lambda c, a: c < a),
    "<=": _ordered("<=", lambda c, a: c <= a),
    ">": _ordered(">", lambda c, a: c > a),
    ">=": _ordered(">=", lambda c, a: c >= a),
    "IN": _in,
    "NOT IN": _not_in,
    "LIKE": _like,
    "NOT LIKE": _not_like,
    "IS": _is,
    "IS NOT": _is_not,
    "BETWEEN": _between,
}


# jobman's '!' prefix negates these operators ('! =', '! IN', '! LIKE', '! IS').
NEGATIONS = {"=": "!=", "==": "!=", "IN": "NOT IN", "LIKE": "NOT LIKE", "IS": "IS NOT"}


def _unknown_operator(op: str) -> InvalidQuery:
    allowed = ", ".join(OPERATORS)
    negatable = ", ".join(NEGATIONS)
    return InvalidQuery(
        f"unknown operator {op!r}; allowed: {allowed} (any case and spacing); "
        f"'!' negates {negatable}"
    )


def normalise_operator(op: Any) -> str:
    """The allow-listed spelling of ``op`` ('! =' -> '!=', '! in' -> 'NOT IN'), else InvalidQuery."""
    if not isinstance(op, str):
        raise InvalidQuery(f"operator must be a string, got {type(op).__name__}")
    if not op.isascii():  # str.upper() maps some non-ASCII letters onto ASCII ones
        raise _unknown_operator(op)
    text = " ".join(op.upper().split())
    if text.startswith("!") and text not in OPERATORS:
        text = NEGATIONS.get(text[1:].strip(), text)
    if text not in OPERATORS:
        raise _unknown_operator(op)
    return text


def columns_of(target: Any) -> Mapping[str, Any]:
    """Column name -> column (or mapped attribute) of a Table or mapped class."""
    if isinstance(target, Table):
        return target.c
    if hasattr(target, "__mapper__"):
        mapper = target.__mapper__
        return {attr.key: getattr(target, attr.key) for attr in mapper.column_attrs}
    raise InvalidQuery(f"cannot query {target!r}: not a Table or mapped class")


def _column(columns: Mapping[str, Any], name: Any, allowed: Collection[str] | None) -> Any:
    if (
        not isinstance(name, str)
        or name not in columns
        or (allowed is not None and name not in allowed)
    ):
        names = sorted(allowed if allowed is not None else columns.keys())
        raise InvalidQuery(f"unknown field {name!r}; allowed: {', '.join(names)}")
    return columns[name]


@dataclass
class CompiledQuery:
    """A checked query: WHERE clauses, ORDER BY clauses, limit and offset."""

    where: list[ColumnElement[bool]] = field(default_factory=list)
    order_by: list[Any] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        """Add this query's clauses to a SELECT."""
        if self.where:
            stmt = stmt.where(*self.where)
        if self.order_by:
            stmt = stmt.order_by(*self.order_by)
        if self.limit is not None:
            stmt = stmt.limit(self.limit)
        if self.offset:
            stmt = stmt.offset(self.offset)
        return stmt


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise InvalidQuery(
            f"{name} must be a non-negative integer up to {MAX_COUNT}, got {value!r}"
        )
    return value


def compile_filters(
    target: Any,
    filters: Iterable[Mapping[str, Any]] | None,
    *,
    allowed_fields: Collection[str] | None = None,
    transform_arg: Callable[[str, str, Any], Any] | None = None,
) -> list[ColumnElement[bool]]:
    """WHERE clauses for a list of ``{field, op, arg}`` filters (ANDed by the caller)."""
    columns = columns_of(target)
    clauses: list[ColumnElement[bool]] = []
    if filters is None:
        return clauses
    if isinstance(filters, (str, bytes, Mapping)) or not isinstance(filters, Iterable):
        raise InvalidQuery("filters must be a list of {field, op, arg} dicts")
    for spec in filters:
        if not isinstance(spec, Mapping):
            raise InvalidQuery(f"a filter must be a dict with field, op, arg; got {spec!r}")
        extra = set(spec) - {"field", "op", "arg"}
        if extra:
            raise InvalidQuery(f"unknown filter keys {sorted(extra)}; allowed: field, op, arg")
        column = _column(columns, spec.get("field"), allowed_fields)
        op = normalise_operator(spec.get("op", "="))
        arg = spec.get("arg")
        if transform_arg is not None:
            arg = transform_arg(spec["field"], op, arg)
        try:
            clauses.append(OPERATORS[op](column, arg))
        except InvalidQuery as e:
            raise InvalidQuery(f"filter on {spec['field']!r}: {e}") from None
    return clauses


def compile_order_by(
    target: Any,
    order_by: Any,
    *,
    allowed_fields: Collection[str] | None = None,
) -> list[Any]:
    """ORDER BY clauses for one ``{field, direction}`` dict, a list of them, or field names."""
    if order_by is None:
        return []
    columns = columns_of(target)
    specs = [order_by] if isinstance(order_by, (Mapping, str)) else order_by
    if not isinstance(specs, Sequence):
        raise InvalidQuery("order_by must be a dict, a list of dicts, or a field name")
    clauses = []
    for spec in specs:
        if isinstance(spec, str):
            spec = {"field": spec}
        if not isinstance(spec, Mapping):
            raise InvalidQuery(
                f"an order_by entry must be a dict with field, direction; got {spec!r}"
            )
        extra = set(spec) - {"field", "direction"}
        if extra:
            raise InvalidQuery(f"unknown order_by keys {sorted(extra)}; allowed: field, direction")
        column = _column(columns, spec.get("field"), allowed_fields)
        descending = _descending(spec.get("direction", "ASC"))
        clauses.append(column.desc() if descending else column.asc())
    return clauses


def _descending(direction: Any) -> bool:
    # ASCII only: str.upper() maps some non-ASCII letters onto ASCII ones.
    text = direction.strip().upper() if isinstance(direction, str) and direction.isascii() else None
    if text not in DIRECTIONS:
        raise InvalidQuery(f"unknown direction {direction!r}; allowed: ASC, DESC (any case)")
    return text == "DESC"


def compile_query(
    target: Any,
    query: Mapping[str, Any] | None,
    *,
    allowed_fields: Collection[str] | None = None,
    transform_arg: Callable[[str, str, Any], Any] | None = None,
) -> CompiledQuery:
    """Check a query dict and turn it into clauses; raises InvalidQuery before any SQL."""
    if query is None:
        columns_of(target)  # still refuse a target that is neither a Table nor a mapped class
        return CompiledQuery()
    if not isinstance(query, Mapping):
        raise InvalidQuery(f"a query must be a dict, got {type(query).__name__}")
    extra = set(query) - set(QUERY_KEYS)
    if extra:
        raise InvalidQuery(f"unknown query keys {sorted(extra)}; allowed: {', '.join(QUERY_KEYS)}")
    return CompiledQuery(
        where=compile_filters(
            target, query.get("filters"), allowed_fields=allowed_fields, transform_arg=transform_arg
        ),
        order_by=compile_order_by(target, query.get("order_by"), allowed_fields=allowed_fields),
        limit=_count("limit", query.get("limit")),
        offset=_count("offset", query.get("offset")),
    )


def select_query(target: Any, query: Mapping[str, Any] | None, **kwargs: Any) -> Select[Any]:
    """``SELECT`` of a table or mapped class filtered, ordered and limited by ``query``."""
    return compile_query(target, query, **kwargs).apply(sa.select(target))


def where_query(target: Any, query: Mapping[str, Any] | None, **kwargs: Any) -> list[Any]:
    """The WHERE clauses of ``query`` alone (for UPDATE and DELETE); limit/order are refused."""
    compiled = compile_query(target, query, **kwargs)
    if compiled.limit is not None or compiled.offset or compiled.order_by:
        raise InvalidQuery("limit, offset and order_by do not apply to updates and deletes")
    return compiled.where


def equality(
    target: Any, values: Mapping[str, Any], *, allowed_fields: Collection[str] | None = None
) -> list[ColumnElement[bool]]:
    """WHERE clauses for ``{"field": value}`` equality pairs (None matches NULL)."""
    if not isinstance(values, Mapping):
        raise InvalidQuery(f"expected a dict of field: value pairs, got {type(values).__name__}")
    columns = columns_of(target)
    clauses = []
    for name, value in values.items():
        column = _column(columns, name, allowed_fields)
        try:
            clauses.append(_eq(column, value))
        except InvalidQuery as e:
            raise InvalidQuery(f"field {name!r}: {e}") from None
    return clauses


def update_values(
    target: Any, values: Mapping[str, Any], *, allowed_fields: Collection[str] | None = None
) -> dict[str, Any]:
    """Check the column names of an UPDATE's SET values against the allow-list."""
    if not isinstance(values, Mapping) or not values:
        raise InvalidQuery("updates must be a non-empty dict of field: value pairs")
    columns = columns_of(target)
    for name in values:
        _column(columns, name, allowed_fields)
    return dict(values)

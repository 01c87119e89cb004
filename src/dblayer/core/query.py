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

``fetch_query(conn, target, query)`` returns the rows ``select_query`` selects, as dicts,
through a PreparedQuery cached per query shape: the clauses are built and compiled once
per shape. For a plain query (dicts, lists and exact ``str``s) the checks of its fields,
operators and directions are also remembered per spelling; its values, limit and offset
are checked on every call.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection, Select, Table

from .errors import InvalidQuery
from .prepared import PreparedQuery

QUERY_KEYS = ("filters", "order_by", "limit", "offset")
DIRECTIONS = ("ASC", "DESC")
# LIMIT and OFFSET are bound as signed 64-bit integers on every backend.
MAX_COUNT = 2**63 - 1
LIKE_ESCAPE = "\\"
# A container given to a one-value operator is a mistake (except for a JSON field).
_CONTAINERS = (list, tuple, set, frozenset)
_FILTER_KEYS = frozenset(("field", "op", "arg"))
_ORDER_KEYS = frozenset(("field", "direction"))


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


# A bind turns a checked value into what a clause compares with: the value itself (SQLAlchemy
# binds it as usual) or, for a plan cached by fetch_query, a named bind parameter.
Bind = Callable[[Any, Any], Any]


def _literal(_col: Any, value: Any) -> Any:
    return value


def _check_eq(col: Any, arg: Any) -> Any:
    return None if arg is None else _one_value("=", col, arg)


def _eq(col: Any, arg: Any, bind: Bind) -> ColumnElement[bool]:
    return col.is_(None) if arg is None else col == bind(col, arg)


def _check_not_eq(col: Any, arg: Any) -> Any:
    return None if arg is None else _one_value("!=", col, arg)


def _not_eq(col: Any, arg: Any, bind: Bind) -> ColumnElement[bool]:
    if arg is None:
        return col.is_not(None)
    return sa.or_(col != bind(col, arg), col.is_(None))


def _in_values(op: str, arg: Any) -> tuple[tuple[Any, ...], bool]:
    """The non-None values of an IN list, and whether None is listed."""
    if not isinstance(arg, _CONTAINERS):
        raise InvalidQuery(f"{op} needs a list of values, got {type(arg).__name__}")
    values = list(arg)
    non_null = tuple(v for v in values if v is not None)
    return non_null, len(non_null) < len(values)


def _in(col: Any, arg: tuple[tuple[Any, ...], bool], bind: Bind) -> ColumnElement[bool]:
    non_null, has_none = arg
    if not non_null and not has_none:
        return sa.false()  # an empty IN matches nothing, on every backend
    clause = col.in_([bind(col, v) for v in non_null]) if non_null else sa.false()
    return sa.or_(clause, col.is_(None)) if has_none else clause


def _not_in(col: Any, arg: tuple[tuple[Any, ...], bool], bind: Bind) -> ColumnElement[bool]:
    non_null, has_none = arg
    if not non_null and not has_none:
        return sa.true()
    if has_none:  # None is listed: NULL rows are excluded
        return col.not_in([bind(col, v) for v in non_null]) if non_null else col.is_not(None)
    return sa.or_(col.not_in([bind(col, v) for v in non_null]), col.is_(None))


def _like_pattern(op: str, col: Any, arg: Any) -> str:
    if not _has_type(col, sa.String):
        # PostgreSQL has no LIKE for numbers, dates or JSON; the others would compare text.
        kind = type(getattr(col, "type", None)).__name__
        raise InvalidQuery(f"{op} needs a text field, got a field of type {kind}")
    if not isinstance(arg, str):
        raise InvalidQuery(f"{op} needs a string pattern, got {type(arg).__name__}")
    trailing = len(arg) - len(arg.rstrip(LIKE_ESCAPE))
    if trailing % 2:  # PostgreSQL rejects it, SQLite matches nothing, MariaDB reads it literally
        raise InvalidQuery(f"{op} pattern {arg!r} ends with a lone escape '\\'; write '\\\\'")
    return arg


def _like(col: Any, arg: str, bind: Bind) -> ColumnElement[bool]:
    # An explicit escape: SQLite has none by default, PostgreSQL and MariaDB use backslash.
    return col.like(bind(col, arg), escape=LIKE_ESCAPE)


def _not_like(col: Any, arg: str, bind: Bind) -> ColumnElement[bool]:
    return sa.or_(col.not_like(bind(col, arg), escape=LIKE_ESCAPE), col.is_(None))


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


def _is(col: Any, arg: bool | None, _bind: Bind) -> ColumnElement[bool]:
    return col.is_(_truth(arg))


def _is_not(col: Any, arg: bool | None, _bind: Bind) -> ColumnElement[bool]:
    return col.is_not(_truth(arg))


def _check_between(_col: Any, arg: Any) -> tuple[Any, Any]:
    if not isinstance(arg, (list, tuple)) or len(arg) != 2:
        raise InvalidQuery(f"BETWEEN needs a pair [low, high], got {arg!r}")
    if arg[0] is None or arg[1] is None:
        raise InvalidQuery("BETWEEN with None is always unknown; use IS / IS NOT for NULL")
    return arg[0], arg[1]


def _between(col: Any, arg: tuple[Any, Any], bind: Bind) -> ColumnElement[bool]:
    return col.between(bind(col, arg[0]), bind(col, arg[1]))


@dataclass(frozen=True)
class Operator:
    """One allow-listed operator: check its argument, then build its clause from the result.

    ``values`` lists the checked argument's bound values in the order ``build`` binds
    them; ``shape`` is what of the argument shows in the SQL text (fetch_query's cache key).
    """

    check: Callable[[Any, Any], Any]
    build: Callable[[Any, Any, Bind], ColumnElement[bool]]
    values: Callable[[Any], tuple[Any, ...]]
    shape: Callable[[Any], Hashable]


def _one(arg: Any) -> tuple[Any, ...]:
    return (arg,)


def _none(_arg: Any) -> tuple[Any, ...]:
    return ()


def _same(_arg: Any) -> None:
    return None


def _optional(arg: Any) -> tuple[Any, ...]:
    return () if arg is None else (arg,)


def _is_none(arg: Any) -> bool:
    return arg is None


def _itself(arg: Any) -> Any:
    return arg


def _in_shape(arg: tuple[tuple[Any, ...], bool]) -> tuple[int, bool]:
    return len(arg[0]), arg[1]


def _in_bound(arg: tuple[tuple[Any, ...], bool]) -> tuple[Any, ...]:
    return arg[0]


def _ordered(op: str, fn: Callable[[Any, Any], ColumnElement[bool]]) -> Operator:
    def check(col: Any, arg: Any) -> Any:
        if arg is None:
            raise InvalidQuery(f"{op!r} with None is always unknown; use IS / IS NOT")
        return _one_value(op, col, arg)

    def build(col: Any, arg: Any, bind: Bind) -> ColumnElement[bool]:
        return fn(col, bind(col, arg))

    return Operator(check, build, _one, _same)


_EQ = Operator(_check_eq, _eq, _optional, _is_none)
_NOT_EQ = Operator(_check_not_eq, _not_eq, _optional, _is_none)
_IN = Operator(lambda _c, a: _in_values("IN", a), _in, _in_bound, _in_shape)
_NOT_IN = Operator(lambda _c, a: _in_values("NOT IN", a), _not_in, _in_bound, _in_shape)

# The allow-list: normalised operator -> its check and clause builder.
OPERATORS: dict[str, Operator] = {
    "=": _EQ,
    "==": _EQ,
    "!=": _NOT_EQ,
    "<>": _NOT_EQ,
    "<": _ordered("<", lambda c, a: c < a),
    "<=": _ordered("<=", lambda c, a: c <= a),
    ">": _ordered(">", lambda c, a: c > a),
    ">=": _ordered(">=", lambda c, a: c >= a),
    "IN": _IN,
    "NOT IN": _NOT_IN,
    "LIKE": Operator(lambda c, a: _like_pattern("LIKE", c, a), _like, _one, _same),
    "NOT LIKE": Operator(lambda c, a: _like_pattern("NOT LIKE", c, a), _not_like, _one, _same),
    "IS": Operator(lambda c, a: _is_arg("IS", c, a), _is, _none, _itself),
    "IS NOT": Operator(lambda c, a: _is_arg("IS NOT", c, a), _is_not, _none, _itself),
    "BETWEEN": Operator(_check_between, _between, _itself, _same),
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
    if op in OPERATORS:  # already the allow-listed spelling
        return op
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
    limit: Any = None  # an int, or a bind parameter in a cached plan
    offset: Any = None

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        """Add this query's clauses to a SELECT."""
        if self.where:
            stmt = stmt.where(*self.where)
        if self.order_by:
            stmt = stmt.order_by(*self.order_by)
        if self.limit is not None:
            stmt = stmt.limit(self.limit)
        # OFFSET 0 is left out; in a cached plan the offset is a bind parameter.
        if self.offset is not None and not (isinstance(self.offset, int) and self.offset == 0):
            stmt = stmt.offset(self.offset)
        return stmt


class _Filter(NamedTuple):
    field: str
    column: Any
    op: str
    arg: Any  # as its operator's check returned it


class _Order(NamedTuple):
    field: str
    column: Any
    descending: bool


@dataclass
class _Checked:
    """A query that passed every check, not yet turned into clauses."""

    filters: list[_Filter] = field(default_factory=list)
    order_by: list[_Order] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None

    def compile(self, bind: Bind = _literal) -> CompiledQuery:
        """The clauses of this query, values passed through ``bind``."""
        return CompiledQuery(
            where=[OPERATORS[f.op].build(f.column, f.arg, bind) for f in self.filters],
            order_by=[o.column.desc() if o.descending else o.column.asc() for o in self.order_by],
            limit=self.limit,
            offset=self.offset or None,  # OFFSET 0 is left out
        )


def _is_mapping(value: Any) -> bool:
    # dict first: an ABC check costs several times a type check, on every call of a query.
    return type(value) is dict or isinstance(value, Mapping)


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise InvalidQuery(
            f"{name} must be a non-negative integer up to {MAX_COUNT}, got {value!r}"
        )
    return value


def _check_filters(
    target: Any,
    filters: Iterable[Mapping[str, Any]] | None,
    allowed_fields: Collection[str] | None,
    transform_arg: Callable[[str, str, Any], Any] | None,
) -> list[_Filter]:
    columns = columns_of(target)
    checked: list[_Filter] = []
    if filters is None:
        return checked
    if type(filters) is not list and (
        isinstance(filters, (str, bytes, Mapping)) or not isinstance(filters, Iterable)
    ):
        raise InvalidQuery("filters must be a list of {field, op, arg} dicts")
    for spec in filters:
        if not _is_mapping(spec):
            raise InvalidQuery(f"a filter must be a dict with field, op, arg; got {spec!r}")
        if not _FILTER_KEYS.issuperset(spec):
            extra = set(spec) - _FILTER_KEYS
            raise InvalidQuery(f"unknown filter keys {sorted(extra)}; allowed: field, op, arg")
        column = _column(columns, spec.get("field"), allowed_fields)
        op = normalise_operator(spec.get("op", "="))
        arg = spec.get("arg")
        if transform_arg is not None:
            arg = transform_arg(spec["field"], op, arg)
        try:
            arg = OPERATORS[op].check(column, arg)
        except InvalidQuery as e:
            raise InvalidQuery(f"filter on {spec['field']!r}: {e}") from None
        checked.append(_Filter(spec["field"], column, op, arg))
    return checked


def compile_filters(
    target: Any,
    filters: Iterable[Mapping[str, Any]] | None,
    *,
    allowed_fields: Collection[str] | None = None,
    transform_arg: Callable[[str, str, Any], Any] | None = None,
) -> list[ColumnElement[bool]]:
    """WHERE clauses for a list of ``{field, op, arg}`` filters (ANDed by the caller)."""
    checked = _check_filters(target, filters, allowed_fields, transform_arg)
    return _Checked(filters=checked).compile().where


def _check_order_by(
    target: Any, order_by: Any, allowed_fields: Collection[str] | None
) -> list[_Order]:
    if order_by is None:
        return []
    columns = columns_of(target)
    specs = [order_by] if isinstance(order_by, str) or _is_mapping(order_by) else order_by
    if type(specs) is not list and not isinstance(specs, Sequence):
        raise InvalidQuery("order_by must be a dict, a list of dicts, or a field name")
    checked = []
    for spec in specs:
        if isinstance(spec, str):
            spec = {"field": spec}
        if not _is_mapping(spec):
            raise InvalidQuery(
                f"an order_by entry must be a dict with field, direction; got {spec!r}"
            )
        if not _ORDER_KEYS.issuperset(spec):
            extra = set(spec) - _ORDER_KEYS
            raise InvalidQuery(f"unknown order_by keys {sorted(extra)}; allowed: field, direction")
        column = _column(columns, spec.get("field"), allowed_fields)
        checked.append(_Order(spec["field"], column, _descending(spec.get("direction", "ASC"))))
    return checked


def compile_order_by(
    target: Any,
    order_by: Any,
    *,
    allowed_fields: Collection[str] | None = None,
) -> list[Any]:
    """ORDER BY clauses for one ``{field, direction}`` dict, a list of them, or field names."""
    checked = _check_order_by(target, order_by, allowed_fields)
    return _Checked(order_by=checked).compile().order_by


def _descending(direction: Any) -> bool:
    # ASCII only: str.upper() maps some non-ASCII letters onto ASCII ones.
    text = direction.strip().upper() if isinstance(direction, str) and direction.isascii() else None
    if text not in DIRECTIONS:
        raise InvalidQuery(f"unknown direction {direction!r}; allowed: ASC, DESC (any case)")
    return text == "DESC"


def check_query(
    target: Any,
    query: Mapping[str, Any] | None,
    allowed_fields: Collection[str] | None = None,
    transform_arg: Callable[[str, str, Any], Any] | None = None,
) -> _Checked:
    """The one validating step of select_query and fetch_query; InvalidQuery before any SQL."""
    if query is None:
        columns_of(target)  # still refuse a target that is neither a Table nor a mapped class
        return _Checked()
    if not _is_mapping(query):
        raise InvalidQuery(f"a query must be a dict, got {type(query).__name__}")
    extra = set(query) - set(QUERY_KEYS)
    if extra:
        raise InvalidQuery(f"unknown query keys {sorted(extra)}; allowed: {', '.join(QUERY_KEYS)}")
    return _Checked(
        filters=_check_filters(target, query.get("filters"), allowed_fields, transform_arg),
        order_by=_check_order_by(target, query.get("order_by"), allowed_fields),
        limit=_count("limit", query.get("limit")),
        offset=_count("offset", query.get("offset")),
    )


def compile_query(
    target: Any,
    query: Mapping[str, Any] | None,
    *,
    allowed_fields: Collection[str] | None = None,
    transform_arg: Callable[[str, str, Any], Any] | None = None,
) -> CompiledQuery:
    """Check a query dict and turn it into clauses; raises InvalidQuery before any SQL."""
    return check_query(target, query, allowed_fields, transform_arg).compile()


def select_query(target: Any, query: Mapping[str, Any] | None, **kwargs: Any) -> Select[Any]:
    """``SELECT`` of a table or mapped class filtered, ordered and limited by ``query``."""
    return compile_query(target, query, **kwargs).apply(sa.select(target))


# fetch_query's memo: query shape -> PreparedQuery. Bounded; the oldest shape goes first.
_PLANS: dict[Hashable, PreparedQuery] = {}
_PLANS_MAX = 512
_PLANS_LOCK = threading.Lock()


def query_shape(target: Any, checked: _Checked) -> Hashable:
    """Everything of a checked query that shows in its SQL text; its values do not
    (but for the limit, which the plan writes into its text).

    allowed_fields and transform_arg only decide which queries pass and with what
    arguments, so the checked filters already carry all they change.
    """
    return (
        target,
        tuple((f.field, f.op, OPERATORS[f.op].shape(f.arg)) for f in checked.filters),
        tuple((o.field, o.descending) for o in checked.order_by),
        checked.limit,
        bool(checked.offset),
    )


def _bound_values(checked: _Checked) -> dict[str, Any]:
    """The values of a checked query under the names its cached plan binds them by."""
    values = [v for f in checked.filters for v in OPERATORS[f.op].values(f.arg)]
    params = {f"v{i}": value for i, value in enumerate(values)}
    if checked.offset:
        params["offset"] = checked.offset
    return params


def _build_plan(target: Any, checked: _Checked) -> PreparedQuery:
    """A PreparedQuery of this query's shape: every value a named bind parameter."""
    names = itertools.count()

    def bind(col: Any, _value: Any) -> Any:
        return sa.bindparam(f"v{next(names)}", type_=col.type)

    compiled = checked.compile(bind)
    if compiled.limit is not None:
        # Written into the text (a checked int, so safe): PostgreSQL's generic plan for a
        # prepared "LIMIT $n" ran twice as slow as for "LIMIT 20" on an index range read.
        compiled.limit = sa.literal_column(str(int(checked.limit)), sa.BigInteger)
    if compiled.offset is not None:
        compiled.offset = sa.bindparam("offset", type_=sa.BigInteger)
    return PreparedQuery(compiled.apply(sa.select(target)))


def _plan_of(target: Any, checked: _Checked) -> PreparedQuery:
    """The cached plan of this query's shape, built on first use."""
    key = query_shape(target, checked)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _store_plan(key, _build_plan(target, checked))
    return plan


def _store_plan(key: Hashable, plan: PreparedQuery) -> PreparedQuery:
    """Memoise ``plan`` under ``key`` (the oldest entry goes when full); the one kept."""
    with _PLANS_LOCK:
        if len(_PLANS) >= _PLANS_MAX:
            del _PLANS[next(iter(_PLANS))]
        return _PLANS.setdefault(key, plan)


class _Structure:
    """What a query's field, operator and direction strings checked to, cached by
    ``_structure_key``: the values still get checked on every call. Hashed by identity
    (it keys its own plans in _PLANS)."""

    __slots__ = ("filters", "order_by", "plain_shapes")

    def __init__(
        self, filters: tuple[tuple[str, Any, str, Operator], ...], order_by: tuple[_Order, ...]
    ) -> None:
        self.filters = filters  # field, column, op, its Operator
        self.order_by = order_by
        # When every operator is a comparison: the shapes of its filters for arguments of a
        # _PLAIN type, which every comparison's check passes unchanged as its one value.
        self.plain_shapes: tuple[Any, ...] | None = None
        if all(op in _PLAIN_SHAPE for _n, _c, op, _o in filters):
            self.plain_shapes = tuple(_PLAIN_SHAPE[op] for _n, _c, op, _o in filters)


# Argument types a comparison takes as they are, and each comparison's shape for them.
_PLAIN = frozenset((str, int, float))
_PLAIN_SHAPE: dict[str, Any] = {
    "=": False,  # _EQ's shape: whether the argument is None
    "==": False,
    "!=": False,
    "<>": False,
    "<": None,  # an ordered operator's shape: always the same
    "<=": None,
    ">": None,
    ">=": None,
}


# fetch_query's memo of checked structures: _structure_key -> _Structure. Bounded like _PLANS.
_STRUCTURES: dict[Hashable, _Structure] = {}
_QUERY_KEY_SET = frozenset(QUERY_KEYS)


def _structure_key(
    target: Any, query: Any, allowed_fields: Any
) -> tuple[Hashable, list[Any]] | None:
    """The strings of a plain query (dicts, lists and ``str``s only) that decide its checks,
    with the filters' arguments in order; None for anything else (the full check decides).

    Only exact ``str``s go into the key, so two queries with equal keys pass or fail the
    checks of fields, operators and directions alike.
    """
    if type(query) is not dict or not query.keys() <= _QUERY_KEY_SET:
        return None
    filters = query.get("filters")
    # Field and operator pairs, then None (never a str: it ends the filters), then the
    # field and direction pairs of the ordering: one flat, unambiguous key.
    names: list[str | None] = []
    args: list[Any] = []
    if filters is not None:
        if type(filters) is not list:
            return None
        for spec in filters:
            if type(spec) is not dict or not spec.keys() <= _FILTER_KEYS:
                return None
            name = spec.get("field")
            op = spec.get("op", "=")
            if type(name) is not str or type(op) is not str:
                return None
            names += (name, op)
            args.append(spec.get("arg"))
    names.append(None)
    order_by = query.get("order_by")
    if order_by is not None:
        specs = order_by if type(order_by) is list else (order_by,)
        for spec in specs:
            if type(spec) is str:
                names += (spec, "ASC")
                continue
            if type(spec) is not dict or not spec.keys() <= _ORDER_KEYS:
                return None
            name = spec.get("field")
            direction = spec.get("direction", "ASC")
            if type(name) is not str or type(direction) is not str:
                return None
            names += (name, direction)
    return (target, allowed_fields, tuple(names)), args


def _structure_of(
    target: Any, query: Mapping[str, Any], allowed_fields: Any, key: Hashable
) -> _Structure:
    """The cached structure for ``key``; on a miss the full check runs (and may raise)."""
    structure = _STRUCTURES.get(key)
    if structure is None:
        checked = check_query(target, query, allowed_fields)
        structure = _Structure(
            tuple((f.field, f.column, f.op, OPERATORS[f.op]) for f in checked.filters),
            tuple(checked.order_by),
        )
        with _PLANS_LOCK:
            if len(_STRUCTURES) >= _PLANS_MAX:
                del _STRUCTURES[next(iter(_STRUCTURES))]
            _STRUCTURES[key] = structure
    return structure


# The names a cached plan binds values by: v0, v1, ... (extended when a query needs more).
_VALUE_NAMES: list[str] = [f"v{i}" for i in range(64)]


def _value_names(n: int) -> list[str]:
    """``["v0", "v1", ...]``, at least ``n`` long: the names a cached plan binds values by."""
    while len(_VALUE_NAMES) < n:
        _VALUE_NAMES.append(f"v{len(_VALUE_NAMES)}")
    return _VALUE_NAMES


def _fetch_plain(
    conn: Connection,
    target: Any,
    query: Mapping[str, Any],
    allowed_fields: Any,
    key: Hashable,
    args: list[Any],
) -> list[dict[str, Any]]:
    """fetch_query for a plain query: structure checks cached, values checked per call."""
    structure = _STRUCTURES.get(key) or _structure_of(target, query, allowed_fields, key)
    shape = structure.plain_shapes
    if shape is not None:
        for arg in args:
            if type(arg) not in _PLAIN:
                shape = None
                break
    if shape is not None:  # comparisons with plain values: every check passes as it is
        checked_args = values = args
    else:
        checked_args = []
        shapes = []
        values = []
        for (name, column, _op, operator), arg in zip(structure.filters, args, strict=True):
            try:
                arg = operator.check(column, arg)
            except InvalidQuery as e:
                raise InvalidQuery(f"filter on {name!r}: {e}") from None
            checked_args.append(arg)
            shapes.append(operator.shape(arg))
            values += operator.values(arg)
        shape = tuple(shapes)
    limit = query.get("limit")
    if limit is not None and (type(limit) is not int or not 0 <= limit <= MAX_COUNT):
        limit = _count("limit", limit)
    offset = query.get("offset")
    if offset is not None and (type(offset) is not int or not 0 <= offset <= MAX_COUNT):
        offset = _count("offset", offset)
    plan_key = (structure, shape, limit, bool(offset))
    plan = _PLANS.get(plan_key)
    if plan is None:
        checked = _Checked(
            filters=[
                _Filter(name, column, op, arg)
                for (name, column, op, _o), arg in zip(structure.filters, checked_args, strict=True)
            ],
            order_by=list(structure.order_by),
            limit=limit,
            offset=offset,
        )
        plan = _store_plan(plan_key, _build_plan(target, checked))
    names = _VALUE_NAMES if len(values) <= len(_VALUE_NAMES) else _value_names(len(values))
    params = dict(zip(names, values, strict=False))
    if offset:
        params["offset"] = offset
    return plan.run_all(conn, params)


def fetch_query(
    conn: Connection,
    target: Any,
    query: Mapping[str, Any] | None,
    *,
    allowed_fields: Collection[str] | None = None,
    transform_arg: Callable[[str, str, Any], Any] | None = None,
) -> list[dict[str, Any]]:
    """The rows ``select_query(target, query)`` selects, as dicts, via a plan cached per shape.

    A plain query (dicts, lists and strings; no ``transform_arg``; ``allowed_fields`` None
    or hashable) has its fields, operators and directions checked once per distinct
    spelling; its values are checked on every call. Anything else is checked in full.
    """
    if transform_arg is None:
        found = _structure_key(target, query, allowed_fields)
        if found is not None:
            key, args = found
            if allowed_fields is not None:
                try:
                    hash(key)
                except TypeError:  # allowed_fields given as a list or set: checked in full
                    key = None
            if key is not None:
                return _fetch_plain(conn, target, query, allowed_fields, key, args)  # type: ignore[arg-type]
    checked = check_query(target, query, allowed_fields, transform_arg)
    return _plan_of(target, checked).run_all(conn, _bound_values(checked))


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
            clauses.append(_eq(column, _check_eq(column, value), _literal))
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

"""Prepared statements for hot paths: compiled once per dialect, run on the driver's cursor.

SQLAlchemy's per-statement cost (cache key, parameter processing, result wrapping)
is about 15 µs, several times a raw SQLite lookup. A prepared statement pays it once:
it keeps the compiled SQL, the order of its parameters and the column types'
conversions, and each call runs the driver cursor of the unit's held connection.
Values are still bound parameters, types still convert (JSON, UUID, datetimes),
and driver errors still come out as dblayer's own.

- ``PreparedQuery``: a SELECT, or an INSERT/UPDATE/DELETE ... RETURNING; rows as dicts.
- ``PreparedWrite``: an INSERT/UPDATE/DELETE without RETURNING, run once (``run``) or
  for a list of parameter sets in one executemany (``run_many``); the rows it touched.
  A single-row INSERT can instead give the new row's id (``insert``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase

from .driver import bind_processor, cursor_execute, positional_dialect, result_processor
from .errors import InvalidQuery


@dataclass(frozen=True)
class _Plan:
    """What one dialect needs to run the statement: SQL text, parameters, conversions."""

    sql: str
    make_args: Callable[[Mapping[str, Any]], Any]  # values -> the driver's parameters
    make_many: Callable[[Sequence[Mapping[str, Any]]], list[Any]]  # the same for a list
    names: tuple[str, ...]  # the columns it returns
    make_rows: Callable[[list[Any]], list[dict[str, Any]]]  # driver rows -> dicts, converted


def _generated(source: str, namespace: dict[str, Any], name: str) -> Any:
    """The function ``name`` defined by ``source``; the text holds only generated
    identifiers (k0.., v0.., c0.., d0..), never a column or parameter name: those are
    passed in ``namespace`` as values."""
    exec(source, namespace)  # noqa: S102 - generated from indices only, see above
    return namespace[name]


def _rows_maker(
    names: tuple[str, ...], converters: dict[int, Callable[[Any], Any]]
) -> Callable[[list[Any]], list[dict[str, Any]]]:
    """A function turning driver rows into dicts of column name to (converted) value.

    It is one generated list comprehension with a dict display (about twice as fast as
    ``dict(zip(names, row))`` per row).
    """
    items = []
    for i in range(len(names)):
        if i in converters:
            items.append(f"k{i}: (None if v{i} is None else c{i}(v{i}))")
        else:
            items.append(f"k{i}: v{i}")
    unpack = "".join(f"v{i}, " for i in range(len(names)))
    source = f"def make_rows(rows):\n    return [{{{', '.join(items)}}} for ({unpack}) in rows]\n"
    namespace: dict[str, Any] = {f"k{i}": name for i, name in enumerate(names)}
    namespace.update({f"c{i}": convert for i, convert in converters.items()})
    return _generated(source, namespace, "make_rows")  # type: ignore[no-any-return]


def _args_makers(
    order: tuple[str, ...],
    positional: bool,
    defaults: Mapping[str, Any],
    bind: Mapping[str, Callable[[Any], Any]],
) -> tuple[Callable[[Mapping[str, Any]], Any], Callable[[Sequence[Mapping[str, Any]]], list[Any]]]:
    """Two functions turning the caller's values into the driver's parameters: one for a
    mapping of values (``make_args``), one for a list of them (``make_many``, for
    executemany). Parameters are a tuple in ``order`` (positional paramstyles; a name may
    repeat) or a dict (named ones), each value converted by its type and defaulted to the
    statement's own literal value. ``make_many`` converts a value object shared by several
    mappings once (a timestamp, often), by identity.

    Generated, like ``_rows_maker``: per call one pass, not a loop over the parameters. A
    value the statement needs and the caller did not give is a KeyError.
    """
    unique = tuple(dict.fromkeys(order))
    namespace: dict[str, Any] = {}
    single, many, memos = [], [], []
    for i, name in enumerate(unique):
        namespace[f"k{i}"] = name
        if name in defaults:
            namespace[f"d{i}"] = defaults[name]
            get = f"p.get(k{i}, d{i})"
        else:
            get = f"p[k{i}]"
        if name not in bind:
            single.append(f"    v{i} = {get}\n")
            many.append(f"        v{i} = {get}\n")
            continue
        # Called on None too, as SQLAlchemy does (a JSON column may store null).
        namespace[f"c{i}"] = bind[name]
        single.append(f"    v{i} = c{i}({get})\n")
        # The memo holds each value with its conversion: alive, its id is not reused.
        memos.append(f"    m{i} = {{}}\n")
        many.append(
            f"        v{i} = {get}\n"
            f"        x = id(v{i})\n"
            f"        v{i} = (m{i}.get(x) or m{i}.setdefault(x, (v{i}, c{i}(v{i}))))[1]\n"
        )
    if positional:
        at = {name: i for i, name in enumerate(unique)}
        result = "(" + "".join(f"v{at[name]}, " for name in order) + ")"
    else:
        result = "{" + ", ".join(f"k{i}: v{i}" for i in range(len(unique))) + "}"
    make_args = _generated(
        f"def make_args(p):\n{''.join(single)}    return {result}\n", namespace, "make_args"
    )
    make_many = _generated(
        f"def make_many(rows):\n{''.join(memos)}    out = []\n    for p in rows:\n"
        f"{''.join(many)}        out.append({result})\n    return out\n",
        namespace,
        "make_many",
    )
    return make_args, make_many


def _plan(stmt: Any, dialect: Dialect) -> _Plan:
    # psycopg takes %s placeholders too, and a tuple of values costs it less than a dict
    # (a few µs a statement, more with many values). The conversions still come from the
    # engine's own dialect (its JSON serializer, for one).
    compiled = stmt.compile(
        dialect=positional_dialect(dialect) if dialect.name == "postgresql" else dialect
    )
    binds = compiled.binds
    bind: dict[str, Callable[[Any], Any]] = {}
    for name, param in binds.items():
        processor = bind_processor(param.type, dialect)
        if processor is not None:
            bind[name] = processor
    if isinstance(stmt, Select):
        columns = list(stmt.selected_columns)
    elif stmt._returning:
        columns = list(stmt.exported_columns)
    else:
        columns = []
    converters = {}
    for i, col in enumerate(columns):
        processor = result_processor(col.type, dialect)
        if processor is not None:
            converters[i] = processor
    names = tuple(col.key for col in columns)
    positional = bool(compiled.positional)
    make_args, make_many = _args_makers(
        tuple(compiled.positiontup) if positional else tuple(binds),
        positional,
        {n: p.value for n, p in binds.items() if not p.required},
        bind,
    )
    return _Plan(
        sql=compiled.string,
        make_args=make_args,
        make_many=make_many,
        names=names,
        make_rows=_rows_maker(names, converters),
    )


def _check_no_in_lists(stmt: Any) -> None:
    # An IN list is expanded when the statement runs; a prepared text cannot hold one.
    expanding = [name for name, param in stmt.compile().binds.items() if param.expanding]
    if expanding:
        raise InvalidQuery(f"a prepared statement cannot hold IN lists ({', '.join(expanding)})")


class _Prepared:
    """A statement compiled once per dialect, run on the driver cursor of a Connection."""

    def __init__(self, stmt: Any) -> None:
        _check_no_in_lists(stmt)
        self.stmt: Any = stmt
        self._plans: dict[int, _Plan] = {}

    def _plan_for(self, conn: Connection) -> _Plan:
        dialect = conn.dialect
        plan = self._plans.get(id(dialect))
        if plan is None:
            plan = self._plans[id(dialect)] = _plan(self.stmt, dialect)
        return plan

    def _execute(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Plan, Any]:
        plan = self._plans.get(id(conn.dialect)) or self._plan_for(conn)
        return plan, _run_plan(conn, plan, params)


def _run_plan(conn: Connection, plan: _Plan, params: Mapping[str, Any]) -> Any:
    """The driver cursor having run ``plan`` with ``params``; the caller closes it."""
    try:
        args = plan.make_args(params)
    except KeyError as e:
        raise InvalidQuery(f"missing values for [{e.args[0]!r}]") from None
    return cursor_execute(conn, plan.sql, args)


class PreparedQuery(_Prepared):
    """A SELECT (or an INSERT/UPDATE/DELETE ... RETURNING) run many times with different
    values: ``q.first(conn, id=5)``, ``q.all(...)``.

    Use it inside a unit of work (``with db.transaction(readonly=True) as conn``) and
    call it as often as needed; rows come back as dicts of column name to value.
    """

    def __init__(self, stmt: Any) -> None:
        """Prepare ``stmt``; its ``bindparam``s are the values each call passes."""
        if not (isinstance(stmt, Select) or (isinstance(stmt, UpdateBase) and stmt._returning)):
            raise InvalidQuery(
                "PreparedQuery takes a select() or an insert/update/delete with RETURNING, "
                f"got {type(stmt).__name__}"
            )
        super().__init__(stmt)

    def first(self, conn: Connection, /, **params: Any) -> dict[str, Any] | None:
        """The first row for these values as a dict, or None."""
        plan, cursor = self._execute(conn, params)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else plan.make_rows((row,))[0]

    def all(self, conn: Connection, /, **params: Any) -> list[dict[str, Any]]:
        """Every row for these values, as dicts."""
        return self.run_all(conn, params)

    def run_all(self, conn: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``all()`` with the values given as one mapping (not copied into keywords)."""
        plan, cursor = self._execute(conn, params)
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return plan.make_rows(rows)


class PreparedWrite(_Prepared):
    """An UPDATE, DELETE or INSERT (without RETURNING) run many times with different
    values on the driver's cursor: ``w.run(conn, id=5, status="DONE")`` or, for several
    sets of values in one executemany, ``w.run_many(conn, [{...}, {...}])``; each returns
    the number of rows it touched. A single-row INSERT into a table with an autoincrement
    key can give the new row's id instead: ``w.insert(conn, name="x")``. Values are bound
    and converted by their column types."""

    def __init__(self, stmt: UpdateBase) -> None:  # noqa: D107 - see the class
        if not isinstance(stmt, UpdateBase) or stmt._returning:
            raise InvalidQuery(
                f"PreparedWrite takes an insert/update/delete without RETURNING, "
                f"got {type(stmt).__name__}"
            )
        super().__init__(stmt)
        # Per dialect, for insert(): the plan and whether it returns the id as a row.
        self._id_plans: dict[int, tuple[_Plan, bool]] = {}

    def run(self, conn: Connection, /, **params: Any) -> int:
        """Run the statement with these values; the number of rows it touched."""
        return self._run(conn, params)

    def insert(self, conn: Connection, /, **params: Any) -> int:
        """Run the single-row INSERT with these values; the id of the row it inserted."""
        plan, returns = self._id_plans.get(id(conn.dialect)) or self._id_plan_for(conn)
        cursor = _run_plan(conn, plan, params)
        try:
            # SQLite and MySQL report the id with the statement's own reply (the cursor's
            # lastrowid): no second query for it. PostgreSQL has none: RETURNING.
            return int(cursor.fetchone()[0] if returns else cursor.lastrowid)
        finally:
            cursor.close()

    def _id_plan_for(self, conn: Connection) -> tuple[_Plan, bool]:
        stmt = self.stmt
        if not isinstance(stmt, Insert) or stmt._multi_values or stmt.select is not None:
            raise InvalidQuery(
                f"insert() takes a single-row INSERT (one set of values), got {type(stmt).__name__}"
            )
        key = getattr(stmt.table, "_autoincrement_column", None)
        if key is None:
            raise InvalidQuery(f"insert(): table {stmt.table.name!r} has no autoincrement key")
        dialect = conn.dialect
        if dialect.postfetch_lastrowid:
            found = (self._plan_for(conn), False)
        elif dialect.insert_returning:
            found = (_plan(stmt.returning(key), dialect), True)
        else:
            raise InvalidQuery(f"insert() cannot read the new id on {dialect.name!r}")
        self._id_plans[id(dialect)] = found
        return found

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        _plan, cursor = self._execute(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run the statement once per mapping of ``rows`` (the driver's executemany; one
        plain execute for a single mapping, nothing for none); the rows it touched."""
        if len(rows) < 2:
            return self._run(conn, rows[0]) if rows else 0
        plan = self._plans.get(id(conn.dialect)) or self._plan_for(conn)
        try:
            args = plan.make_many(rows)
        except KeyError as e:
            raise InvalidQuery(f"missing values for [{e.args[0]!r}]") from None
        cursor = cursor_execute(conn, plan.sql, args, many=True)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

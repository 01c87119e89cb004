"""Atomic claims: move up to N matching rows to a new state and return exactly those rows.

Two workers never get the same row. The candidates are chosen and locked in one
``SELECT ... ORDER BY ... LIMIT`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and
MariaDB/MySQL, so concurrent claimers pass each other's rows by; SQLite holds its
write lock from BEGIN IMMEDIATE, so no other writer can run in between), then
those ids are updated (``RETURNING`` the rows where the backend can) and the rows
come back in the order the select chose them.

A claim may take a lease (``lease=``, see :mod:`dblayer.core.leases`): it then also
records who claimed each row and until when, so that rows of a worker that died can be
put back with ``requeue_expired``.

A worker claims the same way over and over: ``PreparedClaim`` builds a claim once and
compiles it once per backend, and ``QueryClaims`` keeps one per shape of a dict query
(see :mod:`dblayer.core.query`). They run on the driver's cursor (see
:mod:`dblayer.core.prepared`) and, where the claim has no order, in one statement:
``UPDATE ... WHERE pk IN (SELECT ... LIMIT n) RETURNING`` (PostgreSQL: the select
``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import inspect
import itertools
import threading
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection, Table
from sqlalchemy.sql import operators, visitors

from .database import Database, DialectFacts
from .errors import InvalidQuery, translate
from .lease_spec import (
    Lease,
    check_lease_seconds,
    check_worker,
    claim_lease_columns,
    clock,
    leased,
    leased_values,
)
from .prepared import PreparedQuery, PreparedWrite
from .query import OPERATORS, check_query, query_shape

# Ids per IN list: far below every backend's limit on bound parameters.
_CHUNK = 500


def _table(target: Any) -> Table:
    table = getattr(target, "__table__", target)
    if not isinstance(table, Table):
        raise InvalidQuery(f"can only claim rows of a Table or mapped class, got {target!r}")
    return table


def _single_primary_key(table: Table) -> sa.Column[Any]:
    columns = list(table.primary_key.columns)
    if len(columns) != 1:
        raise InvalidQuery(
            f"claims need a single-column primary key; {table.name!r} has {len(columns)}"
        )
    return columns[0]


def _clauses(value: Any, what: str) -> list[Any]:
    """``where`` / ``order_by`` as a list, given one clause or a sequence of them."""
    items = [value] if _is_clause(value) else value
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise InvalidQuery(
            f"{what} must be a list of SQLAlchemy clauses, got {type(value).__name__}"
        )
    wrong = [item for item in items if not _is_clause(item)]
    if wrong:
        raise InvalidQuery(f"{what} must hold SQLAlchemy clauses, got {wrong!r}")
    return list(items)


def _is_clause(value: Any) -> bool:
    return isinstance(value, sa.ClauseElement) or hasattr(value, "__clause_element__")


def _check_values(table: Table, values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping) or not values:
        raise InvalidQuery(f"a claim must set at least one column, given as a dict; got {values!r}")
    unknown = [name for name in values if not isinstance(name, str) or name not in table.c]
    if unknown:
        allowed = ", ".join(c.key for c in table.c)
        raise InvalidQuery(
            f"unknown columns {unknown!r} for table {table.name!r}; allowed: {allowed}"
        )
    pk = _single_primary_key(table)
    if pk.key in values:
        raise InvalidQuery(f"a claim cannot change the primary key {pk.key!r}")
    return dict(values)


def _check_limit(limit: Any) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidQuery(f"limit must be a non-negative integer or None (all), got {limit!r}")


def _chunks(ids: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _update(
    conn: Connection,
    table: Table,
    pk: sa.Column[Any],
    ids: list[Any],
    values: dict[str, Any],
    facts: DialectFacts,
) -> list[dict[str, Any]]:
    """Set ``values`` on the rows ``ids`` (already locked) and return them after the update."""
    # One expanding parameter, not a literal per id: the statement's cache key stays the
    # same from batch to batch, and no id is coerced into a clause of its own.
    in_ids = pk.in_(sa.bindparam("dblayer_claim_ids", expanding=True))
    # In the given order: MariaDB/MySQL assign left to right, each SET seeing the ones
    # before it, so a lease's copy of a column must come before the column's new value.
    stmt = sa.update(table).where(in_ids).ordered_values(*values.items())
    params = {"dblayer_claim_ids": ids}
    if facts.update_returning:
        return _dicts(conn.execute(stmt.returning(*table.c), params))
    conn.execute(stmt, params)
    return _dicts(conn.execute(sa.select(table).where(in_ids), params))


def _candidates(
    pk: sa.Column[Any],
    where: list[Any],
    order_by: list[Any],
    limit: Any,
    facts: DialectFacts,
    skip_locked: bool,
) -> sa.Select[Any]:
    """The SELECT of the primary keys a claim takes, locking them as the backend can."""
    candidates = sa.select(pk).where(*where).order_by(*order_by).limit(limit)
    if skip_locked and facts.supports_skip_locked:
        return candidates.with_for_update(skip_locked=True)
    if facts.backend != "sqlite":  # SQLite: BEGIN IMMEDIATE holds the database already
        return candidates.with_for_update()
    return candidates


def _dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    """The rows of ``result`` as dicts (zipping plain rows with the keys: a claim returns
    whole batches, and a RowMapping per row costs several times as much)."""
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def _claim(
    conn: Connection,
    table: Table,
    values: dict[str, Any],
    where: list[Any],
    order_by: list[Any],
    limit: int | None,
    facts: DialectFacts,
    skip_locked: bool = True,
) -> list[dict[str, Any]]:
    """Lock the rows ``where`` selects (passing by rows others hold, with ``skip_locked``;
    else waiting for them and seeing them as committed), set ``values`` and return them."""
    pk = _single_primary_key(table)
    candidates = _candidates(pk, where, order_by, limit, facts, skip_locked)
    try:
        ids = list(conn.execute(candidates).scalars().all())
        rows: dict[Any, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            rows.update(
                (row[pk.name], row) for row in _update(conn, table, pk, chunk, values, facts)
            )
    except sa.exc.SQLAlchemyError as e:
        raise translate(e) from e
    return [rows[i] for i in ids if i in rows]


def claim(
    db: Database,
    table: Any,
    values: Mapping[str, Any],
    *,
    where: Sequence[ColumnElement[bool]] = (),
    order_by: Sequence[Any] = (),
    limit: int | None = 1,
    lease: Lease | None = None,
    worker: str | None = None,
    lease_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """Set ``values`` on up to ``limit`` rows of ``table`` (a Table or mapped class) matching
    ``where`` (first by ``order_by``) and return those rows as dicts, as they are after the
    update, in that order. No row is returned to two callers. Inside an open unit of work it
    joins that transaction.

    The state change must make a claimed row stop matching ``where`` (for example
    ``status = 'PENDING'`` -> ``'CLAIMED'``), or the same row may be claimed again later.

    With ``lease`` (a :class:`~dblayer.core.leases.Lease`) the claim also records
    ``worker`` as the rows' holder and ends their lease ``lease_seconds`` from now on the
    database's clock, and copies the columns the lease restores (see ``requeue_expired``).
    """
    _check_limit(limit)
    table = _table(table)
    checked = _check_values(table, values)
    if lease is not None or worker is not None or lease_seconds is not None:
        checked = leased_values(db, table, checked, lease, worker, lease_seconds)
    where_list = _clauses(where, "where")
    order_list = _clauses(order_by, "order_by")
    if limit == 0:
        return []
    return db.run(_claim, table, checked, where_list, order_list, limit, db.facts)


# -- prepared claims --------------------------------------------------------------------------

# The bind parameters a prepared claim sets itself; callers' names must not start so.
_OWN = "dblayer_"
_WORKER = "dblayer_worker"
_LEASE_SECONDS = "dblayer_lease_seconds"


def _bucket(n: int) -> int:
    """The IN-list length used for ``n`` ids: the next power of two, so that a claim needs a
    handful of compiled statements however its batches vary (the rest repeats the last id)."""
    return 1 << (n - 1).bit_length()


def _typed(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each untyped bind parameter given its column's type (as a plain
    value is), and no caller's parameter named like the claim's own."""
    typed = {}
    for name, value in values.items():
        if isinstance(value, sa.BindParameter):
            if value.key.startswith(_OWN):
                raise InvalidQuery(
                    f"parameter names starting {_OWN!r} are the claim's own: {value.key!r}"
                )
            if value.type._isnull:
                value = sa.bindparam(value.key, type_=table.c[name].type)
        typed[name] = value
    return typed


_IN_OPERATORS = {operators.in_op: True, operators.not_in_op: False}


def _fixed_in_lists(clause: Any) -> Any:
    """``clause`` with each IN list of given values as one bound parameter per value: a
    prepared statement's text cannot expand a list when it runs."""

    def replace(element: Any) -> Any:
        positive = _IN_OPERATORS.get(getattr(element, "operator", None))
        right = getattr(element, "right", None)
        if positive is None or not isinstance(right, sa.BindParameter) or not right.expanding:
            return None
        if right.required or right.callable is not None or isinstance(right.type, sa.TupleType):
            raise InvalidQuery(
                f"a prepared claim takes IN lists of fixed values only, not {right.key!r}"
            )
        binds = [sa.bindparam(None, value, type_=right.type) for value in right.value]
        if not binds:  # as SQLAlchemy's empty IN: matches nothing (NOT IN: everything)
            return sa.false() if positive else sa.true()
        return element.left.in_(binds) if positive else element.left.not_in(binds)

    return visitors.replacement_traverse(clause, {}, replace)


class _ClaimPlan:
    """A PreparedClaim's statements for one backend, compiled on first use."""

    def __init__(self, claim: PreparedClaim, facts: DialectFacts) -> None:
        self.claim = claim
        self.values = claim._values_for(facts)
        self.facts = facts
        # A checked int written into the text, as fetch_query does (PostgreSQL's generic
        # plan for a prepared "LIMIT $n" can be much slower than for the number).
        limit = (
            None if claim.limit is None else sa.literal_column(str(int(claim.limit)), sa.BigInteger)
        )
        picked = _candidates(claim.pk, claim.where, claim.order_by, limit, facts, True)
        self.single: PreparedQuery | None = None
        self.candidates: PreparedQuery | None = None
        if facts.update_returning and not claim.order_by:
            # The rows come back in no particular order, as the select picks them then.
            # Not correlated: the subquery reads the table itself, not the updated row.
            stmt = self._update(claim.pk.in_(picked.correlate(None)))
            self.single = PreparedQuery(stmt.returning(*claim.returning))
        else:
            self.candidates = PreparedQuery(picked)
        self._by_ids: dict[int, tuple[Any, PreparedQuery | None, tuple[str, ...]]] = {}

    def _update(self, where: ColumnElement[bool]) -> sa.Update:
        # In the given order: MariaDB/MySQL assign left to right (see _update above).
        return sa.update(self.claim.table).where(where).ordered_values(*self.values.items())

    def _statements_for(self, n: int) -> tuple[Any, PreparedQuery | None, tuple[str, ...]]:
        """The UPDATE (RETURNING, where the backend can; else with a SELECT after it) of
        ``n`` ids, with the names of their parameters."""
        found = self._by_ids.get(n)
        if found is None:
            pk = self.claim.pk
            names = tuple(f"{_OWN}id{i}" for i in range(n))
            in_ids = pk.in_([sa.bindparam(name, type_=pk.type) for name in names])
            update = self._update(in_ids)
            if self.facts.update_returning:
                found = (PreparedQuery(update.returning(*self.claim.returning)), None, names)
            else:
                read = PreparedQuery(sa.select(*self.claim.returning).where(in_ids))
                found = (PreparedWrite(update), read, names)
            found = self._by_ids.setdefault(n, found)
        return found

    def run(self, conn: Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The claim, in the unit of work of ``conn``."""
        if self.single is not None:
            return self.single.run_all(conn, params)
        assert self.candidates is not None
        key = self.claim.pk.key
        ids = [row[key] for row in self.candidates.run_all(conn, params)]
        if not ids:
            return []
        rows: dict[Any, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            size = _bucket(len(chunk))
            update, read, names = self._statements_for(size)
            args = dict(params)
            args.update(zip(names, chunk + [chunk[-1]] * (size - len(chunk)), strict=True))
            if read is None:
                claimed = update.run_all(conn, args)
            else:
                update.run(conn, **args)
                claimed = read.run_all(conn, args)
            rows.update((row[key], row) for row in claimed)
        return [rows[i] for i in ids if i in rows]


def _params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidQuery(f"params must be a dict of parameter: value, got {params!r}")
    return dict(params)


class PreparedClaim:
    """A claim built once and run many times, as a worker does: ``run`` sets ``values``
    on up to ``limit`` rows of ``table`` matching ``where`` (first by ``order_by``) and
    returns them, as ``claim()`` does, with its guarantees and in its order (none without
    ``order_by``).

    A value that changes from run to run is a ``sa.bindparam(name)`` (in ``values`` or
    ``where``) given to ``run`` in ``params``. Each backend's statements are compiled
    once and run on the driver's cursor. ``returning``: the columns of the rows returned
    (default: every column; with the primary key). ``lease``: as ``claim()``'s, its worker
    and length given to each ``run``.
    """

    def __init__(
        self,
        table: Any,
        values: Mapping[str, Any],
        *,
        where: Sequence[ColumnElement[bool]] = (),
        order_by: Sequence[Any] = (),
        limit: int | None = 1,
        lease: Lease | None = None,
        returning: Sequence[sa.Column[Any]] | None = None,
    ) -> None:  # noqa: D107 - see the class
        _check_limit(limit)
        self.table = _table(table)
        self.pk = _single_primary_key(self.table)
        self.values = _typed(self.table, _check_values(self.table, values))
        self.where = [_fixed_in_lists(clause) for clause in _clauses(where, "where")]
        self.order_by = _clauses(order_by, "order_by")
        self.limit = limit
        self.returning = tuple(self.table.c if returning is None else returning)
        if not any(c is self.pk for c in self.returning) or not all(
            isinstance(c, sa.Column) and c.table is self.table for c in self.returning
        ):
            raise InvalidQuery(
                f"returning must be columns of {self.table.name!r} including its primary key"
            )
        # Python-side onupdate defaults (an UPDATE through SQLAlchemy runs them): a scalar
        # goes into the SET values, a callable is called on each run.
        self._stamps: list[tuple[str, Callable[[Any], Any]]] = []
        for column in self.table.c:
            default = column.onupdate
            if default is None or column.key in self.values:
                continue
            if default.is_scalar:
                self.values[column.key] = default.arg
            elif default.is_callable:
                if inspect.signature(default.arg).parameters:  # wants SQLAlchemy's context
                    raise InvalidQuery(
                        f"a prepared claim cannot run the onupdate of {column.key!r}, which "
                        "takes an execution context; use claim()"
                    )
                name = f"{_OWN}onupdate{len(self._stamps)}"
                self.values[column.key] = sa.bindparam(name, type_=column.type)
                self._stamps.append((name, default.arg))
        self._lease: Any = None
        if lease is not None:
            self._lease = claim_lease_columns(self.table, lease, self.values)
            self._checks = (check_worker, check_lease_seconds)
        self._plans: dict[DialectFacts, _ClaimPlan] = {}
        self._last: tuple[Any, Any] = (None, None)  # the facts and plan of the last run

    def _values_for(self, facts: DialectFacts) -> dict[str, Any]:
        """The SET values on ``facts``' backend: with the lease's, on the database's clock."""
        if self._lease is None:
            return self.values
        worker = sa.bindparam(_WORKER, type_=self._lease.worker.type)
        expires = clock(facts.backend) + sa.bindparam(_LEASE_SECONDS, type_=sa.Double())
        return leased(self._lease, self.values, worker, expires)

    def _plan_for(self, facts: DialectFacts) -> _ClaimPlan:
        try:
            plan = _ClaimPlan(self, facts)
        except sa.exc.SQLAlchemyError as e:
            raise translate(e) from e
        return self._plans.setdefault(facts, plan)

    def run(
        self,
        db: Database,
        params: Mapping[str, Any] | None = None,
        *,
        worker: str | None = None,
        lease_seconds: float | None = None,
    ) -> list[dict[str, Any]]:
        """Claim with these values of the parameters: the rows, as they are after the update.
        Inside an open unit of work it joins that transaction."""
        args = _params(params)
        for name, stamp in self._stamps:
            args[name] = stamp(None)
        if self._lease is not None:
            check_worker, check_lease_seconds = self._checks
            args[_WORKER] = check_worker(worker)
            args[_LEASE_SECONDS] = check_lease_seconds(lease_seconds)
        elif worker is not None or lease_seconds is not None:
            raise InvalidQuery("worker and lease_seconds go with a lease (lease=Lease(...))")
        if self.limit == 0:
            return []
        facts = db.facts
        # By identity first: hashing the facts (a frozen dataclass) costs more than a claim's
        # own Python work. A Database keeps its facts object.
        last = self._last
        plan = last[1] if last[0] is facts else self._plans.get(facts) or self._plan_for(facts)
        self._last = (facts, plan)
        return db.run(plan.run, args)


# At most this many query shapes a QueryClaims keeps prepared; the oldest goes first.
_SHAPES_MAX = 64


class QueryClaims:
    """Claims on ``table`` chosen by dict queries (``{"filters", "order_by", "limit"}``, see
    :mod:`dblayer.core.query`; no offset): ``claim(db, query)`` takes up to ``limit`` rows
    matching the query (None: every one) and ``where``, sets ``values`` and returns them.

    It keeps a PreparedClaim per shape of query (fields, operators, the length of IN
    lists, order and limit), so a worker's loop checks its query and binds its values,
    and builds no SQL. ``allowed_fields`` and ``transform_arg`` are fetch_query's;
    ``values``, ``lease`` and ``returning`` are PreparedClaim's.
    """

    def __init__(
        self,
        table: Any,
        values: Mapping[str, Any],
        *,
        where: Sequence[ColumnElement[bool]] = (),
        lease: Lease | None = None,
        returning: Sequence[sa.Column[Any]] | None = None,
        allowed_fields: Collection[str] | None = None,
        transform_arg: Callable[[str, str, Any], Any] | None = None,
    ) -> None:  # noqa: D107 - see the class
        self.table = _table(table)
        self.allowed_fields = allowed_fields
        self.transform_arg = transform_arg
        self._values = values
        self._where = _clauses(where, "where")
        self._lease = lease
        self._returning = returning
        # Built here only to check the arguments now, not at the first claim.
        PreparedClaim(self.table, values, where=self._where, lease=lease, returning=returning)
        self._plans: dict[Hashable, PreparedClaim] = {}
        self._lock = threading.Lock()

    def _prepare(self, key: Hashable, checked: Any) -> PreparedClaim:
        names = itertools.count()

        def bind(col: Any, _value: Any) -> Any:
            return sa.bindparam(f"{_OWN}q{next(names)}", type_=col.type)

        compiled = checked.compile(bind)
        prepared = PreparedClaim(
            self.table,
            self._values,
            where=[*compiled.where, *self._where],
            order_by=compiled.order_by,
            limit=checked.limit,
            lease=self._lease,
            returning=self._returning,
        )
        with self._lock:
            if len(self._plans) >= _SHAPES_MAX:
                del self._plans[next(iter(self._plans))]
            return self._plans.setdefault(key, prepared)

    def claim(
        self,
        db: Database,
        query: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None = None,
        *,
        worker: str | None = None,
        lease_seconds: float | None = None,
    ) -> list[dict[str, Any]]:
        """Claim the rows ``query`` picks (``params``: the values of ``values``' bind
        parameters; ``worker`` and ``lease_seconds``: the lease's)."""
        checked = check_query(self.table, query, self.allowed_fields, self.transform_arg)
        if checked.offset:
            raise InvalidQuery("a claim takes no offset")
        key = query_shape(self.table, checked)
        prepared = self._plans.get(key) or self._prepare(key, checked)
        args = _params(params)
        values = [v for f in checked.filters for v in OPERATORS[f.op].values(f.arg)]
        args.update((f"{_OWN}q{i}", value) for i, value in enumerate(values))
        return prepared.run(db, args, worker=worker, lease_seconds=lease_seconds)

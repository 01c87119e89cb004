"""One table of a jobman DAO (jobman.dao.orm): a dict of field specs becomes a Table.

A field spec is ``{'type': ..., 'primary_key': bool, 'default': callable,
'auto_update': callable, 'unfilterable': bool}``. Types (any case): TEXT (VARCHAR(255),
compared byte for byte, when it is the primary key, so that MariaDB can index it), INTEGER (64-bit), FLOAT
(double precision), JSON (the core's portable JSON type) and BLOB.

Records are plain dicts. Saving fills in every schema field (a missing one is None;
keys that are not fields are ignored, as jobman did), calls ``default()`` for a None
value and ``auto_update(record=...)`` always, field by field in name order, and checks
each value against its field's type before any SQL is sent, so every backend accepts
and refuses the same records (bools are stored as 0/1, ints in FLOAT fields as floats).

JSON fields keep values that JSON can hold; object keys are stored sorted (PostgreSQL's
JSONB does not keep key order either). Filters on a JSON field take ``=``, ``!=``,
``IN``, ``NOT IN``, ``IS`` and ``IS NOT``: equality is exact JSON equality whatever the
key order, because SQLite and MariaDB compare the stored text with the argument
serialised the same way and PostgreSQL compares JSONB values. Numbers are the one
difference: ``1`` and ``1.0`` differ on SQLite and MariaDB but are equal on
PostgreSQL. A None JSON value is SQL NULL, matched by ``= None`` and ``IS None``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import sqlalchemy as sa

from dblayer.core import (
    ConflictError,
    DatabaseError,
    DBLayerError,
    InvalidQuery,
    InvalidValue,
    TransientError,
    compile_query,
    fetch_query,
    insert_many,
    translate,
    upsert,
    where_query,
)

from .fields import ALIASES, KEY_LENGTH, TYPES, Refused, to_key_text, to_text
from .records import Field, Prepare, record_preparer

SPEC_KEYS = ("type", "primary_key", "default", "auto_update", "unfilterable")
# Operators a JSON field takes; the others (ordering, LIKE) mean nothing portable for JSON.
JSON_OPERATORS = ("=", "==", "!=", "<>", "IN", "NOT IN", "IS", "IS NOT")
_LIKE = ("LIKE", "NOT LIKE")
_LISTS = (list, tuple, set, frozenset)
_TEXT_ARGS = frozenset((str, type(None)))


def _kind(field: str, spec: Any) -> str:
    """The normalised type name of a field spec, after checking the spec."""
    if not isinstance(field, str) or not field:
        raise InvalidValue(f"field names must be non-empty strings, got {field!r}")
    if not isinstance(spec, Mapping):
        raise InvalidValue(f"field {field!r}: a spec must be a dict, got {spec!r}")
    extra = sorted(set(spec) - set(SPEC_KEYS), key=str)
    if extra:
        raise InvalidValue(
            f"field {field!r}: unknown spec keys {extra}; allowed: {', '.join(SPEC_KEYS)}"
        )
    for hook in ("default", "auto_update"):
        if spec.get(hook) is not None and not callable(spec[hook]):
            raise InvalidValue(f"field {field!r}: {hook} must be callable")
    name = spec.get("type")
    kind = name.upper() if isinstance(name, str) else None
    kind = ALIASES.get(kind, kind)
    if kind not in TYPES:
        allowed = ", ".join([*TYPES, *ALIASES])
        raise InvalidValue(f"field {field!r}: unknown type {name!r}; allowed: {allowed}")
    return kind


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ORM:
    """The table of one record type: create it, save, query and update its records."""

    class InsertError(DatabaseError):
        """Saving records failed in the database (other than a key collision)."""

    class IntegrityError(ConflictError):
        """A record's key exists already (saved with ``replace=False``)."""

    class UpdateError(DatabaseError):
        """An UPDATE failed in the database."""

    def __init__(
        self,
        name: str | None = None,
        fields: Mapping[str, Mapping[str, Any]] | None = None,
        json: Any = json,
        table_prefix: str | None = None,
        logger: Any = None,
    ) -> None:
        """Build the Table ``table_prefix + name`` from ``fields``; ``json`` is kept for
        compatibility (the JSON column type does the serialising)."""
        if not isinstance(name, str) or not name:
            raise InvalidValue(f"an ORM needs a name, got {name!r}")
        if table_prefix is not None and not isinstance(table_prefix, str):
            raise InvalidValue(f"table_prefix must be a string, got {table_prefix!r}")
        if not isinstance(fields, Mapping) or not fields:
            raise InvalidValue(f"ORM {name!r} needs a dict of field specs, got {fields!r}")
        self.name = name
        self.json = json
        self.table_prefix = table_prefix
        self.logger = logger or logging
        kinds = {field: _kind(field, spec) for field, spec in fields.items()}
        self.fields = {field: dict(spec) for field, spec in fields.items()}
        self._kinds = kinds
        self._keys = [f for f, spec in self.fields.items() if spec.get("primary_key")]
        self._converters = {
            f: (to_key_text if f in self._keys and kind == "TEXT" else TYPES[kind][2])
            for f, kind in kinds.items()
        }
        self._names = tuple(self.fields)
        self._filterable = tuple(
            f for f, spec in self.fields.items() if not spec.get("unfilterable")
        )
        columns = [
            sa.Column(
                f,
                TYPES[kind][1 if f in self._keys else 0](),
                primary_key=f in self._keys,
                autoincrement=False,
            )
            for f, kind in kinds.items()
        ]
        self._table = sa.Table(self.table_name, sa.MetaData(), *columns)
        # The table records are read from and written to: the fields' columns only (the
        # same Table until add_columns gives the stored table more).
        self._records = self._table

    @property
    def table_name(self) -> str:
        """The table's name: ``table_prefix + name``."""
        return (self.table_prefix or "") + self.name

    @property
    def table(self) -> sa.Table:
        """The SQLAlchemy Table (``str(orm.table)`` is its name), with every column it stores."""
        return self._table

    def add_columns(self, *columns: sa.Column[Any]) -> None:
        """Store ``columns`` in the table besides the fields: records neither show nor set
        them, and saving a record leaves them as they are (a job's lease, for example)."""
        taken = [c.name for c in columns if c.name in self._table.c]
        if taken:
            raise InvalidValue(
                f"{self.name}: {', '.join(taken)} cannot be fields: the table keeps its own "
                "columns under those names"
            )
        if self._records is self._table:
            self._records = self._table.to_metadata(sa.MetaData())
        for column in columns:
            self._table.append_column(column)

    def create_table(self, connection: sa.Connection | None = None) -> None:
        """Create the table on ``connection`` unless it exists, and its missing indexes (an
        existing table is not otherwise altered)."""
        try:
            self._table.create(connection, checkfirst=True)
            for index in self._table.indexes:
                index.create(connection, checkfirst=True)
        except sa.exc.SQLAlchemyError as e:
            raise translate(e) from e

    def field_kind(self, field: str) -> str | None:
        """The normalised type name of ``field`` (TEXT, INTEGER, FLOAT, JSON, BLOB), or None."""
        return self._kinds.get(field)

    def add_index(self, field: str) -> None:
        """Index ``field`` (``create_table`` creates the index, on an existing table too)."""
        self._known(field)
        name = f"ix_{self.table_name}_{field}"
        if len(name) > 60:  # PostgreSQL cuts names at 63 bytes, MariaDB refuses past 64
            name = f"ix_{hashlib.sha1(name.encode()).hexdigest()[:20]}_{field[:30]}"
        # MariaDB indexes a TEXT column by a prefix only.
        length = {"mysql_length": KEY_LENGTH} if self._kinds[field] == "TEXT" else {}
        sa.Index(name, self._table.c[field], **length)

    # -- records --------------------------------------------------------------------------

    def prepare_records(self, objs: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        """The rows to store for ``objs``: every field, defaults and auto_update applied, checked."""
        return self.prepare_rows(objs)[0]

    def prepare_rows(
        self, objs: Iterable[Mapping[str, Any]] | None
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
        """``prepare_records(objs)`` and, for ``insert_rows``, each record's values in field
        order (JSON as its text)."""
        if (
            objs is None
            or isinstance(objs, (Mapping, str, bytes))
            or not isinstance(objs, Iterable)
        ):
            raise InvalidValue(f"expected a list of {self.name} dicts, got {type(objs).__name__}")
        return self._prepare(objs)

    @functools.cached_property
    def _prepare(self) -> Prepare:
        fields = [
            Field(
                f,
                self._kinds[f],
                f in self._keys,
                self._converters[f],
                spec.get("default"),
                spec.get("auto_update"),
            )
            for f, spec in self.fields.items()
        ]
        return record_preparer(fields, self._not_a_record, self._raise_refusal)

    def _not_a_record(self, obj: Any) -> NoReturn:
        raise InvalidValue(f"a {self.name} must be a dict, got {_short(obj)}")

    def _raise_refusal(self, record: dict[str, Any]) -> NoReturn:
        """Raise InvalidValue for the first field of ``record`` whose value is refused."""
        for field in self._names:
            self.convert(field, record[field])
        raise InvalidValue(f"a {self.name} was refused: {_short(record)}")

    def convert(self, field: str, value: Any) -> Any:
        """``value`` as ``field`` stores it, else InvalidValue naming what the field takes."""
        if value is None:
            if field in self._keys:
                raise InvalidValue(
                    f"{self.name} field {field!r} is the primary key: it needs a value"
                )
            return None
        try:
            return self._converters[field](value)
        except Refused as e:
            raise self._refused(field, value, e) from None

    def _refused(self, field: str, value: Any, reason: Refused) -> InvalidValue:
        return InvalidValue(f"{self.name} field {field!r} takes {reason}, got {_short(value)}")

    def insert_records(
        self, connection: sa.Connection, records: list[dict[str, Any]], replace: bool = True
    ) -> None:
        """INSERT prepared records in one executemany; ``replace`` overwrites existing keys."""
        self._insert(connection, records, replace)

    def insert_rows(
        self, connection: sa.Connection, rows: list[tuple[Any, ...]], replace: bool = True
    ) -> None:
        """``insert_records`` of the rows ``prepare_rows`` made."""
        self._insert(connection, rows, replace, columns=self._names, json_text=True)

    def _insert(
        self, connection: sa.Connection, rows: list[Any], replace: bool, **values: Any
    ) -> None:
        try:
            if replace:
                upsert(connection, self._records, rows, **values)
            else:
                insert_many(connection, self._records, rows, **values)
        except (DBLayerError, sa.exc.SQLAlchemyError) as e:
            self._fail(e, self.InsertError)

    def _fail(self, e: BaseException, kind: type[DBLayerError]) -> NoReturn:
        """Raise ``kind`` for a failed write; bad input and transient errors pass as they are
        (a transient one so that the unit of work can be replayed), a key collision on
        insert as IntegrityError."""
        error = translate(e)
        if isinstance(error, (InvalidValue, InvalidQuery, TransientError)):
            if error is e:
                raise e
            raise error from e
        if isinstance(error, ConflictError) and kind is self.InsertError:
            raise self.IntegrityError(
                str(error), constraint=error.constraint, columns=error.columns
            ) from error
        raise kind(str(error)) from error

    def save_objects(
        self, objs: Iterable[Mapping[str, Any]], connection: sa.Connection, replace: bool = True
    ) -> list[dict[str, Any]]:
        """Save ``objs`` on ``connection`` and return them as stored."""
        records, rows = self.prepare_rows(objs)
        self.insert_rows(connection, rows, replace)
        return records

    def save_object(
        self,
        obj: Mapping[str, Any] | None = None,
        connection: sa.Connection | None = None,
        replace: bool = True,
    ) -> dict[str, Any]:
        """Save one record on ``connection`` and return it as stored."""
        return self.save_objects([obj], connection, replace)[0]

    def execute_insert_or_replace(
        self,
        fields: list[str] | None = None,
        values: list[Any] | None = None,
        replace: bool | None = None,
        connection: sa.Connection | None = None,
    ) -> None:
        """INSERT (or, with ``replace``, overwrite) one row given as field names and values."""
        if not isinstance(fields, (list, tuple)) or not isinstance(values, (list, tuple)):
            raise InvalidValue("fields and values must be lists")
        if len(fields) != len(values):
            raise InvalidValue(f"{len(fields)} fields but {len(values)} values")
        row = {f: self.convert(f, v) for f, v in zip(fields, values, strict=True) if self._known(f)}
        self.insert_records(connection, [row], bool(replace))

    def _known(self, field: Any) -> bool:
        if field not in self.fields:
            raise InvalidQuery(f"unknown field {field!r}; allowed: {', '.join(self.fields)}")
        return True

    # -- queries --------------------------------------------------------------------------

    def compile(self, query: Mapping[str, Any] | None) -> Any:
        """Check a query dict and compile it (filters, order_by, limit) for this table."""
        return compile_query(
            self._table, query, allowed_fields=self._filterable, transform_arg=self._query_arg
        )

    def _query_arg(self, field: str, op: str, arg: Any) -> Any:
        """A filter's argument as the field stores it; refuses operators a field cannot take."""
        kind = self._kinds[field]
        if kind == "JSON" and op not in JSON_OPERATORS:
            raise InvalidQuery(
                f"JSON field {field!r} takes only {', '.join(JSON_OPERATORS)}; got {op!r}"
            )
        if op in _LIKE:
            if kind != "TEXT":
                raise InvalidQuery(f"{op} needs a TEXT field; {field!r} is {kind}")
            return arg
        if op in ("IS", "IS NOT"):
            return arg  # the core checks it (None only, here)
        if op in ("IN", "NOT IN", "BETWEEN") and isinstance(arg, _LISTS):
            return [self._query_value(field, op, value) for value in arg]
        return self._query_value(field, op, arg)

    def _query_value(self, field: str, op: str, value: Any) -> Any:
        if value is None:
            return None
        convert = to_text if self._kinds[field] == "TEXT" else self._converters[field]
        try:
            return convert(value)
        except Refused as e:
            raise InvalidQuery(
                f"filter {field!r} {op}: {field!r} takes {e}, got {_short(value)}"
            ) from None

    def select(self, query: Mapping[str, Any] | None = None) -> sa.Select[Any]:
        """The SELECT of the records matching ``query``."""
        return self.compile(query).apply(sa.select(*(self._table.c[f] for f in self.fields)))

    def fetch(
        self, connection: sa.Connection, query: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The records matching ``query`` (None: all) as dicts with every field, through a
        plan the core compiles once per query shape and runs on the driver's cursor."""
        # Without transform_arg the core checks a query's fields and operators once per
        # spelling; it is needed only where it could change or refuse an argument.
        transform = self._query_arg if self._needs_transform(query) else None
        return fetch_query(
            connection,
            self._records,
            query,
            allowed_fields=self._filterable,
            transform_arg=transform,
        )

    def _needs_transform(self, query: Any) -> bool:
        """False when every filter is on a TEXT field with a ``str`` or None argument, which
        ``_query_arg`` passes unchanged whatever the operator."""
        if type(query) is not dict:
            return query is not None
        filters = query.get("filters")
        if filters is None:
            return False
        if type(filters) is not list:
            return True
        for spec in filters:
            if type(spec) is not dict:
                return True
            field = spec.get("field")
            if type(field) is not str or self._kinds.get(field) != "TEXT":
                return True
            if type(spec.get("arg")) not in _TEXT_ARGS:
                return True
        return False

    def query_objects(
        self, query: Mapping[str, Any] | None = None, connection: sa.Connection | None = None
    ) -> list[dict[str, Any]]:
        """The records matching ``query`` (None: all), as dicts with every field."""
        return self.fetch(connection, query)

    def update_statement(
        self, updates: Mapping[str, Any] | None, query: Mapping[str, Any] | None
    ) -> sa.Update:
        """The checked UPDATE setting ``updates`` on the records matching ``query``."""
        if query is None:
            raise InvalidQuery("an update needs a query; give {} to update every record")
        if not isinstance(updates, Mapping) or not updates:
            raise InvalidQuery(f"updates must be a non-empty dict of field: value, got {updates!r}")
        values = {f: self.convert(f, v) for f, v in updates.items() if self._known(f)}
        where = where_query(
            self._records, query, allowed_fields=self._filterable, transform_arg=self._query_arg
        )
        return sa.update(self._records).where(*where).values(values)

    def update_objects(
        self,
        updates: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        connection: sa.Connection | None = None,
    ) -> dict[str, int]:
        """Set ``updates`` on the records matching ``query``; ``{'rowcount': n}`` (matched rows)."""
        stmt = self.update_statement(updates, query)
        try:
            return {"rowcount": connection.execute(stmt).rowcount}
        except (DBLayerError, sa.exc.SQLAlchemyError) as e:
            self._fail(e, self.UpdateError)

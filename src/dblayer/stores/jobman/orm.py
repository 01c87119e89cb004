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

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

import sqlalchemy as sa

from dblayer.core import (
    JSON,
    ConflictError,
    DatabaseError,
    DBLayerError,
    ExactString,
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

KEY_LENGTH = 255
SPEC_KEYS = ("type", "primary_key", "default", "auto_update", "unfilterable")
# Operators a JSON field takes; the others (ordering, LIKE) mean nothing portable for JSON.
JSON_OPERATORS = ("=", "==", "!=", "<>", "IN", "NOT IN", "IS", "IS NOT")
_LIKE = ("LIKE", "NOT LIKE")
_LISTS = (list, tuple, set, frozenset)
_INT_RANGE = (-(2**63), 2**63 - 1)


class _Refused(Exception):
    """A value does not fit its field; the message says what the field takes."""


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise _Refused("a string")


def _key_text(value: Any) -> str:
    if type(value) is not str:
        value = _text(value)
    if len(value) > KEY_LENGTH:
        raise _Refused(f"a string of at most {KEY_LENGTH} characters")
    return value


def _integer(value: Any) -> int:
    if type(value) is not int:
        if not isinstance(value, int):  # bools are ints: stored as 0 and 1
            raise _Refused("an integer")
        value = int(value)
    if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        raise _Refused("a 64-bit integer")
    return value


def _float(value: Any) -> float:
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise _Refused("a finite number") from None
        if math.isfinite(number):
            return number
    raise _Refused("a finite number")


def _blob(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise _Refused("bytes")


def _json_key(key: Any) -> str:
    # The names json.dumps gives non-string keys.
    if isinstance(key, str):
        return str.__str__(key)
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    if isinstance(key, int):
        return str(int(key))
    if isinstance(key, float) and math.isfinite(key):
        return repr(float(key))
    raise _Refused("JSON (object keys must be strings, numbers, booleans or None)")


# Values JSON gives back as they are (a float only when finite: checked where it is met).
_SCALARS = frozenset((str, int, bool, type(None)))
_STR_ONLY = frozenset((str,))


def _json_value(value: Any) -> Any:
    """``value`` as JSON will give it back, with object keys sorted."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    # The common cases, fast: scalar members are taken as they are, without a call.
    if kind is dict and _STR_ONLY.issuperset(map(type, value)):
        return {k: v if type(v := value[k]) in _SCALARS else _json_value(v) for k in sorted(value)}
    if kind is list:
        return [v if type(v) in _SCALARS else _json_value(v) for v in value]
    if isinstance(value, Mapping):
        pairs = {_json_key(k): _json_value(v) for k, v in value.items()}
        return {k: pairs[k] for k in sorted(pairs)}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        raise _Refused("JSON (NaN and Infinity are not JSON)")
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str.__str__(value)
    raise _Refused(f"JSON (dict, list, string, number, bool or None; not {kind.__name__})")


def _json_field(value: Any) -> Any:
    try:
        return _json_value(value)
    except RecursionError:
        raise _Refused("JSON nested less deeply") from None


def _key_type() -> Any:
    # A key compares byte for byte on every backend (MariaDB's default collation would
    # make "a" and "A" one key, and an upsert of one overwrite the other).
    return ExactString(KEY_LENGTH)


def _integer_type() -> Any:
    # 64-bit like SQLite's INTEGER; SQLite itself keeps its own INTEGER.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class _Double(sa.TypeDecorator):  # type: ignore[type-arg]
    """FLOAT(53): double precision, so a time.time() timestamp comes back exactly as saved.

    Every driver returns a double as a float already, so reads convert nothing. (Float's
    own result processor on psycopg needs the column's type code, which core's prepared
    queries do not pass: it raises "Unknown PG numeric type".)
    """

    impl = sa.Float
    cache_ok = True

    def result_processor(self, dialect: Any, coltype: Any) -> None:
        return None


def _float_type() -> Any:
    return _Double(53)


# type name -> (column type of a plain field, column type of a primary key, converter)
_TYPES: dict[str, tuple[Callable[[], Any], Callable[[], Any], Callable[[Any], Any]]] = {
    "TEXT": (sa.Text, _key_type, _text),
    "INTEGER": (_integer_type, _integer_type, _integer),
    "FLOAT": (_float_type, _float_type, _float),
    "JSON": (JSON, JSON, _json_field),
    "BLOB": (sa.LargeBinary, sa.LargeBinary, _blob),
}
# Per type, the Python types whose values a field stores unchanged (None: SQL NULL).
_NONE = type(None)
_AS_IS = {
    "TEXT": frozenset((str, _NONE)),
    "INTEGER": frozenset((_NONE,)),
    "FLOAT": frozenset((_NONE,)),
    "JSON": _SCALARS,
    "BLOB": frozenset((bytes, _NONE)),
}
_TEXT_ARGS = frozenset((str, _NONE))
_ALIASES = {"INT": "INTEGER", "REAL": "FLOAT", "DOUBLE": "FLOAT"}


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
    kind = _ALIASES.get(kind, kind)
    if kind not in _TYPES:
        allowed = ", ".join([*_TYPES, *_ALIASES])
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
        self._hooks = [
            (f, self.fields[f].get("default"), self.fields[f].get("auto_update"))
            for f in sorted(self.fields)
            if self.fields[f].get("default") or self.fields[f].get("auto_update")
        ]
        self._converters = {
            f: (_key_text if f in self._keys and kind == "TEXT" else _TYPES[kind][2])
            for f, kind in kinds.items()
        }
        self._names = tuple(self.fields)
        # Per field, in order: name, converter, and the value types stored unchanged
        # (saving skips the converter call for them). A key always goes to the converter
        # (None is refused there).
        self._plan = tuple(
            (f, self._converters[f], frozenset() if f in self._keys else _AS_IS[kind])
            for f, kind in kinds.items()
        )
        self._filterable = tuple(
            f for f, spec in self.fields.items() if not spec.get("unfilterable")
        )
        columns = [
            sa.Column(
                f,
                _TYPES[kind][1 if f in self._keys else 0](),
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
        if (
            objs is None
            or isinstance(objs, (Mapping, str, bytes))
            or not isinstance(objs, Iterable)
        ):
            raise InvalidValue(f"expected a list of {self.name} dicts, got {type(objs).__name__}")
        return [self._record(obj) for obj in objs]

    def _record(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise InvalidValue(f"a {self.name} must be a dict, got {_short(obj)}")
        get = obj.get
        record = {field: get(field) for field in self._names}
        for field, default, auto_update in self._hooks:
            if default is not None and record[field] is None:
                record[field] = default()
            if auto_update is not None:
                record[field] = auto_update(record=record)
        # The hot loop of a bulk save: converters are called directly, and not at all for
        # a value of a type the field stores unchanged.
        for field, convert, as_is in self._plan:
            value = record[field]
            if type(value) not in as_is:
                if value is None:
                    self.convert(field, None)  # a key: raises
                try:
                    record[field] = convert(value)
                except _Refused as e:
                    raise self._refused(field, value, e) from None
        return record

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
        except _Refused as e:
            raise self._refused(field, value, e) from None

    def _refused(self, field: str, value: Any, reason: _Refused) -> InvalidValue:
        return InvalidValue(f"{self.name} field {field!r} takes {reason}, got {_short(value)}")

    def insert_records(
        self, connection: sa.Connection, records: list[dict[str, Any]], replace: bool = True
    ) -> None:
        """INSERT prepared records in one executemany; ``replace`` overwrites existing keys."""
        try:
            if replace:
                upsert(connection, self._records, records)
            else:
                insert_many(connection, self._records, records)
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
        records = self.prepare_records(objs)
        self.insert_records(connection, records, replace)
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
        convert = _text if self._kinds[field] == "TEXT" else self._converters[field]
        try:
            return convert(value)
        except _Refused as e:
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

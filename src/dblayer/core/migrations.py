"""Schema migrations with Alembic: one migration history and one version table per store.

A store's migrations live in a directory of their own (``env.py`` + ``versions/``) and
record their revision in ``alembic_version_<store>``, so several stores share one
database. Core knows no store: stores are registered here as :class:`StoreMigrations`
(the package ``dblayer.migrations`` registers the library's own stores the first time a
store is asked for by name).

    from dblayer.core import migrations
    migrations.upgrade(db, "nova")            # to head
    migrations.current(db, "nova")            # -> "0001" or None
    migrations.check(db, "nova")              # -> [] when the database matches the models
    migrations.downgrade(db, "nova", "base")  # drops every table of the store
    migrations.adopt(db, "nanny")             # an original application's database -> head

A store whose tables depend on the caller's options (jobman's table prefix and extra
fields) reads them in its migrations through :func:`params`; callers pass them as
keyword arguments (``upgrade(db, "jobman", table_prefix="q_")``) and Alembic's command
line as ``-x table_prefix=q_``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, MetaData
from sqlalchemy.dialects import mysql

from .database import Database
from .errors import DatabaseError, DBLayerError, InvalidValue, translate
from .id_counters import advance_id_counters
from .models import EXACT_TEXT
from .types import exact_collation

# The package whose import registers the library's own stores.
DEFAULT_PROVIDER = "dblayer.migrations"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreMigrations:
    """Where a store's migrations live and which metadata they must produce.

    ``metadata(params)`` returns the store's MetaData (``params`` are the caller's
    options, empty for stores whose schema is fixed). A store whose tables depend on
    its options names its version table after them with ``version_table_for(params)``,
    so that several sets of its tables (several table prefixes) share a database too.
    """

    name: str
    script_location: str
    metadata: Callable[[Mapping[str, Any]], MetaData]
    # Option names the store's migrations accept (anything else is refused).
    parameters: tuple[str, ...] = ()
    version_table: str = field(default="")
    version_table_for: Callable[[Mapping[str, Any]], str] | None = None
    # The schema of the store's original application, for adopt(): called with the
    # dialect's name and the options; None when the store has no original to adopt.
    original: Callable[[str, Mapping[str, Any]], Original] | None = None

    def __post_init__(self) -> None:
        if not self.version_table:
            object.__setattr__(self, "version_table", f"alembic_version_{self.name}")

    def version_table_name(self, params: Mapping[str, Any] | None = None) -> str:
        """The version table for the tables ``params`` describe."""
        if self.version_table_for is None:
            return self.version_table
        return self.version_table_for(params or {})


_registry: dict[str, StoreMigrations] = {}


def register(spec: StoreMigrations) -> StoreMigrations:
    """Register (or replace) a store's migrations."""
    _registry[spec.name] = spec
    return spec


def stores() -> list[str]:
    """Names of the stores with migrations."""
    _load_provider()
    return sorted(_registry)


def _load_provider() -> None:
    with contextlib.suppress(ImportError):  # the package ships with dblayer
        importlib.import_module(DEFAULT_PROVIDER)


def store_migrations(store: str | StoreMigrations) -> StoreMigrations:
    """The registered migrations of ``store`` (a name or a StoreMigrations)."""
    if isinstance(store, StoreMigrations):
        return store
    if store not in _registry:
        _load_provider()
    try:
        return _registry[store]
    except KeyError:
        raise InvalidValue(
            f"no migrations for store {store!r}; known stores: {', '.join(sorted(_registry))}"
        ) from None


# -- configuration -----------------------------------------------------------------------


def _check_params(spec: StoreMigrations, params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(spec.parameters))
    if unknown:
        allowed = ", ".join(spec.parameters) or "none"
        raise InvalidValue(
            f"store {spec.name!r} takes no migration option {', '.join(unknown)}; allowed: {allowed}"
        )
    return dict(params)


def store_metadata(
    store: str | StoreMigrations, params: Mapping[str, Any] | None = None
) -> MetaData:
    """The MetaData ``store``'s migrations produce for ``params`` (checked)."""
    spec = store_migrations(store)
    options = _check_params(spec, params or {})
    try:
        return spec.metadata(options)
    except DBLayerError:
        raise
    except (TypeError, ValueError) as e:
        raise InvalidValue(f"store {spec.name!r}: bad migration options {options!r}: {e}") from e


def alembic_config(
    store: str | StoreMigrations,
    connection: Connection | None = None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """An ``alembic.config.Config`` for ``store`` (running on ``connection`` when given)."""
    from alembic.config import Config

    spec = store_migrations(store)
    options = _check_params(spec, params or {})
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", spec.script_location)
    config.attributes["dblayer_store"] = spec
    config.attributes["dblayer_params"] = options
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _database(db_or_url: Database | str | sa.URL) -> tuple[Database, bool]:
    if isinstance(db_or_url, Database):
        return db_or_url, False
    return Database(db_or_url), True


@contextmanager
def _connection(
    db_or_url: Database | str | sa.URL, *, readonly: bool = False
) -> Iterator[Connection]:
    db, owned = _database(db_or_url)
    try:
        with db.transaction(readonly=readonly) as conn:
            yield conn
    finally:
        if owned:
            db.dispose()


def _alembic_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Alembic's and SQLAlchemy's errors become dblayer's."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from alembic.util import CommandError

        try:
            return fn(*args, **kwargs)
        except DBLayerError:
            raise
        except CommandError as e:
            raise InvalidValue(f"migration: {e}") from e
        except sa.exc.SQLAlchemyError as e:
            raise translate(e) from e
        except Exception as e:  # an error inside a migration script
            raise DatabaseError(f"migration failed: {type(e).__name__}: {e}") from e

    return wrapper


# -- running inside env.py ---------------------------------------------------------------


def run_env() -> None:
    """The body of every store's ``env.py``: run the migrations on the given connection
    (or on ``sqlalchemy.url`` from the Alembic config / ``-x url=...`` when run by the
    ``alembic`` command), with the store's version table and metadata."""
    from alembic import context

    config = context.config
    spec: StoreMigrations | None = config.attributes.get("dblayer_store")
    if spec is None:  # run by the alembic command line: the script directory names the store
        import os

        name = os.path.basename(os.path.normpath(config.get_main_option("script_location") or ""))
        spec = store_migrations(name)
        config.attributes["dblayer_store"] = spec
    options = params()
    metadata = store_metadata(spec, options)
    opts = {
        "target_metadata": metadata,
        "version_table": spec.version_table_name(options),
        "render_as_batch": True,
        "compare_type": compare_type,
        "include_name": _include_name(metadata),
    }
    connection = config.attributes.get("connection")
    if context.is_offline_mode():
        url = config.get_main_option("sqlalchemy.url") or context.get_x_argument(
            as_dictionary=True
        ).get("url")
        context.configure(url=url, literal_binds=True, **opts)
        with context.begin_transaction():
            context.run_migrations()
        return
    if connection is not None:
        context.configure(connection=connection, **opts)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or context.get_x_argument(
        as_dictionary=True
    ).get("url")
    if not url:
        raise InvalidValue("no database URL: set sqlalchemy.url or pass -x url=...")
    db = Database(url)
    try:
        with db.transaction() as conn:
            context.configure(connection=conn, **opts)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        db.dispose()


def _include_name(metadata: MetaData) -> Callable[..., bool]:
    """Autogenerate looks at the store's own tables only (others share the database)."""
    names = set(metadata.tables)

    def include_name(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
        if type_ == "table":
            return name in names
        return True

    return include_name


def compare_type(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_type: Any,
    metadata_type: Any,
) -> bool | None:
    """Alembic's type comparison, minus what a server only spells differently: MariaDB/MySQL
    store ``FLOAT(p)`` with p > 24 as DOUBLE. None lets Alembic decide."""
    if isinstance(metadata_type, sa.TypeDecorator):
        metadata_type = metadata_type.load_dialect_impl(context.dialect)
    if (
        context.dialect.name in ("mysql", "mariadb")
        and isinstance(inspected_type, mysql.DOUBLE)
        and isinstance(metadata_type, sa.Float)
        and (isinstance(metadata_type, sa.Double) or (metadata_type.precision or 0) > 24)
    ):
        return False
    return None


def params() -> dict[str, Any]:
    """Inside a migration: the caller's options for the store (``-x name=value`` included)."""
    from alembic import context

    config = context.config
    values: dict[str, Any] = dict(context.get_x_argument(as_dictionary=True))
    values.pop("url", None)
    values.update(config.attributes.get("dblayer_params") or {})
    return values


def exact_text() -> dict[str, str]:
    """Inside a migration: the table options that give a new table the binary collation
    on MariaDB/MySQL, as ``create_all`` does for a store's metadata (see ``new_metadata``);
    empty elsewhere. Use as ``op.create_table(name, *columns, **exact_text())``."""
    from alembic import context

    migration_context = context.get_context()
    metadata = migration_context.opts.get("target_metadata")
    if metadata is not None and not metadata.info.get(EXACT_TEXT):
        return {}
    dialect = migration_context.dialect
    if dialect.name not in ("mysql", "mariadb"):
        return {}
    return {
        f"{dialect.name}_charset": "utf8mb4",
        f"{dialect.name}_collate": exact_collation(dialect),
    }


# -- commands ----------------------------------------------------------------------------


@_alembic_errors
def upgrade(
    db_or_url: Database | str | sa.URL,
    store: str | StoreMigrations,
    revision: str = "head",
    **params: Any,
) -> str | None:
    """Upgrade ``store``'s schema to ``revision`` (default: head); return the new revision."""
    from alembic import command

    spec = store_migrations(store)
    with _connection(db_or_url) as conn:
        command.upgrade(alembic_config(spec, conn, params), revision)
        return _current(conn, spec, params)


@_alembic_errors
def downgrade(
    db_or_url: Database | str | sa.URL,
    store: str | StoreMigrations,
    revision: str,
    **params: Any,
) -> str | None:
    """Downgrade ``store``'s schema to ``revision`` ("base" drops every table of the
    store and its version table); return the new revision (None at base)."""
    from alembic import command

    spec = store_migrations(store)
    with _connection(db_or_url) as conn:
        command.downgrade(alembic_config(spec, conn, params), revision)
        return _drop_empty_version_table(conn, spec, params)


@_alembic_errors
def stamp(
    db_or_url: Database | str | sa.URL,
    store: str | StoreMigrations,
    revision: str = "head",
    **params: Any,
) -> str | None:
    """Record ``revision`` as ``store``'s current one without running migrations."""
    from alembic import command

    spec = store_migrations(store)
    with _connection(db_or_url) as conn:
        command.stamp(alembic_config(spec, conn, params), revision)
        return _drop_empty_version_table(conn, spec, params)


def _drop_empty_version_table(
    conn: Connection, spec: StoreMigrations, params: Mapping[str, Any]
) -> str | None:
    """The store's revision; at base (none) its version table goes too (Alembic leaves
    it behind, empty)."""
    revision = _current(conn, spec, params)
    if revision is None:
        name = conn.dialect.identifier_preparer.quote(spec.version_table_name(params))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    return revision


def _current(
    conn: Connection, store: str | StoreMigrations, params: Mapping[str, Any] | None = None
) -> str | None:
    from alembic.runtime.migration import MigrationContext

    spec = store_migrations(store)
    version_table = spec.version_table_name(_check_params(spec, params or {}))
    ctx = MigrationContext.configure(conn, opts={"version_table": version_table})
    heads = ctx.get_current_heads()
    return ",".join(heads) if heads else None


@_alembic_errors
def current(
    db_or_url: Database | str | sa.URL, store: str | StoreMigrations, **params: Any
) -> str | None:
    """``store``'s revision in the database, or None when it has none."""
    with _connection(db_or_url, readonly=True) as conn:
        return _current(conn, store, params)


@_alembic_errors
def heads(store: str | StoreMigrations) -> list[str]:
    """The head revision(s) of ``store``'s migrations."""
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(alembic_config(store)).get_heads())


@_alembic_errors
def history(store: str | StoreMigrations) -> list[dict[str, Any]]:
    """``store``'s revisions, newest first: ``{"revision", "down_revision", "doc"}``."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(store))
    return [
        {
            "revision": rev.revision,
            "down_revision": rev.down_revision,
            "doc": rev.doc,
        }
        for rev in script.walk_revisions()
    ]


def _comparison(conn: Connection, spec: StoreMigrations, options: Mapping[str, Any]) -> Any:
    """An Alembic MigrationContext comparing the database with ``spec``'s models."""
    from alembic.runtime.migration import MigrationContext

    metadata = store_metadata(spec, options)
    return MigrationContext.configure(
        conn,
        opts={
            "target_metadata": metadata,
            "version_table": spec.version_table_name(options),
            "compare_type": compare_type,
            "include_name": _include_name(metadata),
        },
    )


def _compare(conn: Connection, spec: StoreMigrations, options: Mapping[str, Any]) -> list[Any]:
    from alembic.autogenerate import compare_metadata

    ctx = _comparison(conn, spec, options)
    with redirect_stdout(io.StringIO()):
        return list(compare_metadata(ctx, ctx.opts["target_metadata"]))


@_alembic_errors
def check(
    db_or_url: Database | str | sa.URL, store: str | StoreMigrations, **params: Any
) -> list[Any]:
    """Alembic's autogenerate comparison of the database against ``store``'s models:
    the list of differences (empty when the schema matches), in
    ``alembic.autogenerate.compare_metadata``'s form (see :func:`describe`)."""
    spec = store_migrations(store)
    options = _check_params(spec, params)
    with _connection(db_or_url, readonly=True) as conn:
        return _compare(conn, spec, options)


def _type_name(type_: Any, dialect: Any = None) -> str:
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:  # a type this dialect cannot render (NullType): its class will do
        return type(type_).__name__


def describe(diff: Any) -> str:
    """One difference from :func:`check` in words ("missing column user.name")."""
    if isinstance(diff, list):
        return "; ".join(describe(d) for d in diff)
    kind = diff[0]
    side = "missing" if kind.startswith("add_") else "extra"
    if kind in ("add_table", "remove_table"):
        return f"{side} table {diff[1].name}"
    if kind in ("add_column", "remove_column"):
        return f"{side} column {diff[2]}.{diff[3].name}"
    if kind in ("add_index", "remove_index"):
        index = diff[1]
        columns = ", ".join(c.name for c in index.columns) or "?"
        return f"{side} index {index.name} on {index.table.name} ({columns})"
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        constraint = diff[1]
        what = "foreign key" if kind.endswith("_fk") else "constraint"
        columns = ", ".join(c.name for c in constraint.columns)
        return (
            f"{side} {what} {constraint.name or ''} on {constraint.table.name} ({columns})".replace(
                "  ", " "
            )
        )
    if kind.startswith("modify_"):
        _, _schema, table, column, _info, in_db, in_models = diff
        what = kind[len("modify_") :]
        if what == "type":
            in_db, in_models = _type_name(in_db), _type_name(in_models)
        return f"{what} of {table}.{column}: {in_db} in the database, {in_models} in the models"
    return " ".join(str(part) for part in diff)


# What add_missing may do: add tables and columns, nothing that changes or drops data.
_ADDITIONS = ("add_table", "add_column", "add_index")


def _flatten(diffs: list[Any]) -> list[tuple[Any, ...]]:
    flat: list[tuple[Any, ...]] = []
    for diff in diffs:
        # compare_metadata nests column modifications in lists.
        flat.extend(diff if isinstance(diff, list) else [diff])
    return flat


# What add_missing does about the differences that are not additions.
_OTHERS = ("refuse", "ignore")


@_alembic_errors
def add_missing(
    db_or_url: Database | str | sa.URL,
    store: str | StoreMigrations,
    *,
    others: str = "refuse",
    **params: Any,
) -> list[str]:
    """Add the tables, columns and indexes ``store``'s models declare and the database
    lacks (a store whose tables follow its options, like jobman's extra job fields);
    return what was added (``"add_column q_job.priority"``).

    Anything else the comparison finds (a changed type, a column the models no longer
    have) is never changed. With ``others="refuse"`` (the default) it is refused with
    InvalidValue, and nothing is changed; with ``others="ignore"`` the additions are made
    and the rest is left as it is (logged as a warning). A new column must be nullable or
    have a server default, since existing rows get it too.
    """
    from alembic.operations import Operations

    if others not in _OTHERS:
        raise InvalidValue(f"others must be one of {', '.join(map(repr, _OTHERS))}; got {others!r}")
    spec = store_migrations(store)
    options = _check_params(spec, params)
    with _connection(db_or_url) as conn:
        ctx = _comparison(conn, spec, options)
        diffs = _flatten(_compare(conn, spec, options))
        refused = [d for d in diffs if d[0] not in _ADDITIONS]
        if refused:
            text = "; ".join(describe(d) for d in refused)
            if others == "refuse":
                raise InvalidValue(
                    f"store {spec.name!r}: the database differs from the models in ways "
                    f"add_missing does not change: {text}"
                )
            log.warning(
                "store %r: add_missing leaves these differences as they are: %s", spec.name, text
            )
            diffs = [d for d in diffs if d[0] in _ADDITIONS]
        for diff in diffs:
            if diff[0] == "add_column" and not (diff[3].nullable or diff[3].server_default):
                raise InvalidValue(
                    f"store {spec.name!r}: new column {diff[2]}.{diff[3].name} is NOT NULL "
                    "without a server default; existing rows would have no value"
                )
        ops = Operations(ctx)
        done: list[str] = []
        for diff in diffs:
            kind = diff[0]
            if kind == "add_table":
                table = diff[1]
                table.create(conn)
                done.append(f"add_table {table.name}")
            elif kind == "add_column":
                _schema, table_name, column = diff[1], diff[2], diff[3]
                ops.add_column(table_name, column._copy())
                done.append(f"add_column {table_name}.{column.name}")
            else:
                index = diff[1]
                index.create(conn)
                done.append(f"add_index {index.name}")
        return done


# -- adopting a database the store's original application made ------------------------------

# Reflected column types by the kind of column an original declared (backends name and
# reflect one declaration differently: BOOLEAN is TINYINT(1) on MariaDB, JSON is LONGTEXT).
_FAMILIES: dict[str, tuple[type, ...]] = {
    "integer": (sa.Integer,),
    "boolean": (sa.Boolean, sa.Integer),
    "text": (sa.String,),
    "float": (sa.Float, sa.Numeric),
    "datetime": (sa.DateTime,),
    "json": (sa.JSON, sa.String),
    "uuid": (sa.Uuid, sa.String),
    "enum": (sa.Enum, sa.String),
    "blob": (sa.LargeBinary,),
}
# Where the original's tables wait while the store's own are created (renamed back if
# adopting fails where DDL is not transactional).
ADOPT_PREFIX = "_dblayer_adopt_"
_BATCH = 2000


@dataclass(frozen=True)
class OriginalTable:
    """A table of an original application's schema, as adopt() recognises and copies it.

    ``columns`` maps each column to its kind (a key of ``_FAMILIES``); the store's table of
    the same name gets the rows, column by column, through ``convert[column]`` (a function
    of the original's value) where given. Columns in ``optional`` may be absent (they are
    NULL then); columns in ``as_text`` are read as their text (JSON a driver would decode).
    """

    name: str
    columns: Mapping[str, str]
    optional: tuple[str, ...] = ()
    convert: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    as_text: tuple[str, ...] = ()


@dataclass(frozen=True)
class Original:
    """An original application's schema: its tables (parents first) and the revision of
    the store's migrations whose tables receive its rows."""

    description: str
    tables: tuple[OriginalTable, ...]
    revision: str = "0001"


class _Refused(Exception):
    """adopt() found a reason to change nothing."""


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _recognise(conn: Connection, original: Original, present: set[str]) -> list[str]:
    """What keeps the database from being ``original`` (empty: recognised)."""
    names = [t.name for t in original.tables]
    found = [n for n in names if n in present]
    if not found:
        return [f"none of its tables ({', '.join(names)}) is in the database"]
    problems = []
    missing_tables = [n for n in names if n not in present]
    if missing_tables:
        problems.append(f"tables missing: {', '.join(missing_tables)}")
    inspector = sa.inspect(conn)
    for table in original.tables:
        if table.name not in present:
            continue
        reflected = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        extra = sorted(set(reflected) - set(table.columns))
        missing = sorted(set(table.columns) - set(reflected) - set(table.optional))
        if extra:
            problems.append(f"{table.name} has columns it never had: {', '.join(extra)}")
        if missing:
            problems.append(f"{table.name} lacks columns: {', '.join(missing)}")
        for column, kind in table.columns.items():
            type_ = reflected.get(column)
            if type_ is not None and not isinstance(type_, _FAMILIES[kind]):
                problems.append(
                    f"{table.name}.{column} is {_type_name(type_, conn.dialect)}, not {kind}"
                )
    return problems


def _length(conn: Connection, column: Any) -> Any:
    # MariaDB/MySQL's LENGTH counts bytes; a VARCHAR(n) holds n characters.
    if conn.dialect.name in ("mysql", "mariadb"):
        return sa.func.char_length(column)
    return sa.func.length(column)


def _refusals(conn: Connection, original: Original, metadata: MetaData) -> list[str]:
    """Rows the store's tables could not keep as they are: NULL where the models say NOT
    NULL, text longer than a column holds, references to rows that do not exist."""
    problems: list[str] = []
    inspector = sa.inspect(conn)
    sources = {t.name: t for t in original.tables}
    reflected: dict[str, sa.Table] = {}
    for table in original.tables:
        names = {c["name"] for c in inspector.get_columns(table.name)}
        reflected[table.name] = sa.table(table.name, *[sa.column(n) for n in names])
    for table in original.tables:
        model = metadata.tables.get(table.name)
        source = reflected[table.name]
        if model is None:
            continue
        count = sa.select(sa.func.count()).select_from(source)
        for column in model.columns:
            if column.name not in source.c:
                continue
            value = source.c[column.name]
            if not column.nullable and column.server_default is None:
                n = conn.execute(count.where(value.is_(None))).scalar_one()
                if n:
                    problems.append(f"{table.name}.{column.name} is NULL in {n} rows")
            impl = (
                column.type.impl_instance
                if isinstance(column.type, sa.TypeDecorator)
                else column.type
            )
            length = getattr(impl, "length", None)
            if (
                isinstance(impl, sa.String)
                and not isinstance(impl, sa.Enum)  # its values are checked by the type
                and length
                and column.name not in table.as_text
            ):
                n = conn.execute(count.where(_length(conn, value) > length)).scalar_one()
                if n:
                    problems.append(
                        f"{table.name}.{column.name} holds more than {length} characters in {n} rows"
                    )
        for fk in model.foreign_key_constraints:
            parent_name = fk.referred_table.name
            if len(fk.columns) != 1 or parent_name not in sources:
                continue
            [child_column] = [c.name for c in fk.columns]
            [parent_column] = [e.column.name for e in fk.elements]
            parent = reflected[parent_name]
            if child_column not in source.c or parent_column not in parent.c:
                continue
            orphan = source.c[child_column]
            exists = sa.exists().where(parent.c[parent_column] == orphan)
            n = conn.execute(count.where(orphan.is_not(None), ~exists)).scalar_one()
            if n:
                problems.append(
                    f"{table.name}.{child_column} refers to no {parent_name} row in {n} rows"
                )
    return problems


def _rename_table(conn: Connection, old: str, new: str) -> None:
    conn.execute(sa.text(f"ALTER TABLE {_quote(conn, old)} RENAME TO {_quote(conn, new)}"))


def _serial_sequences(conn: Connection, table: str, columns: list[str]) -> list[tuple[str, str]]:
    """PostgreSQL: (column, sequence) of the columns of ``table`` a sequence feeds."""
    found = []
    for column in columns:
        sequence = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
            {"t": _quote(conn, table), "c": column},
        ).scalar()
        if sequence:
            found.append((column, sequence))
    return found


def _free_names(conn: Connection, table: str) -> list[tuple[str, dict[str, Any]]]:
    """Free the names a set-aside table's indexes and constraints hold, which the store's
    own tables may use: index names are per database on SQLite and PostgreSQL (constraint
    names too, through their indexes), foreign key names on MariaDB/MySQL. Returns the
    foreign keys dropped on MariaDB/MySQL (to put back if adopting fails)."""
    inspector = sa.inspect(conn)
    name = conn.dialect.name
    if name == "sqlite":  # named indexes only: a constraint's index is named after its table
        for index in inspector.get_indexes(table):
            if index["name"]:
                conn.execute(sa.text(f"DROP INDEX {_quote(conn, index['name'])}"))
    elif name == "postgresql":
        constraints = conn.execute(
            sa.text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"),
            {"t": _quote(conn, table)},
        ).scalars()
        for constraint in list(constraints):
            new = _quote(conn, (ADOPT_PREFIX + constraint)[:63])
            conn.execute(
                sa.text(
                    f"ALTER TABLE {_quote(conn, table)} RENAME CONSTRAINT "
                    f"{_quote(conn, constraint)} TO {new}"
                )
            )
        for index in inspector.get_indexes(table):
            if not index["name"].startswith(ADOPT_PREFIX):
                new = _quote(conn, (ADOPT_PREFIX + index["name"])[:63])
                conn.execute(sa.text(f"ALTER INDEX {_quote(conn, index['name'])} RENAME TO {new}"))
    elif name in ("mysql", "mariadb"):
        dropped = [(table, fk) for fk in inspector.get_foreign_keys(table) if fk.get("name")]
        for _table, fk in dropped:
            conn.execute(
                sa.text(
                    f"ALTER TABLE {_quote(conn, table)} DROP FOREIGN KEY {_quote(conn, fk['name'])}"
                )
            )
        return dropped
    return []


def _set_aside(
    conn: Connection,
    original: Original,
    metadata: MetaData,
    dropped: list[tuple[str, dict[str, Any]]],
) -> list[str]:
    """Rename the original's tables (and on PostgreSQL their sequences and the enum types
    the store's tables create) out of the way of the store's own, freeing the names of
    their indexes and constraints (``dropped`` gets the foreign keys that had to go); the
    enum types to drop."""
    inspector = sa.inspect(conn)
    for table in original.tables:
        if conn.dialect.name == "postgresql":
            columns = [c["name"] for c in inspector.get_columns(table.name)]
            for column, sequence in _serial_sequences(conn, table.name, columns):
                new = _quote(conn, f"{ADOPT_PREFIX}{table.name}_{column}_seq")
                # pg_get_serial_sequence gives the name quoted as SQL needs it.
                conn.execute(sa.text(f"ALTER SEQUENCE {sequence} RENAME TO {new}"))
        _rename_table(conn, table.name, ADOPT_PREFIX + table.name)
        dropped.extend(_free_names(conn, ADOPT_PREFIX + table.name))
    enums: list[str] = []
    if conn.dialect.name == "postgresql":
        wanted = {
            column.type.name
            for table in metadata.tables.values()
            for column in table.columns
            if isinstance(column.type, sa.Enum) and column.type.name
        }
        existing = set(
            conn.execute(
                sa.text(
                    "SELECT typname FROM pg_type WHERE typtype = 'e'"
                    " AND typnamespace = to_regnamespace(current_schema())::oid"
                )
            ).scalars()
        )
        for name in sorted(wanted & existing):
            enums.append(ADOPT_PREFIX + name)
            conn.execute(
                sa.text(f"ALTER TYPE {_quote(conn, name)} RENAME TO {_quote(conn, enums[-1])}")
            )
    return enums


def _converted(
    table: OriginalTable, names: list[str], converters: list[Any], row: Any
) -> list[Any]:
    """A row's values through the table's converters; a value one refuses is named."""
    values = []
    for name, convert, value in zip(names, converters, row, strict=False):
        if convert is not None:
            try:
                value = convert(value)
            except (TypeError, ValueError) as e:
                raise InvalidValue(
                    f"{table.name}.{name}: cannot keep the value {value!r}: {e}"
                ) from None
        values.append(value)
    return values


def _copy_rows(conn: Connection, table: OriginalTable, model: sa.Table) -> int:
    """Copy the set-aside original ``table`` into the store's table of that name, in
    batches; the number of rows copied (checked against the original's)."""
    source = sa.Table(ADOPT_PREFIX + table.name, MetaData(), autoload_with=conn)
    present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    columns = [c for c in model.columns if c.name in present]
    target = sa.Table(
        table.name,
        MetaData(),
        *[
            sa.Column(c.name, c.type, primary_key=c.primary_key, autoincrement=False)
            for c in columns
        ],
    )
    # One value per target column, in order (NULL for a column the original lacks).
    picked = [
        sa.null().label(c.name)
        if c.name not in source.c
        else sa.cast(source.c[c.name], sa.Text).label(c.name)
        if c.name in table.as_text
        else source.c[c.name]
        for c in columns
    ]
    names = [c.name for c in columns]
    converters = [table.convert.get(name) for name in names]
    # Batches in the original's order: SQLite's rowid (an unordered read gives rows in it),
    # else the primary key.
    if conn.dialect.name == "sqlite":
        order: Any = sa.literal_column("rowid")
    else:
        keys = list(source.primary_key.columns)
        order = keys[0] if len(keys) == 1 else None
    select = sa.select(*picked)
    if order is not None:
        select = select.add_columns(order.label("_adopt_order")).order_by(order).limit(_BATCH)
    copied, last = 0, None
    while True:
        batch = select if last is None or order is None else select.where(order > last)
        rows = conn.execute(batch).all()
        if not rows:
            break
        values = [
            dict(zip(names, _converted(table, names, converters, row), strict=True)) for row in rows
        ]
        conn.execute(sa.insert(target), values)
        copied += len(values)
        if order is None:
            break
        last = rows[-1][-1]
    total = conn.execute(sa.select(sa.func.count()).select_from(source)).scalar_one()
    if copied != total:
        raise DatabaseError(f"adopt: copied {copied} of {total} rows of {table.name}")
    return copied


def _restore(
    conn: Connection,
    spec: StoreMigrations,
    options: Mapping[str, Any],
    original: Original,
    dropped: list[tuple[str, dict[str, Any]]],
) -> None:
    """Where DDL commits as it goes (MariaDB/MySQL): put the original tables back, with
    the foreign keys ``dropped`` set aside."""
    present = set(sa.inspect(conn).get_table_names())
    for table in reversed(original.tables):
        if ADOPT_PREFIX + table.name in present and table.name in present:
            conn.execute(sa.text(f"DROP TABLE {_quote(conn, table.name)}"))
    for table in original.tables:
        if ADOPT_PREFIX + table.name in present:
            _rename_table(conn, ADOPT_PREFIX + table.name, table.name)
    version_table = spec.version_table_name(options)
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {_quote(conn, version_table)}"))
    for temp, fk in dropped:
        table = temp[len(ADOPT_PREFIX) :]
        columns = ", ".join(_quote(conn, c) for c in fk["constrained_columns"])
        referred = ", ".join(_quote(conn, c) for c in fk["referred_columns"])
        parent = fk["referred_table"]
        parent = parent[len(ADOPT_PREFIX) :] if parent.startswith(ADOPT_PREFIX) else parent
        conn.execute(
            sa.text(
                f"ALTER TABLE {_quote(conn, table)} ADD CONSTRAINT {_quote(conn, fk['name'])} "
                f"FOREIGN KEY ({columns}) REFERENCES {_quote(conn, parent)} ({referred})"
            )
        )


def _stamp_head(
    conn: Connection, spec: StoreMigrations, options: Mapping[str, Any], metadata: MetaData
) -> dict[str, Any]:
    """Record head as the revision of tables that are the models' already."""
    from alembic import command

    command.stamp(alembic_config(spec, conn, options), "head")
    counts = {
        name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        for name, table in metadata.tables.items()
    }
    return {"status": "stamped", "revision": _current(conn, spec, options), "tables": counts}


def _rebuild(
    conn: Connection,
    spec: StoreMigrations,
    options: Mapping[str, Any],
    original: Original,
    dropped: list[tuple[str, dict[str, Any]]],
) -> dict[str, int]:
    from alembic import command

    metadata = store_metadata(spec, options)
    enums = _set_aside(conn, original, metadata, dropped)
    command.upgrade(alembic_config(spec, conn, options), original.revision)
    counts = {t.name: _copy_rows(conn, t, metadata.tables[t.name]) for t in original.tables}
    for table in reversed(original.tables):
        conn.execute(sa.text(f"DROP TABLE {_quote(conn, ADOPT_PREFIX + table.name)}"))
    for name in enums:
        conn.execute(sa.text(f"DROP TYPE {_quote(conn, name)}"))
    # The rows came with their ids: the counters continue after them (no statement
    # for after COMMIT arises without a lower bound).
    advance_id_counters(conn, [metadata.tables[t.name] for t in original.tables])
    command.upgrade(alembic_config(spec, conn, options), "head")
    return counts


@_alembic_errors
def adopt(
    db_or_url: Database | str | sa.URL, store: str | StoreMigrations, **params: Any
) -> dict[str, Any]:
    """Bring a database ``store``'s original application made under dblayer's migrations.

    The original's tables are recognised (every table, column and kind of column), their
    rows copied into the store's tables as the store's first migration creates them, the
    rest of the migrations run, and the result compared with the models. Returns
    ``{"store", "status", "revision", "tables"}``: status ``adopted`` (rows per table),
    ``stamped`` (not the original's tables but the store's own, as the models declare
    them, made without migrations: head is recorded), or ``managed`` (dblayer manages it
    already: nothing done).

    Refused with InvalidValue, changing nothing: a schema that is not the original's (a
    foreign table of the same name, a column it never had, some tables missing), or rows
    the store's tables could not keep (NULL in a NOT NULL column, text too long for its
    column, a reference to a row that does not exist). On SQLite and PostgreSQL it all
    runs in one transaction; on MariaDB/MySQL, whose DDL commits as it goes, a failure
    after the checks puts the original's tables back.
    """
    spec = store_migrations(store)
    options = _check_params(spec, params)
    with _connection(db_or_url) as conn:
        revision = _current(conn, spec, options)
        result: dict[str, Any] = {"store": spec.name, "status": "managed", "revision": revision}
        if revision is not None:
            return {**result, "tables": {}}
        metadata = store_metadata(spec, options)
        present = set(sa.inspect(conn).get_table_names())
        original = None if spec.original is None else spec.original(conn.dialect.name, options)
        problems = [] if original is None else _recognise(conn, original, present)
        if original is None or problems:
            # Not the original's: perhaps the store's own tables, made without migrations.
            if set(metadata.tables) <= present and not _compare(conn, spec, options):
                return {**result, **_stamp_head(conn, spec, options, metadata)}
            if original is None:
                raise InvalidValue(
                    f"store {spec.name!r} has no original application's schema to adopt, "
                    "and its tables here are not the ones its models declare"
                )
            raise InvalidValue(
                f"not {original.description}, nothing changed: {'; '.join(problems)}"
            )
        problems = _refusals(conn, original, metadata)
        if problems:
            raise InvalidValue(
                f"{original.description}: rows dblayer's {spec.name} tables cannot keep, "
                f"nothing changed: {'; '.join(problems)}"
            )
        dropped: list[tuple[str, dict[str, Any]]] = []
        try:
            counts = _rebuild(conn, spec, options, original, dropped)
            differences = _compare(conn, spec, options)
            if differences:
                raise DatabaseError(
                    f"adopt: the adopted schema still differs from the models: "
                    f"{'; '.join(describe(d) for d in differences)}"
                )
        except Exception:
            if conn.dialect.name in ("mysql", "mariadb"):
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    _restore(conn, spec, options, original, dropped)
            raise
        return {
            **result,
            "status": "adopted",
            "revision": _current(conn, spec, options),
            "tables": counts,
        }

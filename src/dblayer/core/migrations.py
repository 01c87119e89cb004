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


def store_metadata(store: str | StoreMigrations, params: Mapping[str, Any] | None = None) -> MetaData:
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
def _connection(db_or_url: Database | str | sa.URL, *, readonly: bool = False) -> Iterator[Connection]:
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
        url = config.get_main_option("sqlalchemy.url") or context.get_x_argument(as_dictionary=True).get("url")
        context.configure(url=url, literal_binds=True, **opts)
        with context.begin_transaction():
            context.run_migrations()
        return
    if connection is not None:
        context.configure(connection=connection, **opts)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or context.get_x_argument(as_dictionary=True).get("url")
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


@_alembic_errors
def check(
    db_or_url: Database | str | sa.URL, store: str | StoreMigrations, **params: Any
) -> list[Any]:
    """Alembic's autogenerate comparison of the database against ``store``'s models:
    the list of differences (empty when the schema matches), in
    ``alembic.autogenerate.compare_metadata``'s form."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    spec = store_migrations(store)
    options = _check_params(spec, params)
    metadata = store_metadata(spec, options)
    with _connection(db_or_url, readonly=True) as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "target_metadata": metadata,
                "version_table": spec.version_table_name(options),
                "compare_type": compare_type,
                "include_name": _include_name(metadata),
            },
        )
        with redirect_stdout(io.StringIO()):
            return list(compare_metadata(ctx, metadata))


# What add_missing may do: add tables and columns, nothing that changes or drops data.
_ADDITIONS = ("add_table", "add_column", "add_index")


def _flatten(diffs: list[Any]) -> list[tuple[Any, ...]]:
    flat: list[tuple[Any, ...]] = []
    for diff in diffs:
        # compare_metadata nests column modifications in lists.
        flat.extend(diff if isinstance(diff, list) else [diff])
    return flat


@_alembic_errors
def add_missing(
    db_or_url: Database | str | sa.URL, store: str | StoreMigrations, **params: Any
) -> list[str]:
    """Add the tables, columns and indexes ``store``'s models declare and the database
    lacks (a store whose tables follow its options, like jobman's extra job fields);
    return what was added (``"add_column q_job.priority"``).

    Anything else the comparison finds (a changed type, a column the models no longer
    have) is refused with InvalidValue, and nothing is changed. A new column must be
    nullable or have a server default, since existing rows get it too.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    spec = store_migrations(store)
    options = _check_params(spec, params)
    metadata = store_metadata(spec, options)
    with _connection(db_or_url) as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "target_metadata": metadata,
                "version_table": spec.version_table_name(options),
                "compare_type": compare_type,
                "include_name": _include_name(metadata),
            },
        )
        diffs = _flatten(compare_metadata(ctx, metadata))
        refused = [d for d in diffs if d[0] not in _ADDITIONS]
        if refused:
            raise InvalidValue(
                f"store {spec.name!r}: the database differs from the models in ways "
                f"add_missing does not change: {refused}"
            )
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

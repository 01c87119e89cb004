"""What the nova cases share: a database of their own, sample instances and hand-written SQL.

nova's table names (``instances``, ``services``, ...) collide with other stores', so
the cases work in a space of their own: on the servers a database ``bench_nova_<pid>``
created and dropped here, on SQLite a file ``bench_nova.db`` next to the run's file.
The API is pointed at it with ``configure(database=..., create_tables=False)``.

The raw side's SQL is written here by hand; only its column lists are read off the
models' tables once, untimed (a hand-written layer has them as constant strings).
Rows come back from the driver as tuples and become dicts, with what the driver does
not convert itself converted by hand (SQLite: timestamps and booleans; MariaDB:
booleans), so both sides return the same Python values.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dblayer.core import Database, insert_many
from dblayer.core.types import utcnow

from .runner import Backend, Context, raw_connect

# One database per process: two benchmark runs at once must not drop each other's.
SPACE = f"bench_nova_{os.getpid()}"
PROJECT = "bench-project"
USER = "bench-user"
TARGET = 2.0
# The instance tables a create writes (children first, for emptying them).
CREATED_TABLES = (
    "instance_id_mappings",
    "security_group_instance_association",
    "instance_system_metadata",
    "instance_metadata",
    "instance_info_caches",
    "instances",
)


def tables() -> dict[str, sa.Table]:
    """nova's tables by name (the models are imported on first use)."""
    from dblayer.stores.nova.models import BASE

    return dict(BASE.metadata.tables)


def user_context() -> Any:
    """The user context every call is made with (project PROJECT)."""
    from dblayer.stores.nova.context import RequestContext

    return RequestContext(USER, PROJECT)


@dataclass
class Space:
    """The case's own database: its Backend (URL), dblayer Database and hand-SQL helper."""

    backend: Backend
    db: Database
    sql: Sql


@contextmanager
def nova_space(ctx: Context) -> Iterator[Space]:
    """A fresh database with nova's schema, the API configured on it; dropped afterwards."""
    from dblayer.stores.nova import configure, facade

    backend = ctx.backend
    admin = None
    if backend.name == "sqlite":
        path = Path(make_url(backend.url).database or "").with_name("bench_nova.db")
        own = Backend("sqlite", f"sqlite:///{path}")
    else:
        path = None
        admin = raw_connect(backend)
        admin.autocommit(True) if backend.name == "mariadb" else setattr(admin, "autocommit", True)
        for stmt in (_drop(backend), f"CREATE DATABASE {SPACE}"):
            admin.cursor().execute(stmt)
        url = make_url(backend.url).set(database=SPACE)
        own = Backend(backend.name, url.render_as_string(hide_password=False))
    db = Database(own.url)
    try:
        facade.create_schema(db)
        configure(database=db, create_tables=False)
        yield Space(own, db, Sql(own, db))
    finally:
        db.dispose()
        if admin is not None:
            admin.cursor().execute(_drop(backend))
            admin.close()
        elif path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


def _drop(backend: Backend) -> str:
    # PostgreSQL refuses to drop a database someone is connected to (a leftover session).
    force = " WITH (FORCE)" if backend.name == "postgresql" else ""
    return f"DROP DATABASE IF EXISTS {SPACE}{force}"


# -- hand-written SQL ------------------------------------------------------------------------


def _affinity(column: sa.Column[Any]) -> type:
    return column.type._type_affinity or type(column.type)  # type: ignore[return-value]


def _parse_time(value: Any) -> Any:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


class Shape:
    """How one table's columns are selected and a row of them becomes a dict."""

    def __init__(self, backend: Backend, table: sa.Table, quote: Callable[[str], str]) -> None:
        self.names = tuple(c.name for c in table.columns)
        self.width = len(self.names)
        # Where the primary key sits: NULL there means an outer join found no row.
        self.id_at = self.names.index("id") if "id" in self.names else 0
        convert: list[tuple[str, Callable[[Any], Any]]] = []
        for column in table.columns:
            kind = _affinity(column)
            if issubclass(kind, sa.Boolean) and backend.name != "postgresql":
                convert.append((column.name, bool))
            elif issubclass(kind, sa.DateTime) and backend.name == "sqlite":
                convert.append((column.name, _parse_time))
        self.convert = tuple(convert)
        self._quote = quote

    def columns(self, alias: str) -> str:
        """The select list ``alias.col, ...`` in the table's column order."""
        return ", ".join(f"{alias}.{self._quote(n)}" for n in self.names)

    def dict(self, row: Any) -> dict[str, Any]:
        """``row`` (this table's columns, in order) as a dict of Python values."""
        out = dict(zip(self.names, row, strict=False))
        for name, fn in self.convert:
            value = out[name]
            if value is not None:
                out[name] = fn(value)
        return out


class Sql:
    """The raw side's helpers: identifier quoting, placeholders, per-table shapes, time."""

    def __init__(self, backend: Backend, db: Database) -> None:
        self.backend = backend
        self.mark = backend.mark
        self.quote = db.engine.dialect.identifier_preparer.quote
        self.shapes = {name: Shape(backend, t, self.quote) for name, t in tables().items()}

    def marks(self, n: int) -> str:
        """``n`` placeholders separated by commas."""
        return ", ".join([self.mark] * n)

    def time(self, value: dt.datetime) -> Any:
        """A timestamp as the driver is given it (SQLite: the text SQLAlchemy stores)."""
        if self.backend.name == "sqlite":
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    def now(self) -> Any:
        """The current naive UTC time, as the driver is given it."""
        return self.time(utcnow())


# -- sample data -----------------------------------------------------------------------------

BASE_TIME = dt.datetime(2024, 1, 1)
METADATA = (("role", "web"), ("tier", "front"))
SYSTEM_METADATA = (("image_os_type", "linux"), ("image_min_ram", "512"), ("owner", "bench"))
RULES = (("tcp", 22, 22, "0.0.0.0/0"), ("icmp", -1, -1, "0.0.0.0/0"))


def new_uuid(picker: random.Random | None = None) -> str:
    """A uuid4 string (from ``picker`` when given, for repeatable sample data)."""
    if picker is None:
        return str(uuid.uuid4())
    return str(uuid.UUID(int=picker.getrandbits(128), version=4))


def create_default_group(db: Database) -> int:
    """The project's live 'default' security group with two rules; its id."""
    t = tables()
    now = utcnow()
    with db.transaction() as conn:
        insert_many(
            conn,
            t["security_groups"],
            [
                {
                    "id": 1,
                    "name": "default",
                    "description": "default",
                    "user_id": USER,
                    "project_id": PROJECT,
                    "created_at": now,
                    "deleted": 0,
                }
            ],
        )
        insert_many(
            conn,
            t["security_group_rules"],
            [
                {
                    "parent_group_id": 1,
                    "protocol": proto,
                    "from_port": lo,
                    "to_port": hi,
                    "cidr": cidr,
                    "created_at": now,
                    "deleted": 0,
                }
                for proto, lo, hi, cidr in RULES
            ],
        )
    return 1


def load_instances(db: Database, count: int, *, seed: int = 7) -> list[str]:
    """``count`` live instances of PROJECT (ids 1..count, ``created_at`` one second apart),
    each with an info cache, 2 metadata and 3 system metadata rows and the default group;
    loaded in bulk (untimed). Returns their uuids in id order."""
    t = tables()
    group = create_default_group(db)
    picker = random.Random(seed)
    uuids = [new_uuid(picker) for _ in range(count)]
    chunk = 20_000
    for start in range(0, count, chunk):
        part = range(start, min(count, start + chunk))
        instances, caches, metas, sysmetas, assocs = [], [], [], [], []
        for i in part:
            u = uuids[i]
            created = BASE_TIME + dt.timedelta(seconds=i)
            live = {"created_at": created, "deleted": 0}
            instances.append(
                {
                    "id": i + 1,
                    "uuid": u,
                    "user_id": USER,
                    "project_id": PROJECT,
                    "display_name": f"server-{i}",
                    "hostname": f"server-{i}",
                    "host": f"compute-{i % 50}",
                    "node": f"compute-{i % 50}",
                    "vm_state": "active",
                    "power_state": 1,
                    "memory_mb": 2048,
                    "vcpus": 2,
                    "root_gb": 20,
                    "instance_type_id": 1,
                    "image_ref": "c9a2b1c4-1f1e-4f6c-9d67-3b1a3f6f2a10",
                    "launched_at": created,
                    "availability_zone": "nova",
                    "shutdown_terminate": False,
                    "disable_terminate": False,
                    "locked": False,
                    "cleaned": 0,
                    **live,
                }
            )
            caches.append({"instance_uuid": u, "network_info": "[]", **live})
            metas += [{"instance_uuid": u, "key": k, "value": v, **live} for k, v in METADATA]
            sysmetas += [
                {"instance_uuid": u, "key": k, "value": v, **live} for k, v in SYSTEM_METADATA
            ]
            assocs.append({"instance_uuid": u, "security_group_id": group, **live})
        with db.transaction() as conn:
            for name, rows in (
                ("instances", instances),
                ("instance_info_caches", caches),
                ("instance_metadata", metas),
                ("instance_system_metadata", sysmetas),
                ("security_group_instance_association", assocs),
            ):
                insert_many(conn, t[name], rows)
    analyze(db, *CREATED_TABLES, "security_groups", "security_group_rules")
    return uuids


def analyze(db: Database, *names: str) -> None:
    """Refresh the planner's statistics of the named tables."""
    sql = {"postgresql": "ANALYZE {}", "mysql": "ANALYZE TABLE {}"}.get(db.backend, "ANALYZE {}")
    with db.transaction() as conn:
        for name in names:
            conn.exec_driver_sql(sql.format(name)).close()


def empty_created(db: Database) -> None:
    """Remove every row a create writes (untimed reset between runs)."""
    with db.transaction() as conn:
        if db.backend == "postgresql":
            conn.exec_driver_sql(f"TRUNCATE TABLE {', '.join(CREATED_TABLES)} CASCADE")
        elif db.backend == "mysql":
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            for name in CREATED_TABLES:
                conn.exec_driver_sql(f"TRUNCATE TABLE {name}")
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
        else:
            for name in CREATED_TABLES:
                conn.exec_driver_sql(f"DELETE FROM {name}")

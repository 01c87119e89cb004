"""nova DB API: one instance at a time, and what hangs off it (metadata, system metadata,
info cache, faults).

Single-instance reads and returns load ``info_cache`` and ``security_groups`` (each
group with its ``rules``) always, plus what ``columns_to_join`` names (default
``['metadata', 'system_metadata']``; ``'block_device_mapping'`` and ``'pci_devices'``
may be named too); ``metadata`` / ``system_metadata`` not asked for come back as empty
lists. The objects returned are detached: every relationship holds what was read (or
an empty list / None), nothing lazy-loads. A user context sees its own project's
instances only: another project's is InstanceNotFound.

The rows hanging off an instance (metadata, system metadata, info cache) are scoped
too: for a user context another project's instance has none, and writing them is
InstanceNotFound (nova's DB layer did not check; its API layer did).

``instance_update*`` checks ``expected_task_state`` / ``expected_vm_state`` inside the
UPDATE's own WHERE clause, so of two callers expecting the same state exactly one wins.

Hostname uniqueness follows nova's ``osapi_compute_unique_server_name_scope``, here the
module setting ``unique_server_name_scope``: ``''`` (the default: no check),
``'project'`` (unique, case-insensitively, among the context project's instances) or
``'global'`` (among all instances). Set it with ``set_unique_server_name_scope(scope)``
or by assigning the module attribute; it is read on every call and is process-wide,
like nova's configuration. The check is a read, as nova's was: two creations racing
with one hostname can both pass it.
"""

from __future__ import annotations

import functools
import logging
import uuid as uuid_module
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from dblayer.core import (
    Constraint,
    DuplicateEntry,
    ForeignKeyViolation,
    InvalidQuery,
    InvalidValue,
    PreparedQuery,
    PreparedWrite,
    RowObjects,
    live,
    utcnow,
)

from .. import exception
from ..context import is_user_context
from ..models import (
    BlockDeviceMapping,
    Instance,
    InstanceFault,
    InstanceIdMapping,
    InstanceInfoCache,
    InstanceMetadata,
    InstanceSystemMetadata,
    PciDevice,
    SecurityGroup,
    SecurityGroupIngressRule,
    SecurityGroupInstanceAssociation,
)
from ..types import shorten_ip
from ._base import (
    USER,
    api,
    column_names,
    connection,
    create,
    execute,
    first,
    parse_datetimes,
    read_deleted_clause,
    replace_key_values,
    require_uuid,
    savepoint,
    soft_delete_where,
    update,
)
from ._checks import clean_value, clean_values, integer_id, require_instance
from .security_groups import (
    DEFAULT_GROUP,
    ensure_default_group,
    group_ids_by_names,
)

__all__ = [
    "instance_create",
    "instance_destroy",
    "instance_fault_create",
    "instance_fault_get_by_instance_uuids",
    "instance_get",
    "instance_get_by_uuid",
    "instance_info_cache_delete",
    "instance_info_cache_get",
    "instance_info_cache_update",
    "instance_metadata_delete",
    "instance_metadata_get",
    "instance_metadata_update",
    "instance_system_metadata_get",
    "instance_system_metadata_update",
    "instance_update",
    "instance_update_and_get_original",
]

LOG = logging.getLogger(__name__)

# -- the hostname uniqueness setting ---------------------------------------------------------

UNIQUE_SERVER_NAME_SCOPES = ("", "project", "global")
unique_server_name_scope = ""


def set_unique_server_name_scope(scope: str) -> None:
    """Set where hostnames must be unique: '' (nowhere), 'project' or 'global'."""
    global unique_server_name_scope
    if scope not in UNIQUE_SERVER_NAME_SCOPES:
        raise InvalidValue(
            f"unique_server_name_scope must be one of {UNIQUE_SERVER_NAME_SCOPES!r}, not {scope!r}"
        )
    unique_server_name_scope = scope


def _check_unique_hostname(context: Any, hostname: str) -> None:
    """InstanceExists when ``hostname`` is taken (case-insensitively) within the scope."""
    scope = unique_server_name_scope
    if not scope:
        return
    if scope not in ("project", "global"):
        LOG.warning("unknown unique_server_name_scope %r: hostnames are not checked", scope)
        return
    if not isinstance(hostname, str):
        raise InvalidQuery(f"hostname must be a string, got {hostname!r}")
    lowered = hostname.lower()
    stmt = sa.select(Instance.id).where(sa.func.lower(Instance.hostname) == lowered)
    visible = read_deleted_clause(Instance, context.read_deleted)
    if visible is not None:
        stmt = stmt.where(visible)
    if scope == "project":
        project = context.project_id
        stmt = stmt.where(
            Instance.project_id.is_(None) if project is None else Instance.project_id == project
        )
    if execute(stmt.limit(1)).first() is not None:
        raise exception.InstanceExists(name=lowered)


# -- loading one instance --------------------------------------------------------------------
#
# The ORM's eager loaders cost about ten times the SQL they send, so a single instance is
# read with three prepared queries (core's PreparedQuery: compiled once, run on the driver
# cursor): the instance with its info cache; its groups with their rules; its metadata and
# system metadata together (one more query per other collection asked for). The rows become
# model objects directly: detached (no session), every relationship set to what was read or
# to an empty list / None, so nothing ever lazy-loads.


_INSTANCE = RowObjects(Instance)
_CACHE = RowObjects(InstanceInfoCache, "cache_")
_GROUP = RowObjects(SecurityGroup)
_RULE = RowObjects(SecurityGroupIngressRule, "rule_")
# The collections columns_to_join may name: each is the live rows of a table by instance_uuid.
CHILDREN = {
    "metadata": RowObjects(InstanceMetadata),
    "system_metadata": RowObjects(InstanceSystemMetadata),
    "block_device_mapping": RowObjects(BlockDeviceMapping),
    "pci_devices": RowObjects(PciDevice),
}
# Loaded on every single-instance read, whatever columns_to_join says.
ALWAYS_JOINED = ("info_cache", "security_groups")
DEFAULT_JOINS = ("metadata", "system_metadata")
JOINABLE = frozenset((*ALWAYS_JOINED, *CHILDREN))
INSTANCE_DATETIMES = (
    "created_at",
    "deleted_at",
    "updated_at",
    "launched_at",
    "terminated_at",
    "scheduled_at",
)
INSTANCE_IPS = ("access_ip_v4", "access_ip_v6")
INSTANCE_COLUMNS = column_names(Instance)


def _joins(columns_to_join: Any) -> tuple[str, ...]:
    """The collections to load besides ALWAYS_JOINED, as a sorted tuple."""
    if columns_to_join is None:
        return DEFAULT_JOINS
    if isinstance(columns_to_join, str | bytes) or not isinstance(columns_to_join, Iterable):
        raise InvalidQuery(
            f"columns_to_join must be a list of names, got {columns_to_join!r}; "
            f"allowed names: {', '.join(sorted(JOINABLE))}"
        )
    names = list(columns_to_join)
    unknown = [n for n in names if not isinstance(n, str) or n not in JOINABLE]
    if unknown:
        raise InvalidQuery(
            f"columns_to_join names unknown relationships {unknown!r}; "
            f"allowed: {', '.join(sorted(JOINABLE))}"
        )
    return tuple(sorted(set(names) - set(ALWAYS_JOINED)))


@functools.cache
def _instance_query(key: str, read_deleted: str, scoped: bool, lock: bool) -> PreparedQuery:
    """The instance (by ``key``, bound as :key; :project_id when scoped) with its info cache."""
    instances, caches = Instance.__table__, InstanceInfoCache.__table__
    stmt = (
        sa.select(*_INSTANCE.columns(), *_CACHE.columns())
        .select_from(instances.outerjoin(caches, caches.c.instance_uuid == instances.c.uuid))
        .where(instances.c[key] == sa.bindparam("key"))
    )
    visible = read_deleted_clause(Instance, read_deleted)
    if visible is not None:
        stmt = stmt.where(visible)
    if scoped:
        stmt = stmt.where(instances.c.project_id == sa.bindparam("project_id"))
    if lock:
        # The instance row only (PostgreSQL refuses to lock the outer join's nullable side).
        stmt = stmt.with_for_update(of=instances)
    return PreparedQuery(stmt)


def _groups_query() -> PreparedQuery:
    """The live groups of :uuid through live links, each with its live rules."""
    links, groups = SecurityGroupInstanceAssociation.__table__, SecurityGroup.__table__
    rules = SecurityGroupIngressRule.__table__
    joined = links.join(
        groups, sa.and_(groups.c.id == links.c.security_group_id, live(links), live(groups))
    ).outerjoin(rules, sa.and_(rules.c.parent_group_id == groups.c.id, live(rules)))
    return PreparedQuery(
        sa.select(*_GROUP.columns(), *_RULE.columns())
        .select_from(joined)
        .where(links.c.instance_uuid == sa.bindparam("uuid"))
        .order_by(groups.c.id, rules.c.id)
    )


def _children_query(table: sa.Table) -> PreparedQuery:
    return PreparedQuery(
        sa.select(*table.columns)
        .where(table.c.instance_uuid == sa.bindparam("uuid"), live(table))
        .order_by(table.c.id)
    )


def _both_metadata_query() -> PreparedQuery:
    """Metadata and system metadata of :uuid in one query (the tables have the same columns),
    each row with ``kind`` 0 (metadata) or 1 (system metadata)."""
    parts = [
        sa.select(sa.literal(kind, sa.Integer).label("kind"), *table.columns).where(
            table.c.instance_uuid == sa.bindparam("uuid"), live(table)
        )
        for kind, table in enumerate(CHILDREN[name].table for name in DEFAULT_JOINS)
    ]
    both = sa.union_all(*parts).subquery("both_metadata")
    return PreparedQuery(sa.select(*both.columns).order_by(both.c.kind, both.c.id))


def _default_group_query() -> PreparedQuery:
    """The live 'default' group of :project_id (the first, as ensure_default_group finds
    it) with its live rules."""
    groups, rules = SecurityGroup.__table__, SecurityGroupIngressRule.__table__
    first = (
        sa.select(sa.func.min(groups.c.id))
        .where(
            groups.c.name == DEFAULT_GROUP,
            groups.c.project_id == sa.bindparam("project_id"),
            live(groups),
        )
        .correlate(None)  # its own scan of the table, not the outer query's row
        .scalar_subquery()
    )
    return PreparedQuery(
        sa.select(*_GROUP.columns(), *_RULE.columns())
        .select_from(
            groups.outerjoin(rules, sa.and_(rules.c.parent_group_id == groups.c.id, live(rules)))
        )
        .where(groups.c.id == first)
        .order_by(groups.c.id, rules.c.id)
    )


_GROUPS_QUERY = _groups_query()
_DEFAULT_GROUP_QUERY = _default_group_query()
_CHILDREN_QUERIES = {name: _children_query(o.table) for name, o in CHILDREN.items()}
_BOTH_METADATA_QUERY = _both_metadata_query()


@dataclass(slots=True)
class _Fetched:
    """The rows of one instance: its own (with its info cache), its groups', its children's."""

    row: dict[str, Any]
    groups: list[dict[str, Any]]
    children: dict[str, list[dict[str, Any]]]

    def build(self) -> Any:
        """A new detached Instance object from the rows (each call a separate copy)."""
        row = self.row
        related: dict[str, Any] = {
            "info_cache": _CACHE.make(row) if row[_CACHE.id_label] is not None else None,
            "security_groups": _build_groups(self.groups),
        }
        for name, rows in self.children.items():
            make = CHILDREN[name].make
            related[name] = [make(r) for r in rows]
        return _INSTANCE.make(row, related)


def _build_groups(rows: list[dict[str, Any]]) -> list[Any]:
    group_rows: dict[Any, dict[str, Any]] = {}
    rules: dict[Any, list[Any]] = {}
    seen_rules: set[Any] = set()
    for row in rows:
        group_rows.setdefault(row["id"], row)
        found = rules.setdefault(row["id"], [])
        rule_id = row[_RULE.id_label]
        # A group linked twice repeats its rules: keep each once.
        if rule_id is not None and rule_id not in seen_rules:
            seen_rules.add(rule_id)
            found.append(_RULE.make(row))
    return [_GROUP.make(row, {"rules": rules[key]}) for key, row in group_rows.items()]


def _fetch(
    context: Any,
    key: str,
    value: Any,
    joins: tuple[str, ...],
    *,
    read_deleted: str | None = None,
    project_only: bool = True,
    lock: bool = False,
) -> _Fetched | None:
    """The rows of the instance whose ``key`` is ``value`` as ``context`` may see it, or None."""
    scoped = project_only and is_user_context(context)
    query = _instance_query(key, read_deleted or context.read_deleted, scoped, lock)
    conn = connection()
    if scoped:
        row = query.first(conn, key=value, project_id=context.project_id)
    else:
        row = query.first(conn, key=value)
    if row is None:
        return None
    return _Fetched(row, *_related_rows(conn, row["uuid"], row["deleted"] == 0, joins))


def _related_rows(
    conn: Any, instance_uuid: str, alive: bool, joins: tuple[str, ...]
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The group rows and the rows of each collection in ``joins`` of an instance."""
    # As nova's relationship: a deleted instance has no security groups.
    groups = _GROUPS_QUERY.all(conn, uuid=instance_uuid) if alive else []
    children: dict[str, list[dict[str, Any]]] = {}
    rest = joins
    if "metadata" in joins and "system_metadata" in joins:
        # nova's default joins: one round trip for both.
        children = {name: [] for name in DEFAULT_JOINS}
        for row in _BOTH_METADATA_QUERY.all(conn, uuid=instance_uuid):
            children[DEFAULT_JOINS[row["kind"]]].append(row)
        rest = tuple(name for name in joins if name not in DEFAULT_JOINS)
    for name in rest:
        children[name] = _CHILDREN_QUERIES[name].all(conn, uuid=instance_uuid)
    return groups, children


def _fetch_by_uuid(context: Any, instance_uuid: Any, joins: tuple[str, ...], **kw: Any) -> _Fetched:
    fetched = None
    if isinstance(instance_uuid, str):
        fetched = _fetch(context, "uuid", instance_uuid, joins, **kw)
    if fetched is None:
        raise exception.InstanceNotFound(instance_id=instance_uuid)
    return fetched


# -- values ----------------------------------------------------------------------------------

_UNSET = object()
CREATE_EXTRAS = ("info_cache", "metadata", "security_groups", "system_metadata")
UPDATE_EXTRAS = ("expected_task_state", "expected_vm_state", "metadata", "system_metadata")


def _split_values(values: Any, extras: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(column values, extra values) of a caller's dict, which is left as it was; unknown
    keys are rejected (InvalidQuery), datetimes and IP addresses normalised."""
    if not isinstance(values, Mapping):
        raise InvalidQuery(f"values must be a dict, got {values!r}")
    unknown = sorted(str(k) for k in values if k not in INSTANCE_COLUMNS and k not in extras)
    if unknown:
        raise InvalidQuery(
            f"instance values name unknown keys {', '.join(unknown)}; allowed: "
            f"{', '.join(extras)} and the instance columns {', '.join(sorted(INSTANCE_COLUMNS))}"
        )
    columns = {k: v for k, v in values.items() if k in INSTANCE_COLUMNS}
    extra = {k: v for k, v in values.items() if k not in INSTANCE_COLUMNS}
    parse_datetimes(columns, INSTANCE_DATETIMES)
    for key in INSTANCE_IPS:
        if columns.get(key) is not None:
            # nova stored addresses as strings; IPv6 is kept compressed, as the column stores it.
            columns[key] = shorten_ip(str(columns[key]))
    # Values every backend stores alike, or InvalidValue (SQLite would take anything).
    return {k: clean_value(Instance, k, v) for k, v in columns.items()}, extra


def _metadata_dict(name: str, value: Any, model: Any) -> dict[str, Any] | None:
    """``value`` (None, or a dict of key -> value for ``model``'s rows) checked."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidQuery(f"{name} must be a dict of key -> value, got {value!r}")
    return {clean_value(model, "key", k): clean_value(model, "value", v) for k, v in value.items()}


def _expected(value: Any) -> tuple[Any, ...]:
    """An expected state (a value, None for 'no state', or a list of them) as a tuple."""
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(value)
    return (value,)


def _state_in(column: Any, expected: tuple[Any, ...]) -> sa.ColumnElement[bool]:
    """``column`` holds one of ``expected`` (None meaning NULL); nothing matches ()."""
    values = [v for v in expected if v is not None]
    parts: list[sa.ColumnElement[bool]] = []
    if values:
        parts.append(column.in_(values))
    if len(values) < len(expected):
        parts.append(column.is_(None))
    return sa.or_(*parts) if parts else sa.false()


# -- metadata rows ---------------------------------------------------------------------------


def _replace_metadata(
    model: Any, instance_uuid: str, metadata: Mapping[str, Any], delete: bool
) -> None:
    """Make the instance's live ``model`` rows hold ``metadata`` (see replace_key_values)."""
    try:
        replace_key_values(model, "instance_uuid", instance_uuid, metadata, delete=delete)
    except ForeignKeyViolation:
        raise exception.InstanceNotFound(instance_id=instance_uuid) from None


def _owned_by_context(context: Any, column: Any) -> sa.ColumnElement[bool] | None:
    """For a user context: ``column`` (an instance uuid) names one of its project's instances."""
    if not is_user_context(context):
        return None
    return column.in_(sa.select(Instance.uuid).where(Instance.project_id == context.project_id))


def _require_owned(context: Any, instance_uuid: Any) -> None:
    """InstanceNotFound unless the instance exists (live or deleted) and, for a user
    context, is its project's; checked before writing its rows (no foreign-key error).

    The instance row stays locked until the call ends, so that two writers of the same
    instance's metadata take turns (neither inserts a key the other is inserting).
    """
    stmt = sa.select(Instance.id).where(Instance.uuid == instance_uuid)
    if is_user_context(context):
        stmt = stmt.where(Instance.project_id == context.project_id)
    if not isinstance(instance_uuid, str):
        raise exception.InstanceNotFound(instance_id=instance_uuid)
    if execute(stmt.limit(1).with_for_update()).first() is None:
        raise exception.InstanceNotFound(instance_id=instance_uuid)


def _metadata_get(context: Any, model: Any, instance_uuid: Any, read_deleted: str) -> dict:
    table = model.__table__
    stmt = sa.select(table.c.key, table.c.value).where(table.c.instance_uuid == instance_uuid)
    visible = read_deleted_clause(model, read_deleted)
    if visible is not None:
        stmt = stmt.where(visible)
    owned = _owned_by_context(context, table.c.instance_uuid)
    if owned is not None:
        stmt = stmt.where(owned)
    # Oldest first, so that with deleted rows included the newest value of a key wins.
    return {r.key: r.value for r in execute(stmt.order_by(table.c.id))}


def _metadata_update(
    context: Any, model: Any, instance_uuid: Any, metadata: Any, delete: Any
) -> None:
    values = _metadata_dict("metadata", metadata, model)
    if values is None:
        raise InvalidQuery("metadata must be a dict of key -> value, got None")
    _require_owned(context, instance_uuid)
    _replace_metadata(model, instance_uuid, values, bool(delete))


# -- instances -------------------------------------------------------------------------------


@api(USER)
def instance_create(context: Any, values: dict[str, Any]) -> Any:
    """Create an instance (and its info cache, metadata, security group links, EC2 id) from ``values``.

    ``project_id`` / ``user_id`` default to the context's when ``values`` has no such key.
    Everything is written in one transaction (nova's was several).
    """
    columns, extra = _split_values(values, CREATE_EXTRAS)
    metadata = _metadata_dict("metadata", extra.get("metadata"), InstanceMetadata) or {}
    system_metadata = (
        _metadata_dict("system_metadata", extra.get("system_metadata"), InstanceSystemMetadata)
        or {}
    )
    info_cache = extra.get("info_cache")
    if info_cache is not None:
        if not isinstance(info_cache, Mapping):
            raise InvalidQuery(f"info_cache must be a dict of its columns, got {info_cache!r}")
        info_cache = clean_values(InstanceInfoCache, info_cache)
    group_names = extra.get("security_groups") or []
    if isinstance(group_names, str) or not all(isinstance(n, str) for n in group_names):
        raise InvalidQuery(f"security_groups must be a list of group names, got {group_names!r}")
    # nova's callers always name the owner; a caller that does not gets the context's.
    columns.setdefault("project_id", context.project_id)
    columns.setdefault("user_id", context.user_id)
    if columns.get("uuid"):
        require_uuid(columns["uuid"])
    else:
        columns["uuid"] = str(uuid_module.uuid4())
    instance_uuid = columns["uuid"]
    if columns.get("hostname") is not None:
        _check_unique_hostname(context, columns["hostname"])

    conn = connection()
    # The project's default group exists after any creation, asked for or not. When it is
    # the only group asked for, it is read with its rules here (its row is what the new
    # instance links to): no read of the links afterwards.
    group_rows = None
    if context.project_id is not None and group_names and set(group_names) == {DEFAULT_GROUP}:
        group_rows = _DEFAULT_GROUP_QUERY.all(conn, project_id=context.project_id) or None
    default_id = group_rows[0]["id"] if group_rows else ensure_default_group(context)
    others = list(dict.fromkeys(n for n in group_names if n != DEFAULT_GROUP))
    named = dict(zip(others, group_ids_by_names(context, context.project_id, others), strict=True))
    group_ids = list(
        dict.fromkeys(default_id if n == DEFAULT_GROUP else named[n] for n in group_names)
    )

    conn = connection()  # again: what a group's creation left in the Session flushed
    if not _returning_supported(conn):
        return _create_then_read(
            context, conn, columns, info_cache, metadata, system_metadata, group_ids
        )
    # One prepared INSERT per table, and nothing read back: the objects hold the values
    # written (defaults included), as nova's did; ids come back from the inserts.
    try:
        (written,) = _ROW_INSERTS["instance"].run(conn, [columns])
    except DuplicateEntry as e:
        raise exception.DBDuplicateEntry(columns=["uuid"], inner_exception=e) from None
    cache = {**(info_cache or {}), "instance_uuid": instance_uuid}
    related: dict[str, Any] = {
        "info_cache": _complete(_CACHE, _ROW_INSERTS["info_cache"].run(conn, [cache])[0])
    }
    for name, pairs in (("metadata", metadata), ("system_metadata", system_metadata)):
        rows = _ROW_INSERTS[name].run(conn, _metadata_rows(instance_uuid, pairs))
        related[name] = [_complete(CHILDREN[name], r) for r in rows]
    links = [{"instance_uuid": instance_uuid, "security_group_id": g} for g in group_ids]
    _ROW_INSERTS["security_groups"].run(conn, links)
    # The EC2 id of the instance (what ec2_instance_create writes).
    _ROW_INSERTS["ec2_id"].run(conn, [{"uuid": instance_uuid}])
    if group_rows is None:
        group_rows = _GROUPS_QUERY.all(conn, uuid=instance_uuid) if group_ids else []
    related["security_groups"] = _build_groups(group_rows)
    return _complete(_INSTANCE, written, related)


class _RowInsert:
    """INSERTs of a table's rows on the driver's cursor, each statement prepared once for
    the columns it sets and the number of rows it holds (up to CHUNK): the Python-side
    column defaults are filled in here as SQLAlchemy would, and columns left NULL are left
    out (nova's schema has no server-side defaults). ``run`` hands the rows back complete
    (every column) and, with ``ids``, with their keys: for one row, the id the driver
    reports (RETURNING on PostgreSQL); for several, RETURNING matched to the rows by the
    column ``match`` (SQLite: last_insert_rowid())."""

    CHUNK = 16
    # Statements kept per table: callers write a handful of column sets.
    KEPT = 256

    def __init__(self, table: sa.Table, *, ids: bool = True, match: str | None = None) -> None:
        (self.key,) = (c.key for c in table.primary_key.columns)
        self.table = table
        self.ids = ids
        self.match = match
        self.columns = tuple(c.key for c in table.columns if c.key != self.key)
        defaults = [(c.key, c.default) for c in table.columns if c.default is not None]
        self.fixed = {key: d.arg for key, d in defaults if d.is_scalar}
        # SQLAlchemy wraps a default function to take its execution context (unused here).
        self.computed = tuple((key, d.arg) for key, d in defaults if d.is_callable)
        self._statements: dict[tuple[tuple[str, ...], int, bool], Any] = {}

    def _statement(self, names: tuple[str, ...], count: int, returning: bool) -> Any:
        """The prepared INSERT of ``count`` rows setting ``names``; its parameters are the
        column names (one row) or the names suffixed _0, _1, ... (several rows)."""
        found = self._statements.get((names, count, returning))
        if found is None:
            c = self.table.c
            if count == 1:
                values: Any = {n: sa.bindparam(n, type_=c[n].type) for n in names}
            else:
                values = [
                    {n: sa.bindparam(f"{n}_{i}", type_=c[n].type) for n in names}
                    for i in range(count)
                ]
            stmt = sa.insert(self.table).values(values)
            if not returning:
                found = PreparedWrite(stmt)
            else:
                matched = [c[self.match]] if count > 1 and self.match else []
                found = PreparedQuery(stmt.returning(c[self.key], *matched))
            if len(self._statements) >= self.KEPT:
                self._statements.clear()
            self._statements[(names, count, returning)] = found
        return found

    def run(self, conn: Any, given: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert a row for each of ``given`` (column values); the rows as written, in order."""
        rows = []
        runs: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for values in given:
            row = dict.fromkeys(self.columns)
            row.update(self.fixed)
            for key, compute in self.computed:
                row[key] = compute(None)
            row.update(values)
            rows.append(row)
            runs.setdefault(tuple(k for k, v in row.items() if v is not None), []).append(row)
        # SQLite numbers the rows of one INSERT consecutively (the writer holds its lock):
        # their keys follow from last_insert_rowid(), cheaper there than RETURNING.
        numbered = conn.dialect.name == "sqlite"
        for names, run in runs.items():
            if not self.ids or self.key in names:
                # Nothing to read back: one executemany.
                self._statement(names, 1, False).run_many(conn, run)
            elif numbered or (
                self.match is not None and len({r[self.match] for r in run}) == len(run)
            ):
                for i in range(0, len(run), self.CHUNK):
                    self._insert(conn, names, run[i : i + self.CHUNK], numbered)
            else:
                # Rows RETURNING could not tell apart: one at a time.
                for row in run:
                    self._insert(conn, names, [row], numbered)
        return rows

    def _insert(
        self, conn: Any, names: tuple[str, ...], rows: list[dict[str, Any]], numbered: bool
    ) -> None:
        count = len(rows)
        if count == 1:
            # The id from the driver where it reports one (SQLite, MariaDB), else RETURNING.
            rows[0][self.key] = self._statement(names, 1, False).insert(conn, **rows[0])
            return
        params = {f"{n}_{i}": r[n] for i, r in enumerate(rows) for n in names}
        if numbered:
            self._statement(names, count, False).run(conn, **params)
            last = _LAST_ROWID.first(conn)["id"]  # type: ignore[index]
            for key, row in enumerate(rows, start=last - count + 1):
                row[self.key] = key
            return
        returned = self._statement(names, count, True).run_all(conn, params)
        # RETURNING's order is not promised for a multi-row VALUES: match the rows instead.
        by_match = {r[self.match]: r for r in rows}
        for r in returned:
            by_match[r[self.match]][self.key] = r[self.key]


_LAST_ROWID = PreparedQuery(sa.select(sa.func.last_insert_rowid().label("id")))


def _returning_supported(conn: Any) -> bool:
    """Whether an INSERT can return the ids it generated (not on MySQL)."""
    return bool(conn.dialect.insert_returning)


def _complete(
    objects: RowObjects, written: Mapping[str, Any], related: Mapping[str, Any] | None = None
) -> Any:
    """The object of a row written with ``written``: the columns not written are NULL
    (nova's schema has no server-side defaults)."""
    if objects.labels == objects.keys and len(written) == len(objects.keys):
        return objects.make(written, related)  # every column, under its own name
    row = {label: written.get(key) for key, label in zip(objects.keys, objects.labels, strict=True)}
    return objects.make(row, related)


def _insert_instance(conn: Any, stmt: Any, columns: dict[str, Any]) -> Any:
    try:
        return execute(stmt, columns, conn=conn)
    except DuplicateEntry as e:
        raise exception.DBDuplicateEntry(columns=["uuid"], inner_exception=e) from None


def _metadata_rows(instance_uuid: str, pairs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"instance_uuid": instance_uuid, "key": k, "value": v} for k, v in pairs.items()]


def _insert_links_and_mapping(conn: Any, instance_uuid: str, group_ids: list[int]) -> None:
    if group_ids:
        execute(
            _INSERT_LINK,
            [{"instance_uuid": instance_uuid, "security_group_id": g} for g in group_ids],
            conn=conn,
        )
    # The EC2 id of the instance (what ec2_instance_create writes).
    execute(_INSERT_MAPPING, {"uuid": instance_uuid}, conn=conn)


def _create_then_read(
    context: Any,
    conn: Any,
    columns: dict[str, Any],
    info_cache: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
    system_metadata: Mapping[str, Any],
    group_ids: list[int],
) -> Any:
    """instance_create's writes without RETURNING, then the instance read back."""
    instance_uuid = columns["uuid"]
    inserted = _insert_instance(conn, _INSERT_INSTANCE, columns)
    execute(_INSERT_CACHE, {**(info_cache or {}), "instance_uuid": instance_uuid}, conn=conn)
    for name, pairs in (("metadata", metadata), ("system_metadata", system_metadata)):
        if pairs:
            execute(_INSERT_CHILD[name], _metadata_rows(instance_uuid, pairs), conn=conn)
    _insert_links_and_mapping(conn, instance_uuid, group_ids)
    # Read back as stored: whoever the row names as owner, whatever the context reads.
    fetched = _fetch(
        context,
        "id",
        inserted.inserted_primary_key[0],
        DEFAULT_JOINS,
        read_deleted="yes",
        project_only=False,
    )
    assert fetched is not None  # written just above, in this transaction
    return fetched.build()


_INSERT_INSTANCE = sa.insert(Instance.__table__)
_INSERT_CACHE = sa.insert(InstanceInfoCache.__table__)
_INSERT_CHILD = {name: sa.insert(CHILDREN[name].table) for name in DEFAULT_JOINS}
_INSERT_LINK = sa.insert(SecurityGroupInstanceAssociation.__table__)
_INSERT_MAPPING = sa.insert(InstanceIdMapping.__table__)
# Where RETURNING is supported (keyed by what instance_create writes): rows matched by key.
_ROW_INSERTS = {
    "instance": _RowInsert(Instance.__table__),
    "info_cache": _RowInsert(InstanceInfoCache.__table__),
    "metadata": _RowInsert(InstanceMetadata.__table__, match="key"),
    "system_metadata": _RowInsert(InstanceSystemMetadata.__table__, match="key"),
    # Nothing returned holds these rows' ids.
    "security_groups": _RowInsert(SecurityGroupInstanceAssociation.__table__, ids=False),
    "ec2_id": _RowInsert(InstanceIdMapping.__table__, ids=False),
}


@api(USER, readonly=True)
def instance_get(context: Any, instance_id: int, columns_to_join: list[str] | None = None) -> Any:
    """The instance with integer id ``instance_id``; InstanceNotFound if there is none."""
    joins = _joins(columns_to_join)
    number = integer_id(instance_id)
    fetched = None if number is None else _fetch(context, "id", number, joins)
    if fetched is None:
        raise exception.InstanceNotFound(instance_id=instance_id)
    return fetched.build()


@api(USER, readonly=True)
def instance_get_by_uuid(
    context: Any, uuid: str, columns_to_join: list[str] | None = None, use_slave: bool = False
) -> Any:
    """The instance with ``uuid``; InstanceNotFound if there is none."""
    return _fetch_by_uuid(context, uuid, _joins(columns_to_join)).build()


def _update(
    context: Any,
    instance_uuid: Any,
    values: Any,
    columns_to_join: Any,
    keep_original: bool,
) -> tuple[Any, Any]:
    """The one routine behind instance_update and instance_update_and_get_original."""
    require_uuid(instance_uuid)
    joins = _joins(columns_to_join)
    columns, extra = _split_values(values, UPDATE_EXTRAS)
    metadata = _metadata_dict("metadata", extra.get("metadata"), InstanceMetadata)
    system_metadata = _metadata_dict(
        "system_metadata", extra.get("system_metadata"), InstanceSystemMetadata
    )
    expected_task = extra.get("expected_task_state", _UNSET)
    expected_vm = extra.get("expected_vm_state", _UNSET)

    # Locked, so that the original handed back is exactly the row this update changes.
    fetched = _fetch_by_uuid(context, instance_uuid, joins, lock=True)
    row = fetched.build()
    original = fetched.build() if keep_original else None
    hostname = columns.get("hostname")
    if hostname is not None and str(hostname).lower() != (row.hostname or "").lower():
        _check_unique_hostname(context, hostname)

    conditions = []
    if expected_task is not _UNSET:
        expected_task = _expected(expected_task)
        conditions.append(_state_in(Instance.task_state, expected_task))
    if expected_vm is not _UNSET:
        expected_vm = _expected(expected_vm)
        conditions.append(_state_in(Instance.vm_state, expected_vm))
    if columns or conditions:
        instances = Instance.__table__
        assignments: dict[str, Any] = dict(columns)
        if not columns:
            # Only expectations to check: an UPDATE that changes nothing, not even the time.
            assignments["updated_at"] = instances.c.updated_at
        elif "updated_at" not in columns:
            assignments["updated_at"] = utcnow()
        # The expectations are part of the UPDATE: a racing writer cannot slip in between.
        matched = execute(
            sa.update(instances).where(instances.c.id == row.id, *conditions).values(assignments)
        ).rowcount
        if matched == 0:
            _raise_unexpected_state(row.id, expected_task, expected_vm)
        if columns:
            row.__dict__.update(assignments)

    for name, model, pairs in (
        ("metadata", InstanceMetadata, metadata),
        ("system_metadata", InstanceSystemMetadata, system_metadata),
    ):
        if pairs is None:
            continue
        _replace_metadata(model, row.uuid, pairs, delete=True)
        if name in joins:
            rows = _CHILDREN_QUERIES[name].all(connection(), uuid=row.uuid)
            set_committed_value(row, name, [CHILDREN[name].make(r) for r in rows])
    return original, row


def _raise_unexpected_state(instance_id: int, expected_task: Any, expected_vm: Any) -> None:
    """Raise the error for an update whose expected states did not hold, from the row's
    states as they are now."""
    instances = Instance.__table__
    actual_task, actual_vm = execute(
        sa.select(instances.c.task_state, instances.c.vm_state).where(instances.c.id == instance_id)
    ).one()
    if expected_task is not _UNSET and actual_task not in expected_task:
        if actual_task == "deleting":
            raise exception.UnexpectedDeletingTaskStateError(
                expected=expected_task, actual=actual_task
            )
        raise exception.UnexpectedTaskStateError(expected=expected_task, actual=actual_task)
    if expected_vm is not _UNSET and actual_vm not in expected_vm:
        raise exception.UnexpectedVMStateError(expected=expected_vm, actual=actual_vm)
    # Unreachable while the row is locked; should it happen, say which state was expected.
    raise exception.UnexpectedTaskStateError(
        expected=expected_task if expected_task is not _UNSET else (), actual=actual_task
    )


@api(USER)
def instance_update(
    context: Any, instance_uuid: str, values: dict[str, Any], update_cells: bool = True
) -> Any:
    """Set ``values`` on the instance (expected states, hostname, metadata handled); return it."""
    return _update(context, instance_uuid, values, None, keep_original=False)[1]


@api(USER)
def instance_update_and_get_original(
    context: Any,
    instance_uuid: str,
    values: dict[str, Any],
    update_cells: bool = True,
    columns_to_join: list[str] | None = None,
) -> tuple[Any, Any]:
    """Update the instance like instance_update; return (a copy from before the change, the row)."""
    return _update(context, instance_uuid, values, columns_to_join, keep_original=True)


# What an instance's deletion takes with it. System metadata too (nova of this version
# left it live, which kept deleted instances from ever being archived; later nova did this).
_DESTROYED_WITH_INSTANCE = (
    SecurityGroupInstanceAssociation,
    InstanceInfoCache,
    InstanceMetadata,
    InstanceSystemMetadata,
    InstanceFault,
)


@api(USER)
def instance_destroy(
    context: Any, instance_uuid: str, constraint: Any = None, update_cells: bool = True
) -> Any:
    """Soft-delete the instance (if ``constraint`` holds) with its security group links,
    info cache, metadata, system metadata and faults; return the row as it was.

    ``constraint`` (``constraint(host=equal_any('h1'))``) goes into the deleting UPDATE:
    when it does not hold, ConstraintNotMet and nothing changes. Unlike nova of this
    version, the instance's system metadata is soft-deleted too, so that deleted
    instances can be archived (later nova versions do the same). ``update_cells`` is
    accepted and ignored.
    """
    require_uuid(instance_uuid)
    if constraint is not None and not isinstance(constraint, Constraint):
        raise InvalidQuery(f"constraint must be made with constraint(...), got {constraint!r}")
    # Checked before anything is read or written: an unknown column is InvalidQuery.
    clauses = constraint.clauses(Instance) if constraint is not None else []
    row = _fetch_by_uuid(context, instance_uuid, DEFAULT_JOINS).build()
    if soft_delete_where(Instance, Instance.id == row.id, *clauses) == 0:
        still_live = execute(
            sa.select(Instance.id).where(Instance.id == row.id, live(Instance))
        ).first()
        if clauses and still_live is not None:
            raise exception.ConstraintNotMet()
        raise exception.InstanceNotFound(instance_id=instance_uuid)
    for model in _DESTROYED_WITH_INSTANCE:
        soft_delete_where(model, model.instance_uuid == instance_uuid)
    return row


# -- metadata --------------------------------------------------------------------------------


@api(USER, readonly=True)
def instance_metadata_get(context: Any, instance_uuid: str) -> dict[str, Any]:
    """The instance's live metadata as a dict."""
    return _metadata_get(context, InstanceMetadata, instance_uuid, "no")


@api(USER)
def instance_metadata_update(
    context: Any, instance_uuid: str, metadata: dict[str, Any], delete: bool
) -> dict[str, Any]:
    """Set the keys of ``metadata`` (with ``delete``, remove the others); return ``metadata``."""
    _metadata_update(context, InstanceMetadata, instance_uuid, metadata, delete)
    return metadata


@api(USER)
def instance_metadata_delete(context: Any, instance_uuid: str, key: str) -> None:
    """Soft-delete one metadata key of the instance (nothing happens if it is absent)."""
    table = InstanceMetadata.__table__
    where = [table.c.instance_uuid == instance_uuid, table.c.key == key]
    owned = _owned_by_context(context, table.c.instance_uuid)
    if owned is not None:
        where.append(owned)
    soft_delete_where(InstanceMetadata, *where)


@api(USER, readonly=True)
def instance_system_metadata_get(context: Any, instance_uuid: str) -> dict[str, Any]:
    """The instance's system metadata as a dict (rows as the context's read_deleted sees them)."""
    return _metadata_get(context, InstanceSystemMetadata, instance_uuid, context.read_deleted)


@api(USER)
def instance_system_metadata_update(
    context: Any, instance_uuid: str, metadata: dict[str, Any], delete: bool
) -> None:
    """Set the keys of ``metadata`` in the instance's system metadata (with ``delete``,
    remove the others).

    Works on the live rows whatever the context's read_deleted (nova, reading with it,
    could update a deleted row in place and leave the key missing).
    """
    _metadata_update(context, InstanceSystemMetadata, instance_uuid, metadata, delete)


# -- info cache ------------------------------------------------------------------------------


@api(USER, readonly=True)
def instance_info_cache_get(context: Any, instance_uuid: str) -> Any:
    """The instance's info cache row (as the context's read_deleted sees it), or None."""
    stmt = sa.select(InstanceInfoCache).where(InstanceInfoCache.instance_uuid == instance_uuid)
    visible = read_deleted_clause(InstanceInfoCache, context.read_deleted)
    if visible is not None:
        stmt = stmt.where(visible)
    owned = _owned_by_context(context, InstanceInfoCache.instance_uuid)
    if owned is not None:
        stmt = stmt.where(owned)
    return first(stmt)


@api(USER)
def instance_info_cache_update(context: Any, instance_uuid: str, values: dict[str, Any]) -> Any:
    """Set ``values`` on the instance's info cache, creating the row if it has none; return it.

    InstanceInfoCacheNotFound when the row was deleted (with its instance).
    """
    values = clean_values(InstanceInfoCache, values)
    _require_owned(context, instance_uuid)
    row = _info_cache_row(instance_uuid)
    if row is None:
        try:
            with savepoint():
                return create(InstanceInfoCache, {**values, "instance_uuid": instance_uuid})
        except ForeignKeyViolation:
            raise exception.InstanceNotFound(instance_id=instance_uuid) from None
        except DuplicateEntry:
            # Another caller created it meanwhile: update theirs.
            row = _info_cache_row(instance_uuid)
            if row is None:
                raise
    if row.deleted:
        raise exception.InstanceInfoCacheNotFound(instance_uuid=instance_uuid)
    return update(row, values)


def _info_cache_row(instance_uuid: Any) -> Any:
    # Deleted rows too: instance_uuid is unique whatever the row's state.
    return first(
        sa.select(InstanceInfoCache)
        .where(InstanceInfoCache.instance_uuid == instance_uuid)
        .execution_options(populate_existing=True)
    )


@api(USER)
def instance_info_cache_delete(context: Any, instance_uuid: str) -> None:
    """Soft-delete the instance's info cache (nothing happens if it has none)."""
    where = [InstanceInfoCache.instance_uuid == instance_uuid]
    owned = _owned_by_context(context, InstanceInfoCache.instance_uuid)
    if owned is not None:
        where.append(owned)
    soft_delete_where(InstanceInfoCache, *where)


# -- faults ----------------------------------------------------------------------------------


def _fault_dict(row: Any) -> dict[str, Any]:
    # A model row maps its columns through keys() (iterating it yields pairs).
    return dict(row)


@api()
def instance_fault_create(context: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Record a fault of an instance; return it as a dict."""
    values = clean_values(InstanceFault, values)
    require_instance(values.get("instance_uuid"))
    return _fault_dict(create(InstanceFault, values))


@api(readonly=True)
def instance_fault_get_by_instance_uuids(
    context: Any, instance_uuids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """{uuid: [its live faults as dicts, newest first]} for every uuid asked for."""
    if isinstance(instance_uuids, str | bytes) or not isinstance(instance_uuids, Iterable):
        raise InvalidQuery(f"instance_uuids must be a list of uuids, got {instance_uuids!r}")
    uuids = list(instance_uuids)
    if not uuids:
        return {}
    table = InstanceFault.__table__
    stmt = (
        sa.select(table)
        .where(table.c.instance_uuid.in_(uuids), live(table))
        .order_by(table.c.created_at.desc(), table.c.id.desc())
    )
    faults: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
    for row in execute(stmt).mappings():
        faults[row["instance_uuid"]].append(dict(row))
    return faults

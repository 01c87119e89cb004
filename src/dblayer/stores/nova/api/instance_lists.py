"""nova DB API: lists of instances (``instance_get_all*``, ``instance_get_active_by_window_joined``).

Every function returns a list of plain dicts, one per instance: its columns, ``name``,
the relationships the call loads (``info_cache`` an object or None, ``security_groups``
and the others lists of row objects), and always ``metadata`` and ``system_metadata``:
lists of metadata row objects read by separate IN-queries, ``[]`` when not asked for.

``instance_get_all_by_filters`` takes every filter nova accepted. Where it differs from
nova on purpose:

- a ``metadata`` / ``system_metadata`` filter ``{k: v}`` needs one live row with key
  ``k`` AND value ``v`` (nova matched the key and the value in possibly different rows,
  so ``{'a': '1'}`` also matched ``a=2, b=1``);
- regex filters behave the same on every backend: case-sensitive, on the text form of
  the column (integers as digits, booleans as ``'True'``/``'False'`` like Python's
  ``str()``, datetimes as ``YYYY-MM-DD HH:MM:SS.ffffff``); NULL never matches (a ``None``
  value means IS NULL). Patterns keep to what PostgreSQL, MariaDB (PCRE) and Python
  regexes share: anchors, ``.``, classes, quantifiers, alternation, groups, ``(?:...)``,
  lookarounds, ``\\d \\s \\w``; constructs they read differently (``\\b``, inline flags,
  named groups, POSIX ``[:classes:]``, ``{,n}``) and patterns Python cannot compile are
  rejected with InvalidQuery;
- paging by a marker returns every row exactly once, NULL sort keys included (NULL
  sorts as the smallest value);
- neither ``filters`` nor ``columns_to_join`` is ever modified;
- a ``None`` inside a list of exact values also matches NULL; a list filter that is
  empty matches nothing; filter values of the wrong type raise InvalidQuery.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

from dblayer.core import (
    DBLayerError,
    InvalidQuery,
    RowObjects,
    live,
    paginate,
    sort_keys,
    utcnow,
)

from .. import exception
from ..context import authorize_project_context, is_user_context
from ..facade import get_database
from ..models import (
    BlockDeviceMapping,
    Instance,
    InstanceInfoCache,
    InstanceMetadata,
    InstanceSystemMetadata,
    PciDevice,
    SecurityGroup,
    SecurityGroupInstanceAssociation,
)
from ._base import ADMIN, USER, api, execute, model_query, read_deleted_clause

__all__ = [
    "instance_get_active_by_window_joined",
    "instance_get_all",
    "instance_get_all_by_filters",
    "instance_get_all_by_host",
    "instance_get_all_by_host_and_node",
    "instance_get_all_by_host_and_not_type",
    "instance_get_all_hung_in_rebooting",
]

# nova's vm_states.SOFT_DELETED and task_states.REBOOTING.
SOFT_DELETED = "soft-delete"
REBOOTING = "rebooting"

# Filled by separate queries, never joined (nova's "manual joins").
_MANUAL = ("metadata", "system_metadata", "pci_devices")
_DEFAULT_JOINS = ("info_cache", "security_groups")
_DEFAULT_MANUAL = ("metadata", "system_metadata")

# Filters matched exactly (scalar: =, None: IS NULL, collection: IN), as nova listed them.
_EXACT_KEYS = (
    "project_id",
    "user_id",
    "image_ref",
    "vm_state",
    "instance_type_id",
    "uuid",
    "host",
    "task_state",
)
_METADATA_KEYS = {"metadata": InstanceMetadata, "system_metadata": InstanceSystemMetadata}
_COLLECTIONS = (list, tuple, set, frozenset)

# Instance uuids per IN-query: well under every backend's bound-parameter limit.
_IN_CHUNK = 1000

# Driver codes of a regex the server cannot compile (PostgreSQL SQLSTATE, MariaDB errno).
_PG_BAD_REGEX = "2201B"
_MY_BAD_REGEX = {1139}


# -- public calls ----------------------------------------------------------------------------


@api(USER, readonly=True)
def instance_get_all(
    context: Any, columns_to_join: list[str] | None = None
) -> list[dict[str, Any]]:
    """All instances the context may see (its read_deleted; a user: its project's)."""
    joins, manual = _split_joins(columns_to_join)
    stmt = model_query(context, Instance).where(*_owner_clauses(context))
    return _fill(context, _fetch(stmt.order_by(Instance.id), joins), joins, manual)


@api(USER, readonly=True)
def instance_get_all_by_filters(
    context: Any,
    filters: Mapping[str, Any] | None,
    sort_key: str = "created_at",
    sort_dir: str = "desc",
    limit: int | None = None,
    marker: str | None = None,
    columns_to_join: list[str] | None = None,
    use_slave: bool = False,
) -> list[dict[str, Any]]:
    """The instances matching every filter, ordered by sort_key, created_at, id (sort_dir)."""
    joins, manual = _split_joins(columns_to_join)
    keys = sort_keys(Instance, [sort_key, "created_at", "id"], sort_dir)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidQuery(f"limit must be None or a non-negative integer, got {limit!r}")
    where, has_regex = _filter_clauses(context, filters)
    if limit == 0:
        return []
    marker_row = _marker_row(context, marker, keys) if marker is not None else None
    backend = get_database().backend
    # No read_deleted filter: nova's list shows deleted instances unless filtered by 'deleted'.
    stmt = paginate(
        sa.select(Instance).where(*where), keys, backend=backend, marker=marker_row, limit=limit
    )
    return _fill(context, _fetch(stmt, joins, has_regex), joins, manual)


@api(ADMIN, readonly=True)
def instance_get_all_by_host(
    context: Any,
    host: str | None,
    columns_to_join: list[str] | None = None,
    use_slave: bool = False,
) -> list[dict[str, Any]]:
    """Instances on ``host`` (context read_deleted); columns_to_join picks the metadata fills."""
    # Here columns_to_join only chooses the manual fills; info_cache and groups are always joined.
    manual = _DEFAULT_MANUAL if columns_to_join is None else _names(columns_to_join)
    manual = tuple(name for name in _MANUAL if name in manual)
    stmt = model_query(context, Instance).where(_equals("host", Instance.host, host))
    rows = _fetch(stmt.order_by(Instance.id), _DEFAULT_JOINS)
    return _fill(context, rows, _DEFAULT_JOINS, manual)


@api(ADMIN, readonly=True)
def instance_get_all_by_host_and_node(
    context: Any, host: str | None, node: str | None
) -> list[dict[str, Any]]:
    """Instances on ``host`` and ``node`` (context read_deleted), nothing joined or filled."""
    stmt = model_query(context, Instance).where(
        _equals("host", Instance.host, host), _equals("node", Instance.node, node)
    )
    return _fill(context, _fetch(stmt.order_by(Instance.id), ()), (), ())


@api(ADMIN, readonly=True)
def instance_get_all_by_host_and_not_type(
    context: Any, host: str | None, type_id: int | None = None
) -> list[dict[str, Any]]:
    """Instances on ``host`` whose instance_type_id is not ``type_id`` (None: is not NULL)."""
    type_id = _check_value("type_id", Instance.instance_type_id, type_id)
    # SQL's !=: an instance without a type matches neither a type_id nor None (as nova).
    other_type = (
        Instance.instance_type_id.is_not(None)
        if type_id is None
        else Instance.instance_type_id != type_id
    )
    stmt = model_query(context, Instance).where(_equals("host", Instance.host, host), other_type)
    rows = _fetch(stmt.order_by(Instance.id), _DEFAULT_JOINS)
    return _fill(context, rows, _DEFAULT_JOINS, _DEFAULT_MANUAL)


@api(ADMIN, readonly=True)
def instance_get_all_hung_in_rebooting(
    context: Any, reboot_window: int | float
) -> list[dict[str, Any]]:
    """Instances rebooting and not updated for ``reboot_window`` seconds, nothing filled."""
    if isinstance(reboot_window, bool) or not isinstance(reboot_window, int | float):
        raise InvalidQuery(f"reboot_window must be a number of seconds, got {reboot_window!r}")
    cutoff = utcnow() - dt.timedelta(seconds=reboot_window)
    stmt = model_query(context, Instance).where(
        Instance.updated_at <= cutoff, Instance.task_state == REBOOTING
    )
    return _fill(context, _fetch(stmt.order_by(Instance.id), ()), (), ())


@api(USER, readonly=True)
def instance_get_active_by_window_joined(
    context: Any,
    begin: dt.datetime,
    end: dt.datetime | None = None,
    project_id: str | None = None,
    host: str | None = None,
) -> list[dict[str, Any]]:
    """Instances (deleted ones too) not terminated before ``begin`` and launched before ``end``.

    Unlike nova, a user context sees only its own project's instances here (asking for
    another project is Forbidden); admins see every project, as in nova.
    """
    begin = _naive_utc("begin", begin)
    if is_user_context(context):
        authorize_project_context(context, project_id or context.project_id)
        project_id = context.project_id
    # As nova: no read_deleted filter here (usage reports count deleted instances).
    where = [sa.or_(Instance.terminated_at.is_(None), Instance.terminated_at > begin)]
    if end:
        where.append(Instance.launched_at < _naive_utc("end", end))
    if project_id:
        where.append(_equals("project_id", Instance.project_id, project_id))
    if host:
        where.append(_equals("host", Instance.host, host))
    stmt = sa.select(Instance).where(*where).order_by(Instance.id)
    rows = _fetch(stmt, _DEFAULT_JOINS)
    return _fill(context, rows, _DEFAULT_JOINS, _DEFAULT_MANUAL)


# -- joins and the dicts returned ------------------------------------------------------------


@functools.cache
def _relationship_names() -> tuple[str, ...]:
    return tuple(sorted(rel.key for rel in sa.inspect(Instance).relationships))


def _names(columns_to_join: Any) -> tuple[str, ...]:
    """The relationship names of ``columns_to_join`` (a list), checked; a copy, never mutated."""
    if isinstance(columns_to_join, str) or not isinstance(columns_to_join, Iterable):
        raise InvalidQuery(
            f"columns_to_join must be a list of relationship names, got {columns_to_join!r}"
        )
    names = tuple(columns_to_join)
    allowed = _relationship_names()
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise InvalidQuery(
            f"instances have no relationship {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(allowed)}"
        )
    return names


def _split_joins(columns_to_join: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(relationships loaded with the instances, relationships filled by separate queries)."""
    if columns_to_join is None:
        return _DEFAULT_JOINS, _DEFAULT_MANUAL
    names = _names(columns_to_join)
    joins = tuple(dict.fromkeys(n for n in names if n not in _MANUAL))
    manual = tuple(n for n in _MANUAL if n in names)
    return joins, manual


def _fetch(
    stmt: sa.Select[Any], joins: Sequence[str], has_regex: bool = False
) -> list[dict[str, Any]]:
    """The instances ``stmt`` selects as dicts of their columns and ``joins`` (detached
    objects: info_cache one or None, the others lists), fresh from the database.

    Core statements on the unit's Connection, the rows made into objects directly (the
    ORM's loading costs several times the SQL): the instances, then one IN-query per
    relationship joined, as the ORM's selectinload would send them.
    """
    try:
        rows = execute(stmt).mappings().all()
    except DBLayerError as error:
        if has_regex and _is_bad_regex(error):
            raise InvalidQuery(
                f"the server rejected a regular expression filter: {error}"
            ) from None
        raise
    uuids = [row["uuid"] for row in rows if row["uuid"] is not None]
    loaded = {name: _JOINED[name](rows, uuids) for name in joins}
    fetched = []
    for row in rows:
        values = dict(row)  # the columns under their attribute names (the same for Instance)
        for name, found in loaded.items():
            value = found.get(row["uuid"])
            values[name] = value if name == "info_cache" else list(value or ())
        fetched.append(values)
    return fetched


def _among(column: Any, values: list[str]) -> sa.ColumnElement[bool]:
    """``column`` is one of the strings ``values``: on PostgreSQL ``= ANY(array)``, one
    parameter (an IN list of a hundred costs PostgreSQL's driver and SQLAlchemy several
    times the lookup: its text is new each time); IN elsewhere."""
    if get_database().backend == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(sa.String())))
    return column.in_(values)


def _chunks(values: Sequence[Any]) -> Iterable[list[Any]]:
    distinct = list(dict.fromkeys(values))
    for start in range(0, len(distinct), _IN_CHUNK):
        yield distinct[start : start + _IN_CHUNK]


def _info_caches(rows: Sequence[Any], uuids: Sequence[str]) -> dict[str, Any]:
    """{instance uuid: its info cache object} (the relationship: any row, by uuid)."""
    table = InstanceInfoCache.__table__
    make = _row_objects(InstanceInfoCache).make
    found: dict[str, Any] = {}
    for chunk in _chunks(uuids):
        stmt = sa.select(table).where(_among(table.c.instance_uuid, chunk)).order_by(table.c.id)
        for row in execute(stmt).mappings():
            found.setdefault(row["instance_uuid"], make(row))
    return found


def _security_groups(rows: Sequence[Any], uuids: Sequence[str]) -> dict[str, list[Any]]:
    """{instance uuid: its live groups through live links} (a deleted instance has none);
    a group linked to several instances is one object, as in a Session."""
    links, groups = SecurityGroupInstanceAssociation.__table__, SecurityGroup.__table__
    alive = [row["uuid"] for row in rows if row["uuid"] is not None and row["deleted"] == 0]
    make = _row_objects(SecurityGroup).make
    objects: dict[Any, Any] = {}
    found: dict[str, list[Any]] = defaultdict(list)
    for chunk in _chunks(alive):
        stmt = (
            sa.select(links.c.instance_uuid.label("link_instance_uuid"), *groups.columns)
            .select_from(
                links.join(
                    groups,
                    sa.and_(groups.c.id == links.c.security_group_id, live(links), live(groups)),
                )
            )
            .where(_among(links.c.instance_uuid, chunk))
            .order_by(links.c.id)
        )
        for row in execute(stmt).mappings():
            group = objects.get(row["id"])
            if group is None:
                group = objects[row["id"]] = make(row)
            if group not in found[row["link_instance_uuid"]]:
                found[row["link_instance_uuid"]].append(group)
    return found


def _block_device_mappings(rows: Sequence[Any], uuids: Sequence[str]) -> dict[str, list[Any]]:
    """{instance uuid: its live block device mappings}."""
    return _by_uuid(BlockDeviceMapping, uuids, live(BlockDeviceMapping))


_JOINED = {
    "info_cache": _info_caches,
    "security_groups": _security_groups,
    "block_device_mapping": _block_device_mappings,
}


def _is_bad_regex(error: BaseException) -> bool:
    orig = getattr(error.__cause__, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) == _PG_BAD_REGEX:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in _MY_BAD_REGEX


@functools.cache
def _column_keys() -> tuple[str, ...]:
    return tuple(attr.key for attr in sa.inspect(Instance).column_attrs)


def _fill(
    context: Any, instances: list[dict[str, Any]], joins: Sequence[str], manual: Sequence[str]
) -> list[dict[str, Any]]:
    """nova's instance dicts (``instances`` from _fetch, completed in place): columns, name,
    ``joins``, and the ``manual`` fills."""
    uuids = [inst["uuid"] for inst in instances if inst["uuid"] is not None]
    fills: dict[str, dict[str, list[Any]]] = {}
    if "metadata" in manual and "system_metadata" in manual:
        fills["metadata"], fills["system_metadata"] = _both_metadata(context, uuids)
    elif "metadata" in manual:
        fills["metadata"] = _by_instance(context, InstanceMetadata, uuids)
    elif "system_metadata" in manual:
        fills["system_metadata"] = _by_instance(context, InstanceSystemMetadata, uuids)
    if "pci_devices" in manual:
        # Only the devices allocated to the instance, as nova's manual join read them.
        fills["pci_devices"] = _by_instance(
            context, PciDevice, uuids, PciDevice.status == "allocated"
        )
    for values in instances:
        uuid = values["uuid"]
        values["name"] = _name(values)
        # Always present, [] when not asked for (nova set both keys on every dict).
        for name in _DEFAULT_MANUAL:
            values[name] = list(fills.get(name, {}).get(uuid, ()))
        if "pci_devices" in fills:
            values["pci_devices"] = list(fills["pci_devices"].get(uuid, ()))
    return instances


def _name(values: dict[str, Any]) -> Any:
    """The instance's ``name`` (Instance.name) from its column values."""
    try:
        return Instance.name_template % values["id"]
    except TypeError:  # a template naming columns: the model's own property fills it
        return _row_objects(Instance).make(values).name


def _by_instance(
    context: Any, model: Any, uuids: Sequence[str], *where: sa.ColumnElement[bool]
) -> dict[str, list[Any]]:
    """The rows of ``model`` (context read_deleted) of the instances ``uuids``, by uuid."""
    visible = read_deleted_clause(model, context.read_deleted)
    return _by_uuid(model, uuids, *where, *([] if visible is None else [visible]))


def _both_metadata(
    context: Any, uuids: Sequence[str]
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """``_by_instance`` of metadata and of system metadata in one query (the two tables have
    the same columns), each row tagged with the table it came from."""
    models = (InstanceMetadata, InstanceSystemMetadata)
    found: tuple[dict[str, list[Any]], ...] = (defaultdict(list), defaultdict(list))
    makes = [_row_objects(model).make for model in models]
    for chunk in _chunks(uuids):
        parts = []
        for kind, model in enumerate(models):
            table = model.__table__
            visible = read_deleted_clause(model, context.read_deleted)
            parts.append(
                sa.select(sa.literal(kind, sa.Integer).label("kind"), *table.columns).where(
                    _among(table.c.instance_uuid, chunk), *([] if visible is None else [visible])
                )
            )
        both = sa.union_all(*parts).subquery("both_metadata")
        stmt = sa.select(*both.columns).order_by(both.c.kind, both.c.id)
        for row in execute(stmt).mappings():
            kind = row["kind"]
            found[kind][row["instance_uuid"]].append(makes[kind](row))
    return found[0], found[1]


def _by_uuid(
    model: Any, uuids: Sequence[str], *where: sa.ColumnElement[bool]
) -> dict[str, list[Any]]:
    """{instance uuid: the rows of ``model`` matching ``where``, oldest first}, as detached
    objects made from Core rows."""
    rows: dict[str, list[Any]] = defaultdict(list)
    table = model.__table__
    make = _row_objects(model).make
    for chunk in _chunks(uuids):
        stmt = (
            sa.select(table)
            .where(_among(table.c.instance_uuid, chunk), *where)
            .order_by(table.c.id)
        )
        for row in execute(stmt).mappings():
            rows[row["instance_uuid"]].append(make(row))
    return rows


@functools.cache
def _row_objects(model: Any) -> RowObjects:
    return RowObjects(model)


# -- filters ---------------------------------------------------------------------------------


def _owner_clauses(context: Any) -> list[sa.ColumnElement[bool]]:
    """A non-admin sees its project's instances (its own, when it has no project)."""
    if context.is_admin:
        return []
    if context.project_id:
        return [Instance.project_id == context.project_id]
    return [Instance.user_id == context.user_id]


def _filter_clauses(context: Any, filters: Any) -> tuple[list[sa.ColumnElement[bool]], bool]:
    """The WHERE clauses of ``filters`` (never modified), and whether any is a regex."""
    if filters is None:
        filters = {}
    if not isinstance(filters, Mapping):
        raise InvalidQuery(f"filters must be a dict, got {filters!r}")
    remaining = dict(filters)  # a copy: the caller's dict is never touched
    where: list[sa.ColumnElement[bool]] = []

    if "changes-since" in remaining:
        since = _naive_utc("changes-since", remaining.pop("changes-since"))
        where.append(Instance.updated_at >= since)

    if "deleted" in remaining:
        if _flag("deleted", remaining.pop("deleted")):
            # deleted != 0 rather than nova's deleted = id: the same rows, whoever deleted them.
            gone = Instance.deleted != 0
            if _flag("soft_deleted", remaining.pop("soft_deleted", True)):
                gone = sa.or_(gone, Instance.vm_state == SOFT_DELETED)
            where.append(gone)
        else:
            where.append(Instance.deleted == 0)
            if not _flag("soft_deleted", remaining.pop("soft_deleted", False)):
                where.append(sa.or_(Instance.vm_state != SOFT_DELETED, Instance.vm_state.is_(None)))
    remaining.pop("soft_deleted", None)  # meaningless without 'deleted' (nova ignored it)

    if "cleaned" in remaining:
        where.append(Instance.cleaned == (1 if _flag("cleaned", remaining.pop("cleaned")) else 0))

    if not context.is_admin:
        # Overrides whatever project (or user) the caller asked for.
        if context.project_id:
            remaining["project_id"] = context.project_id
        else:
            remaining["user_id"] = context.user_id

    for key in _EXACT_KEYS:
        if key in remaining:
            where.append(_equals(key, getattr(Instance, key), remaining.pop(key)))
    for key, model in _METADATA_KEYS.items():
        if key in remaining:
            where.extend(_metadata_clauses(key, model, remaining.pop(key)))

    tags = remaining.pop("filter", None)

    columns = set(_column_keys())
    regex_keys = [key for key in remaining if isinstance(key, str) and key in columns]
    for key in regex_keys:
        where.append(_regex(key, getattr(Instance, key), remaining[key]))

    if tags is not None:
        where.extend(_tag_clauses(tags))
    return where, bool(regex_keys)


def _flag(name: str, value: Any) -> bool:
    # A string such as 'False' would be truthy: make the caller say what it means.
    if isinstance(value, str):
        raise InvalidQuery(f"filter {name!r} must be True or False, got {value!r}")
    return bool(value)


def _base_type(column: Any) -> Any:
    col_type = column.type
    return col_type.impl if isinstance(col_type, TypeDecorator) else col_type


def _check_value(name: str, column: Any, value: Any) -> Any:
    """``value`` fit for comparing with ``column`` on every backend, or InvalidQuery."""
    if value is None:
        return None
    kind = _base_type(column)
    if isinstance(kind, sa.Boolean):
        if isinstance(value, bool):
            return value
        expected = "True or False"
    elif isinstance(kind, sa.Integer):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        # Integers often arrive as text (query strings); SQLite and MariaDB would coerce.
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        expected = "an integer"
    elif isinstance(kind, sa.DateTime):
        return _naive_utc(name, value)
    elif isinstance(kind, sa.String):
        if isinstance(value, str):
            return value
        expected = "a string"
    else:  # pragma: no cover - every instance column is one of the above
        return value
    raise InvalidQuery(f"filter {name!r} needs {expected} (or None), got {value!r}")


def _equals(name: str, column: Any, value: Any) -> sa.ColumnElement[bool]:
    """Exact match: scalar =, None IS NULL, collection IN (None in it: or IS NULL)."""
    if isinstance(value, _COLLECTIONS):
        values = [_check_value(name, column, v) for v in value]
        present = list(dict.fromkeys(v for v in values if v is not None))
        clauses: list[sa.ColumnElement[bool]] = []
        if present:
            clauses.append(column.in_(present))
        if None in values:
            clauses.append(column.is_(None))
        return sa.or_(*clauses) if clauses else sa.false()
    if isinstance(value, Mapping):
        raise InvalidQuery(f"filter {name!r} needs a value or a list of values, got {value!r}")
    checked = _check_value(name, column, value)
    return column.is_(None) if checked is None else column == checked


def _metadata_clauses(name: str, model: Any, value: Any) -> list[sa.ColumnElement[bool]]:
    """One EXISTS per (key, value): a live row of the instance with that key AND that value.

    nova matched the key and the value independently (possibly in different rows);
    matching them in the same row is what the filter means (notes §7).
    """
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, Mapping) for i in items):
        raise InvalidQuery(f"filter {name!r} needs a dict or a list of dicts, got {value!r}")
    clauses = []
    for item in items:
        for key, val in item.items():
            clauses.append(
                sa.exists().where(
                    model.instance_uuid == Instance.uuid,
                    live(model),
                    _equals(f"{name} key", model.key, key),
                    _equals(f"{name} value", model.value, val),
                )
            )
    return clauses


def _text_of(column: Any) -> Any:
    """``column`` as text, the same text on every backend (see the module's docstring)."""
    kind = _base_type(column)
    if isinstance(kind, sa.Boolean):
        return sa.case((column == sa.true(), "True"), (column == sa.false(), "False"))
    if isinstance(kind, sa.DateTime):
        backend = get_database().backend
        if backend == "postgresql":
            return sa.func.to_char(column, "YYYY-MM-DD HH24:MI:SS.US")
        if backend == "mysql":
            return sa.func.date_format(column, "%Y-%m-%d %H:%i:%s.%f")
        # SQLite stores SQLAlchemy's DateTime as this very text.
        return sa.type_coerce(column, sa.String())
    if isinstance(kind, sa.String) and not isinstance(kind, sa.Enum):
        return sa.type_coerce(column, sa.String())
    return sa.cast(column, sa.String())


def _regex_flags() -> str | None:
    """Flags making the match case-sensitive whatever the collation (MariaDB/MySQL only)."""
    db = get_database()
    if db.backend != "mysql":
        return None  # PostgreSQL's ~ and SQLite's Python re.search already respect case
    # MariaDB's PCRE takes an inline (?-i); MySQL 8's REGEXP_LIKE the match type 'c'.
    return "-i" if db.facts.is_mariadb else "c"


def _regex(name: str, column: Any, value: Any) -> sa.ColumnElement[bool]:
    """``column`` matches the regular expression ``str(value)`` (None: IS NULL)."""
    if value is None:
        return column.is_(None)
    if isinstance(value, (*_COLLECTIONS, Mapping)):
        raise InvalidQuery(f"filter {name!r} needs one regular expression, got {value!r}")
    pattern = str(value)
    _check_portable(name, pattern)
    try:
        re.compile(pattern)
    except re.error as e:
        raise InvalidQuery(
            f"filter {name!r}: {pattern!r} is not a regular expression: {e}"
        ) from None
    return _text_of(column).regexp_match(pattern, flags=_regex_flags())


# Escapes (consumed whole, so an escaped backslash or parenthesis is never misread), and the
# constructs the three regex dialects read differently: \b is a backspace to PostgreSQL; (?
# forms other than (?: and lookarounds (flags, named groups, comments); POSIX [:classes:];
# {,n} (a quantifier to Python, literal text to PostgreSQL and MariaDB).
_REGEX_TOKENS = re.compile(r"\\.|\(\?(?![:=!]|<[=!])|\[:[a-z]+:\]|\{,", re.DOTALL)


def _check_portable(name: str, pattern: str) -> None:
    """Reject regex constructs that would match differently on some backend."""
    for token in _REGEX_TOKENS.finditer(pattern):
        text = token.group()
        if text.startswith("\\") and text not in ("\\b", "\\B"):
            continue
        raise InvalidQuery(
            f"filter {name!r}: {text!r} in {pattern!r} does not mean the same on every "
            "database; use anchors, '.', [classes], quantifiers, |, (groups), (?:...), "
            "lookarounds and escapes such as \\d \\s \\w"
        )


def _tag_values(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, _COLLECTIONS):
        return list(value)
    return [value]


def _tagged(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """Instances having a live user metadata row that meets ``condition``."""
    subquery = sa.select(InstanceMetadata.instance_uuid).where(live(InstanceMetadata), condition)
    return Instance.uuid.in_(subquery)


def _tag_clauses(tags: Any) -> list[sa.ColumnElement[bool]]:
    """EC2-style tag filters: tag-key / tag-value (OR-ed together), tag:<key> (AND-ed)."""
    if not isinstance(tags, list | tuple):
        raise InvalidQuery(
            f"filter 'filter' needs a list of {{'name', 'value'}} dicts, got {tags!r}"
        )
    any_of: list[sa.ColumnElement[bool]] = []
    clauses: list[sa.ColumnElement[bool]] = []
    for block in tags:
        if not isinstance(block, Mapping):
            continue
        name = block.get("name")
        if not isinstance(name, str):
            continue
        values = _tag_values(block.get("value"))
        tag = name[4:]
        if name.startswith("tag-"):
            if tag not in ("key", "value"):
                raise exception.InvalidParameterValue(err=f"Invalid field name: {tag}")
            column = InstanceMetadata.key if tag == "key" else InstanceMetadata.value
            any_of.append(_equals(name, column, values))
        elif name.startswith("tag:"):
            clauses.append(
                _tagged(
                    sa.and_(
                        InstanceMetadata.key == tag,
                        _equals(name, InstanceMetadata.value, values),
                    )
                )
            )
    if any_of:
        clauses.append(_tagged(sa.or_(*any_of)))
    return clauses


# -- values ----------------------------------------------------------------------------------


def _naive_utc(name: str, value: Any) -> dt.datetime:
    """A naive UTC datetime from a datetime or an ISO 8601 string (aware ones converted)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidQuery(f"{name!r} must be a datetime, got {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise InvalidQuery(f"{name!r} must be a datetime, got {value!r}")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _marker_row(context: Any, marker: Any, keys: Sequence[Any]) -> Any:
    """The marker instance's sort-key values, read as the caller may see it; MarkerNotFound."""
    if not isinstance(marker, str):
        raise exception.MarkerNotFound(marker=marker)
    table = Instance.__table__
    columns = [table.c[key.name] for key in keys]
    stmt = model_query(context, Instance, *columns, project_only=True, base_model=Instance)
    row = execute(stmt.where(Instance.uuid == marker).limit(1)).first()
    if row is None:
        raise exception.MarkerNotFound(marker=marker)
    return row

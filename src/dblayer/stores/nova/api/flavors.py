"""nova DB API: flavors (instance types), their project access and extra specs
(notes §2.18, §3.7).

A flavor has two identifiers: the internal integer ``id`` (``flavor_get``) and the
public string ``flavorid`` (everything else). Getters return plain dicts: the columns
plus ``extra_specs`` as ``{key: value}`` of the live specs.

A non-admin context sees only public flavors and the private flavors its project was
granted (a live ``instance_type_projects`` row); for it another project's private
flavor does not exist. That applies to the getters, as in nova, and here also to the
extra-spec calls (nova's DB layer let any user read and write any flavor's specs; its
API layer did not).

Unlike nova, ``flavor_create`` is one transaction: the flavor, its extra specs and its
access rows are all stored or none is. Writers of one flavor's extra specs take turns
(the flavor row is locked), so concurrent ``flavor_extra_specs_update_or_create`` calls
on the same key leave exactly one live row and raise nothing.

nova's first migration stored five default flavors; here they are ``DEFAULT_FLAVORS``,
stored only on request by ``create_default_flavors(context)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from dblayer.core import DuplicateEntry, InvalidQuery, live, paginate, sort_keys, utcnow

from .. import exception
from ..facade import get_database
from ..models import InstanceTypeExtraSpecs, InstanceTypeProjects, InstanceTypes
from ._base import (
    ADMIN,
    USER,
    api,
    column_names,
    create,
    execute,
    fetch_all,
    model_query,
    replace_key_values,
    savepoint,
    soft_delete_where,
)
from ._checks import clean_value, clean_values, key_value, require_keys

__all__ = [
    "flavor_access_add",
    "flavor_access_get_by_flavor_id",
    "flavor_access_remove",
    "flavor_create",
    "flavor_destroy",
    "flavor_extra_specs_delete",
    "flavor_extra_specs_get",
    "flavor_extra_specs_get_item",
    "flavor_extra_specs_update_or_create",
    "flavor_get",
    "flavor_get_all",
    "flavor_get_by_flavor_id",
    "flavor_get_by_name",
]

T = InstanceTypes
FLAVORS = InstanceTypes.__table__
SPECS = InstanceTypeExtraSpecs.__table__
ACCESS = InstanceTypeProjects.__table__
FLAVOR_COLUMNS = column_names(InstanceTypes)

# The filters flavor_get_all understands.
FILTERS = ("min_memory_mb", "min_root_gb", "disabled", "is_public")

# Ids per IN-query when filling extra specs: far below every backend's parameter limit.
_CHUNK = 500

# The flavors nova's first migration stored (flavorid is a string column).
DEFAULT_FLAVORS: list[dict[str, Any]] = [
    {"name": name, "flavorid": flavorid, "memory_mb": memory_mb, "vcpus": vcpus,
     "root_gb": root_gb, "ephemeral_gb": 0, "swap": 0, "rxtx_factor": 1.0,
     "is_public": True, "disabled": False}
    for name, flavorid, memory_mb, vcpus, root_gb in (
        ("m1.tiny", "1", 512, 1, 1),
        ("m1.small", "2", 2048, 1, 20),
        ("m1.medium", "3", 4096, 2, 40),
        ("m1.large", "4", 8192, 4, 80),
        ("m1.xlarge", "5", 16384, 8, 160),
    )
]  # fmt: skip


# -- reading ---------------------------------------------------------------------------------


def _visible(context: Any) -> sa.ColumnElement[bool] | None:
    """For a non-admin context: the flavor is public or its project was granted it."""
    if context.is_admin:
        return None
    granted = (
        sa.select(ACCESS.c.id)
        .where(
            ACCESS.c.instance_type_id == FLAVORS.c.id,
            ACCESS.c.project_id == context.project_id,
            live(ACCESS),
        )
        .exists()
    )
    return sa.or_(FLAVORS.c.is_public.is_(True), granted)


def _flavor_query(context: Any, *columns: Any, read_deleted: str | None = None) -> sa.Select[Any]:
    """SELECT of flavors (``columns``, default all) as ``context`` may see them."""
    stmt = model_query(context, T, *(columns or (FLAVORS,)), read_deleted=read_deleted)
    visible = _visible(context)
    return stmt if visible is None else stmt.where(visible)


def _specs_by_flavor(ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """{flavor id: {key: value} of its live extra specs} for ``ids``."""
    wanted = list(dict.fromkeys(ids))
    specs: dict[int, dict[str, Any]] = {i: {} for i in wanted}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = execute(
            sa.select(SPECS.c.instance_type_id, SPECS.c.key, SPECS.c.value)
            .where(SPECS.c.instance_type_id.in_(chunk), live(SPECS))
            .order_by(SPECS.c.id)
        )
        for row in rows:
            specs[row.instance_type_id][row.key] = row.value
    return specs


def _flavor_dicts(stmt: sa.Select[Any]) -> list[dict[str, Any]]:
    """The flavors ``stmt`` selects, each a dict of its columns plus ``extra_specs``."""
    flavors = [dict(row) for row in execute(stmt).mappings()]
    specs = _specs_by_flavor(f["id"] for f in flavors)
    for flavor in flavors:
        flavor["extra_specs"] = specs[flavor["id"]]
    return flavors


def _one_flavor(stmt: sa.Select[Any]) -> dict[str, Any] | None:
    found = _flavor_dicts(stmt.limit(1))
    return found[0] if found else None


def _flavor_id(
    context: Any, flavorid: Any, *, lock: str | None = None, scoped: bool = False
) -> int:
    """The id of the live flavor with ``flavorid``; FlavorNotFound.

    ``scoped``: as the context may see it. ``lock``: 'share' holds the row against a
    concurrent destroy; 'update' also makes other writers of the flavor wait their turn.
    """
    flavorid = key_value(T, "flavorid", flavorid)
    stmt = sa.select(FLAVORS.c.id).where(FLAVORS.c.flavorid == flavorid, live(FLAVORS))
    if scoped:
        visible = _visible(context)
        if visible is not None:
            stmt = stmt.where(visible)
    stmt = stmt.order_by(FLAVORS.c.id).limit(1)
    if lock == "share":
        stmt = stmt.with_for_update(read=True)
    elif lock == "update":
        # FOR NO KEY UPDATE on PostgreSQL: inserts of child rows (their foreign-key check)
        # are not blocked by it.
        stmt = stmt.with_for_update(key_share=True)
    row = execute(stmt).first()
    if row is None:
        raise exception.FlavorNotFound(flavor_id=flavorid)
    return row.id


def _scoped_ids(context: Any, flavorid: Any) -> sa.Select[Any]:
    """SELECT of the ids of the live flavors with ``flavorid`` the context may see."""
    flavorid = key_value(T, "flavorid", flavorid)
    return _flavor_query(context, FLAVORS.c.id, read_deleted="no").where(
        FLAVORS.c.flavorid == flavorid
    )


@api(USER)
def flavor_get(context: Any, id: int) -> dict[str, Any]:  # noqa: A002 - nova's name
    """Get instance type by id."""
    flavor_id = key_value(T, "id", id)
    flavor = _one_flavor(_flavor_query(context).where(FLAVORS.c.id == flavor_id))
    if flavor is None:
        raise exception.FlavorNotFound(flavor_id=id)
    return flavor


@api(USER)
def flavor_get_by_name(context: Any, name: str) -> dict[str, Any]:
    """Get instance type by name."""
    name = key_value(T, "name", name)
    stmt = _flavor_query(context).where(FLAVORS.c.name == name)
    # With deleted rows visible, the live flavor first, then the oldest.
    flavor = _one_flavor(stmt.order_by(FLAVORS.c.deleted, FLAVORS.c.id))
    if flavor is None:
        raise exception.FlavorNotFoundByName(flavor_name=name)
    return flavor


@api(USER)
def flavor_get_by_flavor_id(
    context: Any,
    id: str,  # noqa: A002 - nova's name
    read_deleted: str | None = None,
) -> dict[str, Any]:
    """Get instance type by flavor id."""
    flavorid = key_value(T, "flavorid", id)
    stmt = _flavor_query(context, read_deleted=read_deleted).where(FLAVORS.c.flavorid == flavorid)
    # The live flavor wins over deleted ones with the same flavorid; among those, the oldest.
    flavor = _one_flavor(stmt.order_by(FLAVORS.c.deleted, FLAVORS.c.id))
    if flavor is None:
        raise exception.FlavorNotFound(flavor_id=flavorid)
    return flavor


def _filter_clauses(context: Any, filters: Any) -> list[sa.ColumnElement[bool]]:
    if filters is None:
        return []
    if not isinstance(filters, Mapping):
        raise InvalidQuery(f"filters must be a dict, got {filters!r}")
    unknown = sorted(str(k) for k in filters if k not in FILTERS)
    if unknown:
        raise InvalidQuery(
            f"unknown flavor filter {', '.join(unknown)}; allowed: {', '.join(FILTERS)}"
        )
    where: list[sa.ColumnElement[bool]] = []
    if "min_memory_mb" in filters:
        where.append(FLAVORS.c.memory_mb >= key_value(T, "memory_mb", filters["min_memory_mb"]))
    if "min_root_gb" in filters:
        where.append(FLAVORS.c.root_gb >= key_value(T, "root_gb", filters["min_root_gb"]))
    if "disabled" in filters:
        disabled = key_value(T, "disabled", filters["disabled"])
        column = FLAVORS.c.disabled
        where.append(column.is_(None) if disabled is None else column == disabled)
    if filters.get("is_public") is not None:
        public = key_value(T, "is_public", filters["is_public"])
        clause = FLAVORS.c.is_public == public
        if public and context.project_id is not None:
            # Public means also "private, but this project was granted it".
            granted = (
                sa.select(ACCESS.c.id)
                .where(
                    ACCESS.c.instance_type_id == FLAVORS.c.id,
                    ACCESS.c.project_id == context.project_id,
                    live(ACCESS),
                )
                .exists()
            )
            clause = sa.or_(clause, granted)
        where.append(clause)
    return where


@api(USER)
def flavor_get_all(
    context: Any,
    inactive: bool = False,
    filters: dict[str, Any] | None = None,
    sort_key: str = "flavorid",
    sort_dir: str = "asc",
    limit: int | None = None,
    marker: str | None = None,
) -> list[dict[str, Any]]:
    """Get all instance flavors."""
    if not isinstance(sort_key, str) or sort_key not in FLAVOR_COLUMNS:
        raise exception.InvalidSortKey(sort_key)
    keys = sort_keys(T, [sort_key, "id"], sort_dir)
    # Inactive flavors are the deleted ones.
    read_deleted = "yes" if inactive else "no"
    where = _filter_clauses(context, filters)
    marker_row = None
    if marker is not None:
        marker_row = _marker(context, marker, keys, read_deleted)
    stmt = paginate(
        _flavor_query(context, read_deleted=read_deleted).where(*where),
        keys,
        backend=get_database().backend,
        marker=marker_row,
        limit=limit,
    )
    return _flavor_dicts(stmt)


def _marker(context: Any, marker: Any, keys: list[Any], read_deleted: str) -> Any:
    """The sort-key values of the marker flavor (by flavorid, as the caller may see it,
    the live one first); MarkerNotFound."""
    if not isinstance(marker, str):
        raise exception.MarkerNotFound(marker=marker)
    columns = [FLAVORS.c[key.name] for key in keys]
    stmt = (
        _flavor_query(context, *columns, read_deleted=read_deleted)
        .where(FLAVORS.c.flavorid == marker)
        .order_by(FLAVORS.c.deleted, FLAVORS.c.id)
        .limit(1)
    )
    row = execute(stmt).first()
    if row is None:
        raise exception.MarkerNotFound(marker=marker)
    return row


# -- creating and destroying -----------------------------------------------------------------


def _specs_dict(specs: Any) -> dict[str, str]:
    """Extra specs (a dict of key -> value) checked against their columns."""
    if not isinstance(specs, Mapping):
        raise InvalidQuery(f"extra specs must be a dict of key -> value, got {specs!r}")
    return {
        clean_value(InstanceTypeExtraSpecs, "key", k): clean_value(
            InstanceTypeExtraSpecs, "value", v
        )
        for k, v in specs.items()
    }


def _projects_list(projects: Any) -> list[str]:
    if projects is None:
        return []
    if isinstance(projects, str | bytes) or not isinstance(projects, Iterable):
        raise InvalidQuery(f"projects must be a list of project ids, got {projects!r}")
    # Each project once, in the order given.
    return list(dict.fromkeys(clean_value(InstanceTypeProjects, "project_id", p) for p in projects))


def _insert_flavor(values: Any, projects: Any) -> int:
    """Store a flavor with its extra specs and access rows; return its id."""
    require_keys("flavor_create", values, "memory_mb", "vcpus")
    unknown = sorted(str(k) for k in values if k not in FLAVOR_COLUMNS and k != "extra_specs")
    if unknown:
        raise InvalidQuery(
            f"flavor values name unknown keys {', '.join(unknown)}; allowed: extra_specs "
            f"and the columns {', '.join(sorted(FLAVOR_COLUMNS))}"
        )
    columns = clean_values(T, {k: v for k, v in values.items() if k != "extra_specs"})
    specs = _specs_dict(values.get("extra_specs") or {})
    granted = _projects_list(projects)
    try:
        # A savepoint: a refused duplicate leaves an enclosing transaction usable.
        with savepoint():
            flavor_id = execute(sa.insert(FLAVORS).values(columns)).inserted_primary_key[0]
    except DuplicateEntry as e:
        if "flavorid" in exception.duplicate_columns(e, table="instance_types"):
            raise exception.FlavorIdExists(flavor_id=columns.get("flavorid")) from None
        raise exception.FlavorExists(name=columns.get("name")) from None
    if specs:
        execute(
            sa.insert(SPECS),
            [{"instance_type_id": flavor_id, "key": k, "value": v} for k, v in specs.items()],
        )
    if granted:
        execute(
            sa.insert(ACCESS), [{"instance_type_id": flavor_id, "project_id": p} for p in granted]
        )
    return flavor_id


@api(ADMIN)
def flavor_create(
    context: Any, values: dict[str, Any], projects: list[str] | None = None
) -> dict[str, Any]:
    """Create a new instance type."""
    flavor_id = _insert_flavor(values, projects)
    return _flavor_dicts(sa.select(FLAVORS).where(FLAVORS.c.id == flavor_id))[0]


@api(ADMIN)
def create_default_flavors(context: Any) -> list[dict[str, Any]]:
    """Store those of nova's five default flavors (``DEFAULT_FLAVORS``) whose name and
    flavorid no live flavor has; return the flavors stored (admin only)."""
    taken = execute(sa.select(FLAVORS.c.name, FLAVORS.c.flavorid).where(live(FLAVORS))).all()
    names = {r.name for r in taken}
    flavorids = {r.flavorid for r in taken}
    ids = [
        _insert_flavor(dict(flavor), None)
        for flavor in DEFAULT_FLAVORS
        if flavor["name"] not in names and flavor["flavorid"] not in flavorids
    ]
    if not ids:
        return []
    return _flavor_dicts(sa.select(FLAVORS).where(FLAVORS.c.id.in_(ids)).order_by(FLAVORS.c.id))


@api(ADMIN)
def flavor_destroy(context: Any, name: str) -> None:
    """Delete an instance type."""
    name = key_value(T, "name", name)
    row = execute(
        sa.select(FLAVORS.c.id)
        .where(FLAVORS.c.name == name, live(FLAVORS))
        .limit(1)
        .with_for_update()
    ).first()
    if row is None:
        raise exception.FlavorNotFoundByName(flavor_name=name)
    now = utcnow()
    # nova deleted the row object itself here, so updated_at moves too.
    execute(
        sa.update(FLAVORS)
        .where(FLAVORS.c.id == row.id)
        .values(deleted=FLAVORS.c.id, deleted_at=now, updated_at=now)
    )
    soft_delete_where(InstanceTypeExtraSpecs, SPECS.c.instance_type_id == row.id)
    soft_delete_where(InstanceTypeProjects, ACCESS.c.instance_type_id == row.id)


# -- access ----------------------------------------------------------------------------------


@api(ADMIN)
def flavor_access_get_by_flavor_id(context: Any, flavor_id: str) -> list[Any]:
    """Get flavor access by flavor id."""
    flavorid = key_value(T, "flavorid", flavor_id)
    ids = sa.select(FLAVORS.c.id).where(FLAVORS.c.flavorid == flavorid, live(FLAVORS))
    stmt = model_query(context, InstanceTypeProjects, read_deleted="no").where(
        InstanceTypeProjects.instance_type_id.in_(ids)
    )
    return fetch_all(stmt.order_by(InstanceTypeProjects.id))


@api(ADMIN)
def flavor_access_add(context: Any, flavor_id: str, project_id: str) -> Any:
    """Add flavor access for project."""
    project_id = clean_value(InstanceTypeProjects, "project_id", project_id)
    # Held (shared) until the end, so that a concurrent destroy cannot orphan the new row.
    type_id = _flavor_id(context, flavor_id, lock="share")
    try:
        with savepoint():
            return create(
                InstanceTypeProjects, {"instance_type_id": type_id, "project_id": project_id}
            )
    except DuplicateEntry:
        raise exception.FlavorAccessExists(flavor_id=flavor_id, project_id=project_id) from None


@api(ADMIN)
def flavor_access_remove(context: Any, flavor_id: str, project_id: str) -> None:
    """Remove flavor access for project."""
    type_id = _flavor_id(context, flavor_id)
    project_id = key_value(InstanceTypeProjects, "project_id", project_id)
    removed = soft_delete_where(
        InstanceTypeProjects,
        ACCESS.c.instance_type_id == type_id,
        ACCESS.c.project_id == project_id,
    )
    if not removed:
        raise exception.FlavorAccessNotFound(flavor_id=flavor_id, project_id=project_id)


# -- extra specs -----------------------------------------------------------------------------


@api(USER)
def flavor_extra_specs_get(context: Any, flavor_id: str) -> dict[str, Any]:
    """Get all extra specs for an instance type."""
    stmt = (
        sa.select(SPECS.c.key, SPECS.c.value)
        .where(SPECS.c.instance_type_id.in_(_scoped_ids(context, flavor_id)), live(SPECS))
        .order_by(SPECS.c.id)
    )
    return {row.key: row.value for row in execute(stmt)}


@api(USER)
def flavor_extra_specs_get_item(context: Any, flavor_id: str, key: str) -> dict[str, Any]:
    """Get extra specs by key and flavor_id."""
    key = key_value(InstanceTypeExtraSpecs, "key", key)
    stmt = sa.select(SPECS.c.value).where(
        SPECS.c.instance_type_id.in_(_scoped_ids(context, flavor_id)),
        SPECS.c.key == key,
        live(SPECS),
    )
    row = execute(stmt.limit(1)).first()
    if row is None:
        raise exception.FlavorExtraSpecsNotFound(extra_specs_key=key, flavor_id=flavor_id)
    return {key: row.value}


@api(USER)
def flavor_extra_specs_delete(context: Any, flavor_id: str, key: str) -> None:
    """Delete the given extra specs item."""
    key = key_value(InstanceTypeExtraSpecs, "key", key)
    removed = soft_delete_where(
        InstanceTypeExtraSpecs,
        SPECS.c.instance_type_id.in_(_scoped_ids(context, flavor_id)),
        SPECS.c.key == key,
    )
    if not removed:
        raise exception.FlavorExtraSpecsNotFound(extra_specs_key=key, flavor_id=flavor_id)


@api(USER)
def flavor_extra_specs_update_or_create(
    context: Any, flavor_id: str, extra_specs: dict[str, Any]
) -> None:
    """Create or update instance type extra specs (other keys are left as they are)."""
    specs = _specs_dict(extra_specs)
    # The flavor row stays locked until the call ends: writers of its specs take turns,
    # so no two insert the same key (nova retried on the duplicate instead).
    type_id = _flavor_id(context, flavor_id, lock="update", scoped=True)
    if not specs:
        return
    replace_key_values(InstanceTypeExtraSpecs, "instance_type_id", type_id, specs, delete=False)

"""nova DB API: host aggregates (notes §2.16, §2.17, §3.8). No call checks the context's role.

An aggregate comes back as a model object with its live hosts and metadata loaded:
``agg.hosts`` (host names), ``agg.metadetails`` (``{key: value}``) and
``agg.availability_zone`` (the ``availability_zone`` metadata value), which
``dict(agg)`` includes too. A deleted aggregate shows neither hosts nor metadata.
The lookups by host or metadata key return nova's shapes: lists of aggregates, or
``{key: set(values)}`` / ``{host: set(values)}`` maps.

Writers of one aggregate's metadata take turns (the aggregate row is locked until the
call ends), so concurrent ``aggregate_metadata_add`` calls writing the same keys, with
or without ``set_delete``, leave exactly one live row per key and raise nothing (nova
retried on the duplicate key ten times, then let it escape). ``aggregate_create`` is
one transaction with its metadata (nova used two). Aggregate names are unique among
live aggregates by a check before the write, as in nova (there is no constraint).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from dblayer.core import DuplicateEntry, InvalidQuery, InvalidValue, live

from .. import exception
from ..models import Aggregate, AggregateHost, AggregateMetadata
from ._base import (
    api,
    column_names,
    execute,
    fetch_all,
    first,
    model_query,
    read_deleted_clause,
    replace_key_values,
    savepoint,
    soft_delete_where,
)
from ._checks import clean_value, clean_values, key_value, require_keys

__all__ = [
    "aggregate_create",
    "aggregate_delete",
    "aggregate_get",
    "aggregate_get_all",
    "aggregate_get_by_host",
    "aggregate_get_by_metadata_key",
    "aggregate_host_add",
    "aggregate_host_delete",
    "aggregate_host_get_all",
    "aggregate_host_get_by_metadata_key",
    "aggregate_metadata_add",
    "aggregate_metadata_delete",
    "aggregate_metadata_get",
    "aggregate_metadata_get_by_host",
    "aggregate_metadata_get_by_metadata_key",
    "aggregate_update",
]

AGGREGATES = Aggregate.__table__
HOSTS = AggregateHost.__table__
METADATA = AggregateMetadata.__table__
AGGREGATE_COLUMNS = column_names(Aggregate)
# Keys of aggregate_create's / aggregate_update's values that are not columns.
VALUE_EXTRAS = ("availability_zone", "metadata")
AZ_KEY = "availability_zone"


# -- values ----------------------------------------------------------------------------------


def _aggregate_id(aggregate_id: Any) -> int:
    return key_value(Aggregate, "id", aggregate_id)


def _metadata_dict(metadata: Any) -> dict[str, str]:
    """Aggregate metadata (a dict of key -> value) checked against its columns."""
    if not isinstance(metadata, Mapping):
        raise InvalidQuery(f"metadata must be a dict of key -> value, got {metadata!r}")
    return {
        clean_value(AggregateMetadata, "key", k): clean_value(AggregateMetadata, "value", v)
        for k, v in metadata.items()
    }


def _split_values(function: str, values: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(column values, extras) of a caller's dict, which is left as it was; unknown keys
    are InvalidQuery."""
    require_keys(function, values)
    unknown = sorted(str(k) for k in values if k not in AGGREGATE_COLUMNS and k not in VALUE_EXTRAS)
    if unknown:
        raise InvalidQuery(
            f"{function}: unknown keys {', '.join(unknown)}; allowed: "
            f"{', '.join(VALUE_EXTRAS)} and the columns {', '.join(sorted(AGGREGATE_COLUMNS))}"
        )
    columns = clean_values(Aggregate, {k: v for k, v in values.items() if k in AGGREGATE_COLUMNS})
    extras = {k: values[k] for k in VALUE_EXTRAS if k in values}
    return columns, extras


def _check_name_free(name: Any, aggregate_id: int | None = None) -> None:
    """AggregateNameExists when another live aggregate is called ``name``."""
    stmt = sa.select(AGGREGATES.c.id).where(AGGREGATES.c.name == name, live(AGGREGATES))
    if aggregate_id is not None:
        stmt = stmt.where(AGGREGATES.c.id != aggregate_id)
    if execute(stmt.limit(1)).first() is not None:
        raise exception.AggregateNameExists(aggregate_name=name)


# -- reading ---------------------------------------------------------------------------------


def _loaded(stmt: sa.Select[Any], metadata: Any = None) -> sa.Select[Any]:
    """``stmt`` (a select of Aggregate) loading live hosts and (``metadata``) metadata."""
    return stmt.options(
        selectinload(Aggregate._hosts),
        selectinload(Aggregate._metadata if metadata is None else metadata),
    ).execution_options(populate_existing=True)


def _get(context: Any, aggregate_id: Any) -> Any:
    """The aggregate as the context's read_deleted sees it, loaded; AggregateNotFound."""
    aggregate_id = _aggregate_id(aggregate_id)
    row = first(_loaded(model_query(context, Aggregate).where(Aggregate.id == aggregate_id)))
    if row is None:
        raise exception.AggregateNotFound(aggregate_id=aggregate_id)
    return row


def _require(context: Any, aggregate_id: Any, *, lock: bool = False) -> int:
    """``aggregate_id`` if the context's read_deleted sees that aggregate; AggregateNotFound.

    ``lock`` holds the row until the call ends, so writers of its metadata take turns.
    """
    aggregate_id = _aggregate_id(aggregate_id)
    stmt = sa.select(AGGREGATES.c.id).where(AGGREGATES.c.id == aggregate_id)
    visible = read_deleted_clause(AGGREGATES, context.read_deleted)
    if visible is not None:
        stmt = stmt.where(visible)
    if lock:
        # FOR NO KEY UPDATE on PostgreSQL: host rows (their foreign-key check) may still
        # be inserted meanwhile.
        stmt = stmt.with_for_update(key_share=True)
    if execute(stmt).first() is None:
        raise exception.AggregateNotFound(aggregate_id=aggregate_id)
    return aggregate_id


@api()
def aggregate_get(context: Any, aggregate_id: int) -> Any:
    """Get a specific aggregate by id."""
    return _get(context, aggregate_id)


@api()
def aggregate_get_all(context: Any) -> list[Any]:
    """Get all aggregates."""
    return fetch_all(_loaded(model_query(context, Aggregate).order_by(Aggregate.id)))


def _with_host(host: Any) -> sa.ColumnElement[bool]:
    """The aggregate has live host ``host``."""
    return (
        sa.select(HOSTS.c.id)
        .where(HOSTS.c.aggregate_id == AGGREGATES.c.id, HOSTS.c.host == host, live(HOSTS))
        .exists()
    )


def _with_key(key: Any) -> sa.ColumnElement[bool]:
    """The aggregate has live metadata key ``key``."""
    return (
        sa.select(METADATA.c.id)
        .where(METADATA.c.aggregate_id == AGGREGATES.c.id, METADATA.c.key == key, live(METADATA))
        .exists()
    )


@api()
def aggregate_get_by_host(context: Any, host: str, key: str | None = None) -> list[Any]:
    """Get a list of aggregates that host belongs to (with metadata key ``key`` if given)."""
    host = key_value(AggregateHost, "host", host)
    # The host and metadata rows count only on a live aggregate (nova's joins said so).
    stmt = model_query(context, Aggregate).where(live(AGGREGATES), _with_host(host))
    if key:  # as nova: an empty key filters nothing
        stmt = stmt.where(_with_key(key_value(AggregateMetadata, "key", key)))
    return fetch_all(_loaded(stmt.order_by(Aggregate.id)))


@api()
def aggregate_get_by_metadata_key(context: Any, key: str) -> list[Any]:
    """Get the aggregates having metadata ``key``; their metadata holds that key only."""
    key = key_value(AggregateMetadata, "key", key)
    stmt = model_query(context, Aggregate).where(live(AGGREGATES), _with_key(key))
    only_key = Aggregate._metadata.and_(AggregateMetadata.key == key)
    return fetch_all(_loaded(stmt.order_by(Aggregate.id), only_key))


def _visible_aggregates(context: Any) -> list[sa.ColumnElement[bool]]:
    """Criteria on AGGREGATES: live (what nova's joins required) and the context's view."""
    where = [live(AGGREGATES)]
    visible = read_deleted_clause(AGGREGATES, context.read_deleted)
    if visible is not None:
        where.append(visible)
    return where


@api()
def aggregate_host_get_by_metadata_key(context: Any, key: str) -> dict[str, set[str]]:
    """{host: set(values of metadata ``key``)} over the aggregates having that key."""
    key = key_value(AggregateMetadata, "key", key)
    stmt = (
        sa.select(HOSTS.c.host, METADATA.c.value)
        .select_from(
            AGGREGATES.join(HOSTS, HOSTS.c.aggregate_id == AGGREGATES.c.id).join(
                METADATA, METADATA.c.aggregate_id == AGGREGATES.c.id
            )
        )
        .where(*_visible_aggregates(context), live(HOSTS), live(METADATA), METADATA.c.key == key)
    )
    found: defaultdict[str, set[str]] = defaultdict(set)
    for row in execute(stmt):
        found[row.host].add(row.value)
    return dict(found)


@api()
def aggregate_metadata_get_by_host(
    context: Any, host: str, key: str | None = None
) -> dict[str, set[str]]:
    """{key: set(values)} of the metadata of the aggregates ``host`` belongs to (``key`` only)."""
    host = key_value(AggregateHost, "host", host)
    stmt = (
        sa.select(METADATA.c.key, METADATA.c.value)
        .select_from(AGGREGATES.join(METADATA, METADATA.c.aggregate_id == AGGREGATES.c.id))
        .where(*_visible_aggregates(context), live(METADATA), _with_host(host))
    )
    if key:  # as nova: an empty key filters nothing
        stmt = stmt.where(METADATA.c.key == key_value(AggregateMetadata, "key", key))
    found: defaultdict[str, set[str]] = defaultdict(set)
    for row in execute(stmt):
        found[row.key].add(row.value)
    return dict(found)


@api()
def aggregate_metadata_get_by_metadata_key(
    context: Any, aggregate_id: int, key: str
) -> dict[str, set[str]]:
    """Get metadata for an aggregate by metadata key: ``{key: set(values)}`` or ``{}``."""
    aggregate_id = _aggregate_id(aggregate_id)
    key = key_value(AggregateMetadata, "key", key)
    stmt = (
        sa.select(METADATA.c.key, METADATA.c.value)
        .select_from(AGGREGATES.join(METADATA, METADATA.c.aggregate_id == AGGREGATES.c.id))
        .where(
            *_visible_aggregates(context),
            AGGREGATES.c.id == aggregate_id,
            METADATA.c.key == key,
            live(METADATA),
        )
    )
    found: defaultdict[str, set[str]] = defaultdict(set)
    for row in execute(stmt):
        found[row.key].add(row.value)
    return dict(found)


# -- metadata --------------------------------------------------------------------------------


def _write_metadata(aggregate_id: int, metadata: Mapping[str, str], set_delete: bool) -> None:
    """Make the aggregate's live metadata hold ``metadata`` (see replace_key_values); the
    caller holds the aggregate row locked (or has just created it)."""
    replace_key_values(AggregateMetadata, "aggregate_id", aggregate_id, metadata, delete=set_delete)


@api()
def aggregate_metadata_get(context: Any, aggregate_id: int) -> dict[str, str]:
    """Get metadata for the specified aggregate (rows as the context's read_deleted sees them)."""
    aggregate_id = _require(context, aggregate_id)
    stmt = sa.select(METADATA.c.key, METADATA.c.value).where(
        METADATA.c.aggregate_id == aggregate_id
    )
    visible = read_deleted_clause(METADATA, context.read_deleted)
    if visible is not None:
        stmt = stmt.where(visible)
    # Oldest first, so that with deleted rows included the newest value of a key wins.
    return {row.key: row.value for row in execute(stmt.order_by(METADATA.c.id))}


@api()
def aggregate_metadata_add(
    context: Any, aggregate_id: int, metadata: dict[str, Any], set_delete: bool = False
) -> None:
    """Add/update metadata; with ``set_delete``, also remove the keys not in ``metadata``."""
    values = _metadata_dict(metadata)
    aggregate_id = _require(context, aggregate_id, lock=True)
    _write_metadata(aggregate_id, values, bool(set_delete))


@api()
def aggregate_metadata_delete(context: Any, aggregate_id: int, key: str) -> None:
    """Delete the given metadata key."""
    aggregate_id = _require(context, aggregate_id)
    key = key_value(AggregateMetadata, "key", key)
    removed = soft_delete_where(
        AggregateMetadata, METADATA.c.aggregate_id == aggregate_id, METADATA.c.key == key
    )
    if not removed:
        raise exception.AggregateMetadataNotFound(aggregate_id=aggregate_id, metadata_key=key)


# -- hosts -----------------------------------------------------------------------------------


def _host_name(host: Any) -> str:
    if not isinstance(host, str):
        raise InvalidValue(f"aggregate_hosts.host takes a string, not {host!r}")
    return clean_value(AggregateHost, "host", host)


@api()
def aggregate_host_get_all(context: Any, aggregate_id: int) -> list[str]:
    """Get hosts for the specified aggregate (rows as the context's read_deleted sees them)."""
    aggregate_id = _require(context, aggregate_id)
    stmt = sa.select(HOSTS.c.host).where(HOSTS.c.aggregate_id == aggregate_id)
    visible = read_deleted_clause(HOSTS, context.read_deleted)
    if visible is not None:
        stmt = stmt.where(visible)
    return list(execute(stmt.order_by(HOSTS.c.id)).scalars())


@api()
def aggregate_host_add(context: Any, aggregate_id: int, host: str) -> None:
    """Add host to the aggregate."""
    host = _host_name(host)
    aggregate_id = _require(context, aggregate_id)
    try:
        # A savepoint: a refused duplicate leaves an enclosing transaction usable.
        with savepoint():
            execute(sa.insert(HOSTS).values(host=host, aggregate_id=aggregate_id))
    except DuplicateEntry:
        raise exception.AggregateHostExists(host=host, aggregate_id=aggregate_id) from None


@api()
def aggregate_host_delete(context: Any, aggregate_id: int, host: str) -> None:
    """Delete the given host from the aggregate."""
    aggregate_id = _require(context, aggregate_id)
    host = key_value(AggregateHost, "host", host)
    removed = soft_delete_where(
        AggregateHost, HOSTS.c.aggregate_id == aggregate_id, HOSTS.c.host == host
    )
    if not removed:
        raise exception.AggregateHostNotFound(aggregate_id=aggregate_id, host=host)


# -- aggregates ------------------------------------------------------------------------------


@api()
def aggregate_create(
    context: Any, values: dict[str, Any], metadata: dict[str, Any] | None = None
) -> Any:
    """Create a new aggregate with metadata; return it (hosts and metadata loaded)."""
    require_keys("aggregate_create", values, "name")
    columns, extras = _split_values("aggregate_create", values)
    meta = _metadata_dict(metadata) if metadata else {}
    if "metadata" in extras and extras["metadata"] is not None:
        meta = {**_metadata_dict(extras["metadata"]), **meta}
    if extras.get(AZ_KEY) is not None:
        # An availability zone is metadata (nova's model could not take it as a value).
        meta[AZ_KEY] = clean_value(AggregateMetadata, "value", extras[AZ_KEY])
    _check_name_free(columns.get("name"))
    aggregate_id = execute(sa.insert(AGGREGATES).values(columns)).inserted_primary_key[0]
    if meta:
        _write_metadata(aggregate_id, meta, set_delete=False)
    return _get(context, aggregate_id)


@api()
def aggregate_update(context: Any, aggregate_id: int, values: dict[str, Any]) -> Any:
    """Update an aggregate: ``metadata`` replaces its metadata, ``availability_zone`` one key."""
    aggregate_id = _aggregate_id(aggregate_id)
    columns, extras = _split_values("aggregate_update", values)
    if "name" in columns:
        _check_name_free(columns["name"], aggregate_id)
    aggregate_id = _require(context, aggregate_id, lock=True)
    metadata = extras.get("metadata")
    set_delete = True
    meta = None if metadata is None else _metadata_dict(metadata)
    if AZ_KEY in extras:
        zone = clean_value(AggregateMetadata, "value", extras[AZ_KEY])
        if meta is None:
            # The zone alone: merged into the metadata, other keys kept.
            meta, set_delete = {AZ_KEY: zone}, False
        else:
            meta[AZ_KEY] = zone
    if meta is not None:
        _write_metadata(aggregate_id, meta, set_delete)
    if columns:
        # Core's UPDATE applies updated_at's on-update default itself.
        execute(sa.update(AGGREGATES).where(AGGREGATES.c.id == aggregate_id).values(columns))
    return _get(context, aggregate_id)


@api()
def aggregate_delete(context: Any, aggregate_id: int) -> None:
    """Delete an aggregate and its metadata (its host rows are left, as nova left them)."""
    aggregate_id = _aggregate_id(aggregate_id)
    if not soft_delete_where(Aggregate, AGGREGATES.c.id == aggregate_id):
        raise exception.AggregateNotFound(aggregate_id=aggregate_id)
    soft_delete_where(AggregateMetadata, METADATA.c.aggregate_id == aggregate_id)

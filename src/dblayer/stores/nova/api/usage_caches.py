"""nova DB API: the bandwidth and volume usage caches (notes §3.21, §2.21).

Every call here sees deleted rows too (nova forced ``read_deleted='yes'``).

``bw_usage_update`` and ``vol_usage_update`` create the cache row of a key when there
is none, and neither table has a unique constraint on its key ((uuid, mac,
start_period); volume_id), so two racing callers are made to take turns:

- An existing row: the UPDATE (``bw``) or ``SELECT ... FOR UPDATE`` (``vol``) locks
  it, so writers of the key take turns on the row and each sees the one before it
  (``vol``'s arithmetic reads the row it then writes: no lost update).
- No row yet (the insert path):
  - PostgreSQL: a transaction-scoped advisory lock on the key
    (``pg_advisory_xact_lock``, released by the commit), then the lookup again: a
    writer that waited for the lock finds the row its predecessor committed. A
    locking read alone would not do: PostgreSQL's ``FOR UPDATE`` neither sees nor
    waits for rows another transaction has inserted and not committed.
  - MariaDB: the new row is followed by a locking read of the key. InnoDB makes it
    wait for every uncommitted insert of the key by another transaction, so of two
    inserters either one waits for the other's commit or InnoDB breaks the cycle as
    a deadlock (the victim's unit of work is replayed by core). A writer that then
    finds a committed row besides its own deletes its own and updates that one
    instead. MariaDB has no transaction-scoped named lock (GET_LOCK lives until
    released, and releasing it before the commit would reopen the race).
  - SQLite: a writing unit of work holds the database's write lock from BEGIN
    IMMEDIATE, so writers run one at a time anyway.

The same insert-then-check code runs on every backend; on PostgreSQL and SQLite the
check simply never finds a second row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from dblayer.core import InvalidQuery, InvalidValue, utcnow

from ..facade import get_database
from ..models import BandwidthUsage, VolumeUsage
from ._base import USER, api, execute, fetch_all, first, model_query
from ._checks import clean_value, key_value

__all__ = [
    "bw_usage_get",
    "bw_usage_get_by_uuids",
    "bw_usage_update",
    "vol_get_usage_by_time",
    "vol_usage_update",
]

BW = BandwidthUsage
VU = VolumeUsage

# Values per IN list: far below every backend's limit on bound parameters.
_CHUNK = 500

# The counters of a volume's row: (argument, current column, total column).
_VOLUME_COUNTERS = (
    ("rd_req", "curr_reads", "tot_reads"),
    ("rd_bytes", "curr_read_bytes", "tot_read_bytes"),
    ("wr_req", "curr_writes", "tot_writes"),
    ("wr_bytes", "curr_write_bytes", "tot_write_bytes"),
)


# -- taking turns on a key -------------------------------------------------------------------


def _lock_key(table: str, *parts: Any) -> bool:
    """On PostgreSQL, hold a transaction-scoped advisory lock on ``(table, *parts)`` and
    return True (look for the row again: a predecessor may have committed it). Elsewhere
    a no-op returning False (see the module's docstring).

    The lock id is a 64-bit hash of the key: two keys sharing one only take turns
    needlessly.
    """
    if get_database().backend != "postgresql":
        return False
    text = "\x1f".join([table, *(_key_text(p) for p in parts)])
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    lock_id = int.from_bytes(digest, "big", signed=True)
    execute(sa.select(sa.func.pg_advisory_xact_lock(lock_id)))
    return True


def _key_text(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # stored as naive UTC: hash what is stored
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat()
    return str(value)


def _others_of_key(table: sa.Table, key: sa.ColumnElement[bool], mine: int) -> list[int]:
    """Ids of the key's rows other than ``mine``, all locked (oldest first).

    On MariaDB the locking read waits for any uncommitted insert of the key.
    """
    stmt = sa.select(table.c.id).where(key).order_by(table.c.id).with_for_update()
    return [row_id for row_id in execute(stmt).scalars() if row_id != mine]


def _delete_row(table: sa.Table, row_id: int) -> None:
    """Remove a row this unit of work inserted (never seen by anyone else)."""
    execute(sa.delete(table).where(table.c.id == row_id))


# -- values ----------------------------------------------------------------------------------


def _counter(model: Any, column: str, name: str, value: Any) -> int:
    """A counter argument: an integer the column can hold (InvalidValue otherwise)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{name} must be an integer, not {value!r}")
    return clean_value(model, column, value)


def _datetime(name: str, value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise InvalidValue(f"{name} must be a datetime, not {value!r}")
    return value


# -- bandwidth -------------------------------------------------------------------------------


def _bw_key(uuid: Any, start_period: Any, mac: Any) -> sa.ColumnElement[bool]:
    return sa.and_(BW.start_period == start_period, BW.uuid == uuid, BW.mac == mac)


@api(USER)
def bw_usage_get(
    context: Any, uuid: str, start_period: dt.datetime, mac: str, use_slave: bool = False
) -> Any:
    """Return bw usage for instance and mac in a given audit period."""
    uuid = key_value(BW, "uuid", uuid)
    start_period = key_value(BW, "start_period", start_period)
    mac = key_value(BW, "mac", mac)
    stmt = (
        model_query(context, BW, read_deleted="yes")
        .where(_bw_key(uuid, start_period, mac))
        .order_by(BW.id)
    )
    return first(stmt)


@api(USER)
def bw_usage_get_by_uuids(
    context: Any, uuids: Iterable[str], start_period: dt.datetime
) -> list[Any]:
    """Return bw usages for instance(s) in a given audit period."""
    if isinstance(uuids, (str, bytes)) or not isinstance(uuids, Iterable):
        raise InvalidQuery(f"uuids must be a list of instance uuids, got {uuids!r}")
    wanted = list(dict.fromkeys(key_value(BW, "uuid", u) for u in uuids))
    start_period = key_value(BW, "start_period", start_period)
    found: list[Any] = []
    for start in range(0, len(wanted), _CHUNK):
        stmt = model_query(context, BW, read_deleted="yes").where(
            BW.uuid.in_(wanted[start : start + _CHUNK]), BW.start_period == start_period
        )
        found.extend(fetch_all(stmt))
    return sorted(found, key=lambda row: row.id)


@api(USER)
def bw_usage_update(
    context: Any,
    uuid: str,
    mac: str,
    start_period: dt.datetime,
    bw_in: int,
    bw_out: int,
    last_ctr_in: int,
    last_ctr_out: int,
    last_refreshed: dt.datetime | None = None,
    update_cells: bool = True,
) -> None:
    """Update cached bandwidth usage for an instance's network based on mac address.
    Creates new record if needed."""
    # update_cells only told a cells-v1 parent cell: nothing to do at this layer.
    key_values = {
        "uuid": clean_value(BW, "uuid", uuid),
        "mac": clean_value(BW, "mac", mac),
        "start_period": clean_value(BW, "start_period", start_period),
    }
    if last_refreshed is None:
        last_refreshed = utcnow()
    values = {
        "last_refreshed": clean_value(BW, "last_refreshed", last_refreshed),
        "bw_in": clean_value(BW, "bw_in", bw_in),
        "bw_out": clean_value(BW, "bw_out", bw_out),
        "last_ctr_in": clean_value(BW, "last_ctr_in", last_ctr_in),
        "last_ctr_out": clean_value(BW, "last_ctr_out", last_ctr_out),
    }
    table = BW.__table__
    key = _bw_key(key_values["uuid"], key_values["start_period"], key_values["mac"])
    # Mostly the row exists: update it (every row of the key, deleted ones too, as nova).
    change = sa.update(table).where(key).values(values)
    if execute(change).rowcount:
        return
    if _lock_key(table.name, *key_values.values()) and execute(change).rowcount:
        return
    mine = execute(sa.insert(table).values({**key_values, **values})).inserted_primary_key[0]
    if _others_of_key(table, key, mine):
        # Another caller's row got there first: it is the key's row; this one goes.
        _delete_row(table, mine)
        execute(change)


# -- volumes ---------------------------------------------------------------------------------


@api(USER)
def vol_get_usage_by_time(context: Any, begin: dt.datetime) -> list[Any]:
    """Return volumes usage that have been updated after a specified time."""
    begin = _datetime("begin", begin)
    stmt = (
        model_query(context, VU, read_deleted="yes")
        .where(
            sa.or_(
                VU.tot_last_refreshed.is_(None),
                VU.tot_last_refreshed > begin,
                VU.curr_last_refreshed.is_(None),
                VU.curr_last_refreshed > begin,
            )
        )
        .order_by(VU.id)
    )
    return fetch_all(stmt)


@api(USER)
def vol_usage_update(
    context: Any,
    id: str,  # noqa: A002 - nova's name
    rd_req: int,
    rd_bytes: int,
    wr_req: int,
    wr_bytes: int,
    instance_id: str | None,
    project_id: str | None,
    user_id: str | None,
    availability_zone: str | None,
    update_totals: bool = False,
) -> Any:
    """Update cached volume usage for a volume. Creates new record if needed."""
    volume_id = clean_value(VU, "volume_id", id)
    counts = {
        name: _counter(VU, current, name, value)
        for (name, current, _), value in zip(
            _VOLUME_COUNTERS, (rd_req, rd_bytes, wr_req, wr_bytes), strict=True
        )
    }
    owner = {
        "instance_uuid": clean_value(VU, "instance_uuid", instance_id),
        "project_id": clean_value(VU, "project_id", project_id),
        "user_id": clean_value(VU, "user_id", user_id),
        "availability_zone": clean_value(VU, "availability_zone", availability_zone),
    }
    totals = bool(update_totals)
    refreshed = utcnow()
    table = VU.__table__
    key = table.c.volume_id == volume_id

    locked = sa.select(table).where(key).order_by(table.c.id).limit(1).with_for_update()
    current = execute(locked).mappings().first()
    if current is None and _lock_key(table.name, volume_id):
        current = execute(locked).mappings().first()
    if current is None:
        row = {"volume_id": volume_id, **owner}
        prefix = "tot" if totals else "curr"
        row[f"{prefix}_last_refreshed"] = refreshed
        for name, current_column, total_column in _VOLUME_COUNTERS:
            row[total_column if totals else current_column] = counts[name]
        mine = execute(sa.insert(table).values(row)).inserted_primary_key[0]
        others = _others_of_key(table, key, mine)
        if not others:
            return _volume_row(mine)
        # Another caller's row got there first: update that one with these counters.
        _delete_row(table, mine)
        current = execute(sa.select(table).where(table.c.id == others[0])).mappings().one()

    changes = _volume_changes(current, counts, totals, refreshed)
    execute(sa.update(table).where(table.c.id == current["id"]).values({**changes, **owner}))
    return _volume_row(current["id"])


def _volume_changes(
    current: Any, counts: dict[str, int], totals: bool, refreshed: dt.datetime
) -> dict[str, Any]:
    """nova's arithmetic for an existing row ``current`` given the new counters.

    A counter lower than the stored current one means the guest rebooted (its counters
    restarted): the stored current counts are first added to the totals. Then, without
    ``totals``, the current counts are replaced; with it, the new counts are added to the
    totals and the current ones reset to 0.
    """
    rebooted = any(
        current[column] is not None and counts[name] < current[column]
        for name, column, _ in _VOLUME_COUNTERS
    )
    changes: dict[str, Any] = {}
    for name, current_column, total_column in _VOLUME_COUNTERS:
        # Totals as SQL expressions, as nova wrote them (NULL plus anything stays NULL).
        total = VU.__table__.c[total_column]
        was = sa.literal(current[current_column], sa.BigInteger)
        if totals:
            changes[total_column] = (total + was if rebooted else total) + counts[name]
            changes[current_column] = 0
        else:
            if rebooted:
                changes[total_column] = total + was
            changes[current_column] = counts[name]
    changes["tot_last_refreshed" if totals else "curr_last_refreshed"] = refreshed
    return changes


def _volume_row(row_id: int) -> Any:
    """The volume usage row ``row_id`` as it now stands."""
    stmt = sa.select(VU).where(VU.id == row_id).execution_options(populate_existing=True)
    return first(stmt)

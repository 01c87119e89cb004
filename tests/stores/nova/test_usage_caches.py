"""Bandwidth and volume usage caches (nova notes §3.21, §2.21): create-or-update with
nova's arithmetic, reads that include deleted rows, and races between processes that
leave one row per key and lose no update, on every backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.core.types import utcnow
from dblayer.stores.nova import exception, models
from dblayer.stores.nova.context import RequestContext
from tests.concurrency import run_processes
from tests.stores.nova.conftest import table_rows

BW = models.BandwidthUsage
VU = models.VolumeUsage

PERIOD = dt.datetime(2014, 7, 1, 0, 0, 0)
LATER = dt.datetime(2014, 7, 1, 1, 0, 0)


def soft_delete(db: Database, model: Any, row_id: int) -> None:
    table = model.__table__
    with db.transaction() as conn:
        conn.execute(sa.update(table).where(table.c.id == row_id).values(deleted=row_id))


def insert(db: Database, model: Any, **values: Any) -> int:
    with db.transaction() as conn:
        return conn.execute(sa.insert(model.__table__).values(values)).inserted_primary_key[0]


def bw(ctx, uuid="u-1", mac="aa:bb", period=PERIOD, counters=(1, 2, 3, 4), **more) -> None:
    assert nova.bw_usage_update(ctx, uuid, mac, period, *counters, **more) is None


def vol(ctx, counters, volume="vol-1", owner=("inst-1", "p1", "u1", "az1"), **more) -> Any:
    return nova.vol_usage_update(ctx, volume, *counters, *owner, **more)


COUNTERS = ("curr_reads", "curr_read_bytes", "curr_writes", "curr_write_bytes")
TOTALS = ("tot_reads", "tot_read_bytes", "tot_writes", "tot_write_bytes")


def counts(row: Any, names: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(row[name] for name in names)


# -- bandwidth -------------------------------------------------------------------------------


def test_bw_usage_update_creates_then_updates_the_row(nova_db, ctx):
    before = utcnow()
    bw(ctx, counters=(10, 20, 30, 40))
    [row] = table_rows(nova_db, BW)
    assert (row["uuid"], row["mac"], row["start_period"]) == ("u-1", "aa:bb", PERIOD)
    assert (row["bw_in"], row["bw_out"], row["last_ctr_in"], row["last_ctr_out"]) == (
        10,
        20,
        30,
        40,
    )
    assert row["last_refreshed"] >= before and row["deleted"] == 0
    assert row["created_at"] >= before and row["updated_at"] is None

    bw(ctx, counters=(11, 21, 31, 41), last_refreshed=LATER, update_cells=False)
    [updated] = table_rows(nova_db, BW)
    assert updated["id"] == row["id"] and updated["last_refreshed"] == LATER
    assert (updated["bw_in"], updated["last_ctr_out"]) == (11, 41)
    assert updated["updated_at"] is not None

    # Another mac, another period: rows of their own.
    bw(ctx, mac="cc:dd")
    bw(ctx, period=LATER)
    assert len(table_rows(nova_db, BW)) == 3


def test_bw_usage_update_updates_deleted_rows_and_every_row_of_the_key(nova_db, ctx):
    a = insert(nova_db, BW, uuid="u-1", mac="m", start_period=PERIOD, bw_in=1)
    b = insert(nova_db, BW, uuid="u-1", mac="m", start_period=PERIOD, bw_in=2)
    soft_delete(nova_db, BW, a)
    bw(ctx, mac="m", counters=(7, 8, 9, 10))
    rows = table_rows(nova_db, BW)
    assert [(r["id"], r["bw_in"], r["deleted"]) for r in rows] == [(a, 7, a), (b, 7, 0)]


def test_bw_usage_get(nova_db, ctx):
    bw(ctx, counters=(1, 2, 3, 4))
    got = nova.bw_usage_get(ctx, "u-1", PERIOD, "aa:bb")
    assert got["bw_in"] == 1 and got.mac == "aa:bb"
    assert nova.bw_usage_get(ctx, "u-1", PERIOD, "other") is None
    assert nova.bw_usage_get(ctx, "u-1", LATER, "aa:bb") is None
    assert nova.bw_usage_get(ctx, "u-2", PERIOD, "aa:bb", use_slave=True) is None
    soft_delete(nova_db, BW, got.id)
    assert nova.bw_usage_get(ctx, "u-1", PERIOD, "aa:bb").deleted == got.id  # incl. deleted


def test_bw_usage_get_by_uuids(nova_db, ctx):
    bw(ctx, uuid="u-1", mac="m1")
    bw(ctx, uuid="u-1", mac="m2")
    bw(ctx, uuid="u-2")
    bw(ctx, uuid="u-3")
    bw(ctx, uuid="u-1", period=LATER)
    got = nova.bw_usage_get_by_uuids(ctx, ["u-1", "u-2", "u-9"], PERIOD)
    assert sorted((r.uuid, r.mac) for r in got) == [("u-1", "m1"), ("u-1", "m2"), ("u-2", "aa:bb")]
    soft_delete(nova_db, BW, got[0].id)
    assert len(nova.bw_usage_get_by_uuids(ctx, ("u-1", "u-2"), PERIOD)) == 3
    assert nova.bw_usage_get_by_uuids(ctx, [], PERIOD) == []
    with pytest.raises(InvalidQuery):
        nova.bw_usage_get_by_uuids(ctx, None, PERIOD)
    with pytest.raises(InvalidQuery):
        nova.bw_usage_get_by_uuids(ctx, "u-1", PERIOD)


def test_bw_usage_update_rejects_bad_values_and_stores_nothing(nova_db, ctx):
    bad = [
        ("u-1", "m", "2014-07-01", 1, 2, 3, 4),  # start_period not a datetime
        ("u-1", "m", None, 1, 2, 3, 4),  # start_period is NOT NULL
        ("u-1", "m", PERIOD, "1", 2, 3, 4),
        ("u-1", "m", PERIOD, 1, 2, 3, 2**63),
        ("u" * 37, "m", PERIOD, 1, 2, 3, 4),
    ]
    for args in bad:
        with pytest.raises(InvalidValue):
            nova.bw_usage_update(ctx, *args)
    assert table_rows(nova_db, BW) == []


# -- volumes ---------------------------------------------------------------------------------


def test_vol_usage_update_creates_a_current_row(nova_db, ctx):
    before = utcnow()
    row = vol(ctx, (1, 10, 2, 20))
    assert row.volume_id == "vol-1" and row.id
    assert counts(row, COUNTERS) == (1, 10, 2, 20) and counts(row, TOTALS) == (0, 0, 0, 0)
    assert row.curr_last_refreshed >= before and row.tot_last_refreshed is None
    assert (row.instance_uuid, row.project_id, row.user_id, row.availability_zone) == (
        "inst-1",
        "p1",
        "u1",
        "az1",
    )
    [stored] = table_rows(nova_db, VU)
    assert stored["id"] == row.id and stored["curr_writes"] == 2


def test_vol_usage_update_creates_a_totals_row(nova_db, ctx):
    row = vol(ctx, (1, 10, 2, 20), update_totals=True)
    assert counts(row, TOTALS) == (1, 10, 2, 20) and counts(row, COUNTERS) == (0, 0, 0, 0)
    assert row.tot_last_refreshed is not None and row.curr_last_refreshed is None


def test_vol_usage_update_arithmetic(nova_db, ctx):
    vol(ctx, (5, 50, 5, 50))
    # Higher counters replace the current ones; the owner is always overwritten.
    row = vol(ctx, (6, 60, 7, 70), owner=("inst-2", "p2", "u2", "az2"))
    assert counts(row, COUNTERS) == (6, 60, 7, 70) and counts(row, TOTALS) == (0, 0, 0, 0)
    assert (row.instance_uuid, row.availability_zone) == ("inst-2", "az2")
    # One counter lower: the guest rebooted, the old current counts go to the totals.
    row = vol(ctx, (7, 70, 1, 80))
    assert counts(row, TOTALS) == (6, 60, 7, 70) and counts(row, COUNTERS) == (7, 70, 1, 80)
    # update_totals: the new counts are added to the totals, the current ones reset.
    row = vol(ctx, (8, 80, 2, 90), update_totals=True)
    assert counts(row, TOTALS) == (14, 140, 9, 160) and counts(row, COUNTERS) == (0, 0, 0, 0)
    assert row.tot_last_refreshed is not None
    # update_totals after a reboot: the old current counts and the new ones both added.
    vol(ctx, (5, 50, 5, 50))
    row = vol(ctx, (1, 10, 1, 10), update_totals=True)
    assert counts(row, TOTALS) == (20, 200, 15, 220) and counts(row, COUNTERS) == (0, 0, 0, 0)
    assert len(table_rows(nova_db, VU)) == 1


def test_vol_usage_update_adds_to_totals_in_sql_as_nova_did(nova_db, ctx):
    # A NULL total plus anything stays NULL; a NULL current count is never "higher".
    insert(nova_db, VU, volume_id="vol-1", tot_reads=None, curr_reads=None, curr_read_bytes=100)
    row = vol(ctx, (0, 1, 0, 0))  # read bytes went down: the guest rebooted
    assert counts(row, TOTALS) == (None, 100, 0, 0) and counts(row, COUNTERS) == (0, 1, 0, 0)
    row = vol(ctx, (5, 5, 5, 5), update_totals=True)
    assert counts(row, TOTALS) == (None, 105, 5, 5)


def test_vol_usage_update_updates_a_deleted_row(nova_db, ctx):
    row = vol(ctx, (1, 1, 1, 1))
    soft_delete(nova_db, VU, row.id)
    again = vol(ctx, (2, 2, 2, 2))
    assert again.id == row.id and again.deleted == row.id and again.curr_reads == 2
    assert len(table_rows(nova_db, VU)) == 1


def test_vol_usage_update_rejects_bad_values_and_changes_nothing(nova_db, ctx):
    vol(ctx, (1, 1, 1, 1))
    before = table_rows(nova_db, VU)
    bad = [
        (None, 1, 1, 1, 1, "inst-1"),  # volume_id is NOT NULL
        ("v" * 37, 1, 1, 1, 1, "inst-1"),
        ("vol-1", None, 1, 1, 1, "inst-1"),
        ("vol-1", 1, "1", 1, 1, "inst-1"),
        ("vol-1", 1, 1, True, 1, "inst-1"),
        ("vol-1", 1, 1, 1, 2**63, "inst-1"),
        ("vol-1", 1, 1, 1, 1, "i" * 37),
    ]
    for args in bad:
        with pytest.raises(InvalidValue):
            nova.vol_usage_update(ctx, *args, "p1", "u1", "az1")
    assert table_rows(nova_db, VU) == before


def test_vol_get_usage_by_time(nova_db, ctx):
    old = dt.datetime(2014, 1, 1)
    begin = dt.datetime(2014, 6, 1)
    recent = dt.datetime(2014, 7, 1)
    fresh = insert(nova_db, VU, volume_id="a", tot_last_refreshed=old, curr_last_refreshed=recent)
    stale = insert(nova_db, VU, volume_id="b", tot_last_refreshed=old, curr_last_refreshed=old)
    never = insert(nova_db, VU, volume_id="c", tot_last_refreshed=old, curr_last_refreshed=None)
    at = insert(nova_db, VU, volume_id="d", tot_last_refreshed=begin, curr_last_refreshed=begin)
    soft_delete(nova_db, VU, fresh)
    got = nova.vol_get_usage_by_time(ctx, begin)
    assert [r.id for r in got] == [fresh, never]
    assert stale and at
    with pytest.raises(InvalidValue):
        nova.vol_get_usage_by_time(ctx, "2014-06-01")


# -- access ----------------------------------------------------------------------------------


def test_every_call_needs_a_user_or_admin_context_and_changes_nothing(nova_db, ctx, admin):
    bw(ctx)
    vol(ctx, (1, 1, 1, 1))
    before = (table_rows(nova_db, BW), table_rows(nova_db, VU))
    nobody = RequestContext(None, "project1")
    calls = [
        lambda c: nova.bw_usage_get(c, "u-1", PERIOD, "aa:bb"),
        lambda c: nova.bw_usage_get_by_uuids(c, ["u-1"], PERIOD),
        lambda c: bw(c, counters=(9, 9, 9, 9)),
        lambda c: nova.vol_get_usage_by_time(c, PERIOD),
        lambda c: vol(c, (9, 9, 9, 9)),
    ]
    for call in calls:
        with pytest.raises(exception.Forbidden):
            call(nobody)
    assert (table_rows(nova_db, BW), table_rows(nova_db, VU)) == before
    # Any user (of any project) or an admin may; the caches are not project-scoped.
    other = RequestContext("user9", "project9")
    assert nova.bw_usage_get(other, "u-1", PERIOD, "aa:bb").bw_in == 1
    assert len(nova.vol_get_usage_by_time(admin, PERIOD)) == 1


# -- a row committed by another writer between this call's insert and its check -------------


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])  # SQLite: no writer can
def test_a_row_committed_meanwhile_wins_and_takes_the_update(nova_db, ctx, monkeypatch):
    from dblayer.stores.nova.api import usage_caches

    check = usage_caches._others_of_key
    rival: dict[str, Any] = {}

    def rival_commits_first(table, key, mine):
        # Another connection (another writer) inserts the same key and commits.
        with nova_db.engine.begin() as conn:
            rival["id"] = conn.execute(sa.insert(table).values(rival["row"])).inserted_primary_key[
                0
            ]
        return check(table, key, mine)

    monkeypatch.setattr(usage_caches, "_others_of_key", rival_commits_first)

    rival["row"] = {"uuid": "u-1", "mac": "aa:bb", "start_period": PERIOD, "bw_in": 99}
    bw(ctx, counters=(1, 2, 3, 4))
    [row] = table_rows(nova_db, BW)
    assert row["id"] == rival["id"] and (row["bw_in"], row["last_ctr_out"]) == (1, 4)

    rival["row"] = {"volume_id": "vol-1", "tot_reads": 100, "curr_writes": 7}
    got = vol(ctx, (1, 10, 2, 20), update_totals=True)
    # The rival's row, with the rival's counts: 7 current writes > 2, so a reboot.
    assert got.id == rival["id"] and (got.tot_reads, got.tot_writes) == (101, 9)
    assert [r["id"] for r in table_rows(nova_db, VU)] == [rival["id"]]


# -- races between processes -----------------------------------------------------------------

KEYS = 6
ROUNDS = 3


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        # Connected and warmed up before the children are released, so that their first
        # writes (the inserts) really meet.
        ctx = RequestContext("user1", "project1")
        nova.bw_usage_get(ctx, "warm-up", PERIOD, "aa:bb")
        nova.vol_get_usage_by_time(ctx, PERIOD)
        yield db
    finally:
        db.dispose()


def _bw_writer(_db: Any, child: int) -> int:
    """Write every key once per round, each write's counters telling child and round."""
    ctx = RequestContext("user1", "project1")
    for rnd in range(ROUNDS):
        for key in range(KEYS):
            value = child * 1000 + rnd
            nova.bw_usage_update(
                ctx, f"inst-{key}", "aa:bb", PERIOD, value, value + 1, value + 2, value + 3
            )
    return ROUNDS * KEYS


def test_racing_bw_usage_updates_leave_one_whole_row_per_key(nova_url):
    children = 4
    done = run_processes(partial(_nova_on, nova_url), _bw_writer, [(c,) for c in range(children)])
    assert done == [ROUNDS * KEYS] * children
    rows = table_rows(nova.get_database(), BW)
    assert sorted(r["uuid"] for r in rows) == sorted(f"inst-{k}" for k in range(KEYS))
    written = {c * 1000 + r for c in range(children) for r in range(ROUNDS)}
    for row in rows:
        # One write's values, whole: never a mix of two writers.
        value = row["bw_in"]
        assert value in written
        assert (row["bw_out"], row["last_ctr_in"], row["last_ctr_out"]) == (
            value + 1,
            value + 2,
            value + 3,
        )


def _vol_writer(_db: Any) -> int:
    """Add (1, 10, 2, 20) to every volume's totals, once per round."""
    ctx = RequestContext("user1", "project1")
    for _ in range(ROUNDS):
        for key in range(KEYS):
            nova.vol_usage_update(
                ctx, f"vol-{key}", 1, 10, 2, 20, "inst", "p", "u", "az", update_totals=True
            )
    return ROUNDS * KEYS


def test_racing_vol_usage_updates_leave_one_row_per_volume_and_lose_no_update(nova_url):
    children = 4
    done = run_processes(partial(_nova_on, nova_url), _vol_writer, [()] * children)
    assert done == [ROUNDS * KEYS] * children
    rows = table_rows(nova.get_database(), VU)
    assert sorted(r["volume_id"] for r in rows) == sorted(f"vol-{k}" for k in range(KEYS))
    calls = children * ROUNDS
    for row in rows:
        assert counts(row, TOTALS) == (calls, 10 * calls, 2 * calls, 20 * calls)
        assert counts(row, COUNTERS) == (0, 0, 0, 0)

"""Leased claims: who holds a row and until when, extending leases, requeueing expired ones,
on every backend, and several sweeper processes racing on the same expired rows."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import (
    Database,
    InvalidQuery,
    InvalidValue,
    Lease,
    claim,
    database_clock,
    extend_leases,
    requeue_expired,
)
from dblayer.core.claims import PreparedClaim
from tests.core import claims_schema as cs
from tests.core.concurrency import run_processes, shared_database

jobs = cs.leased
LEASE = Lease(worker="claimed_by", expires="lease_expires", restore={"status": "claimed_from"})
NOT_CLAIMED = jobs.c.status != "CLAIMED"
IS_CLAIMED = jobs.c.status == "CLAIMED"
# Waiting this long after a claim of SHORT seconds, its lease has ended (a wait, not a measure).
SHORT = 0.2
PAST_SHORT = 0.5


def add_jobs(db: Database, statuses: list[str]) -> None:
    rows = [{"id": i, "status": s, "attempts": 0} for i, s in enumerate(statuses, start=1)]
    with db.transaction() as conn:
        conn.execute(sa.insert(jobs), rows)


def add_jobs_from(db: Database, first: int, statuses: list[str]) -> None:
    rows = [{"id": i, "status": s, "attempts": 0} for i, s in enumerate(statuses, start=first)]
    with db.transaction() as conn:
        conn.execute(sa.insert(jobs), rows)


def all_rows(db: Database) -> dict[int, dict]:
    with db.transaction(readonly=True) as conn:
        rows = conn.execute(sa.select(jobs).order_by(jobs.c.id)).mappings()
        return {r["id"]: dict(r) for r in rows}


def now(db: Database) -> float:
    with db.transaction(readonly=True) as conn:
        return conn.execute(sa.select(database_clock(db))).scalar_one()


def leased_claim(db: Database, worker: str, seconds: float, limit: int | None = 10) -> list[dict]:
    return claim(
        db,
        jobs,
        {"status": "CLAIMED"},
        where=[NOT_CLAIMED],
        order_by=[jobs.c.id],
        limit=limit,
        lease=LEASE,
        worker=worker,
        lease_seconds=seconds,
    )


@pytest.fixture
def tables(db, tables_of):
    tables_of(db, cs.metadata)
    return db


# -- the clock ------------------------------------------------------------------------------


def test_database_clock_is_seconds_since_the_epoch(tables):
    value = now(tables)
    assert isinstance(value, float)
    assert abs(value - time.time()) < 300  # the same epoch and unit as time.time()


# -- leased claims ----------------------------------------------------------------------------


def test_a_leased_claim_records_its_worker_lease_end_and_the_state_it_took(tables):
    db = tables
    add_jobs(db, ["PENDING", "EXECUTED", "PENDING", "DONE"])
    before = now(db)
    rows = claim(
        db,
        jobs,
        {"status": "CLAIMED"},
        where=[jobs.c.status.in_(["PENDING", "EXECUTED"])],
        order_by=[jobs.c.id],
        limit=None,
        lease=LEASE,
        worker="w1",
        lease_seconds=30,
    )
    after = now(db)
    assert [r["id"] for r in rows] == [1, 2, 3]
    stored = all_rows(db)
    for row in rows:
        assert row == stored[row["id"]]
        assert row["status"] == "CLAIMED" and row["claimed_by"] == "w1"
        assert before + 30 <= row["lease_expires"] <= after + 30
    assert [stored[i]["claimed_from"] for i in (1, 2, 3)] == ["PENDING", "EXECUTED", "PENDING"]
    assert stored[4] == {
        "id": 4,
        "status": "DONE",
        "attempts": 0,
        "claimed_by": None,
        "lease_expires": None,
        "claimed_from": None,
    }


def test_a_claim_without_a_lease_leaves_the_lease_columns_alone(tables):
    db = tables
    add_jobs(db, ["PENDING", "PENDING"])
    rows = claim(db, jobs, {"status": "CLAIMED"}, where=[NOT_CLAIMED], limit=None)
    assert len(rows) == 2
    assert all(r["claimed_by"] is None and r["lease_expires"] is None for r in rows)


@pytest.mark.parametrize("order_by", [[], [jobs.c.id.desc()]], ids=["no-order", "by-id"])
def test_a_prepared_leased_claim_leases_as_claim_does(tables, order_by):
    db = tables
    add_jobs(db, ["PENDING", "EXECUTED", "PENDING", "DONE"])
    take = PreparedClaim(
        jobs,
        {"status": "CLAIMED", "attempts": jobs.c.attempts + 1},
        where=[jobs.c.status.in_(["PENDING", "EXECUTED"])],
        order_by=order_by,
        limit=None,
        lease=LEASE,
    )
    before = now(db)
    rows = take.run(db, worker="w1", lease_seconds=30)
    after = now(db)
    assert sorted(r["id"] for r in rows) == [1, 2, 3]
    if order_by:
        assert [r["id"] for r in rows] == [3, 2, 1]
    stored = all_rows(db)
    for row in rows:
        assert row == stored[row["id"]]
        assert row["status"] == "CLAIMED" and row["claimed_by"] == "w1" and row["attempts"] == 1
        assert before + 30 <= row["lease_expires"] <= after + 30
    assert [stored[i]["claimed_from"] for i in (1, 2, 3)] == ["PENDING", "EXECUTED", "PENDING"]
    assert stored[4]["claimed_by"] is None and stored[4]["status"] == "DONE"
    # Its leases end and are requeued like any claim's.
    assert take.run(db, worker="w2", lease_seconds=SHORT) == []
    add_jobs_from(db, 5, ["PENDING"])
    [late] = take.run(db, worker="w2", lease_seconds=SHORT)
    time.sleep(PAST_SHORT)
    assert [r["id"] for r in requeue_expired(db, jobs, LEASE)] == [5]
    assert all_rows(db)[5]["status"] == "PENDING" and late["claimed_by"] == "w2"


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"worker": "", "lease_seconds": 5}, InvalidValue),
        ({"worker": None, "lease_seconds": 5}, InvalidValue),
        ({"worker": "w", "lease_seconds": 0}, InvalidValue),
        ({"worker": "w", "lease_seconds": math.inf}, InvalidValue),
        ({"worker": "w"}, InvalidValue),
    ],
    ids=repr,
)
def test_bad_lease_arguments_of_a_prepared_claim_change_nothing(tables, kwargs, error):
    db = tables
    add_jobs(db, ["PENDING", "PENDING"])
    before = all_rows(db)
    take = PreparedClaim(jobs, {"status": "CLAIMED"}, where=[NOT_CLAIMED], lease=LEASE)
    with pytest.raises(error):
        take.run(db, **kwargs)
    assert all_rows(db) == before


@pytest.mark.parametrize("values", [{"claimed_by": "x"}, {"status": "C", "claimed_from": "x"}])
def test_a_prepared_claim_cannot_set_its_leases_columns(values):
    with pytest.raises(InvalidQuery, match="lease's own columns"):
        PreparedClaim(jobs, values, lease=LEASE)
    with pytest.raises(InvalidQuery, match="lease must be"):
        PreparedClaim(jobs, {"status": "C"}, lease="claimed_by")


# -- requeue_expired --------------------------------------------------------------------------


def test_requeue_expired_puts_expired_rows_back_as_they_were_claimed(tables):
    db = tables
    add_jobs(db, ["PENDING", "EXECUTED", "PENDING", "PENDING"])
    leased_claim(db, "dead", SHORT, limit=2)  # 1, 2
    leased_claim(db, "alive", 30, limit=1)  # 3
    time.sleep(PAST_SHORT)
    requeued = requeue_expired(
        db, jobs, LEASE, values={"attempts": jobs.c.attempts + 1}, where=[IS_CLAIMED]
    )
    assert [r["id"] for r in requeued] == [1, 2]
    stored = all_rows(db)
    assert requeued == [stored[1], stored[2]]
    assert [(stored[i]["status"], stored[i]["attempts"]) for i in (1, 2)] == [
        ("PENDING", 1),
        ("EXECUTED", 1),
    ]
    for i in (1, 2):
        assert stored[i]["claimed_by"] is None
        assert stored[i]["lease_expires"] is None
        assert stored[i]["claimed_from"] is None
    assert stored[3]["status"] == "CLAIMED" and stored[3]["claimed_by"] == "alive"
    assert stored[4]["status"] == "PENDING"
    assert requeue_expired(db, jobs, LEASE, where=[IS_CLAIMED]) == []
    # The requeued rows are claimed again.
    assert [r["id"] for r in leased_claim(db, "w2", 30)] == [1, 2, 4]


def test_requeue_expired_takes_limit_rows_oldest_lease_first_and_honours_where(tables):
    db = tables
    add_jobs(db, ["PENDING"] * 4)
    leased_claim(db, "dead", SHORT, limit=1)  # 1: its lease ends first
    leased_claim(db, "dead", SHORT + 0.05, limit=3)  # 2, 3, 4
    time.sleep(PAST_SHORT)
    assert [r["id"] for r in requeue_expired(db, jobs, LEASE, limit=2)] == [1, 2]
    assert requeue_expired(db, jobs, LEASE, where=[jobs.c.id == 9]) == []
    assert [r["id"] for r in requeue_expired(db, jobs, LEASE, where=jobs.c.id == 4)] == [4]
    assert requeue_expired(db, jobs, LEASE, limit=0) == []
    assert {i: r["status"] for i, r in all_rows(db).items()} == {
        1: "PENDING",
        2: "PENDING",
        3: "CLAIMED",
        4: "PENDING",
    }


def test_requeue_with_the_values_given_instead_of_saved_ones(tables):
    db = tables
    add_jobs(db, ["PENDING", "PENDING"])
    leased_claim(db, "dead", SHORT)
    time.sleep(PAST_SHORT)
    plain = Lease(worker="claimed_by", expires="lease_expires")
    requeued = requeue_expired(db, jobs, plain, values={"status": "RETRY"})
    assert [(r["id"], r["status"], r["claimed_by"]) for r in requeued] == [
        (1, "RETRY", None),
        (2, "RETRY", None),
    ]


# -- extend_leases ------------------------------------------------------------------------------


def test_a_worker_extends_only_the_unexpired_leases_it_holds(tables):
    db = tables
    add_jobs(db, ["PENDING"] * 6)
    leased_claim(db, "w1", SHORT, limit=2)  # 1, 2: will have expired
    leased_claim(db, "w1", 30, limit=2)  # 3, 4
    leased_claim(db, "w2", 30, limit=1)  # 5
    time.sleep(PAST_SHORT)
    ends = {i: r["lease_expires"] for i, r in all_rows(db).items()}
    start = now(db)
    assert extend_leases(db, jobs, LEASE, "w1", 60) == [3, 4]
    stored = all_rows(db)
    assert all(stored[i]["lease_expires"] >= start + 60 for i in (3, 4))
    assert {i: stored[i]["lease_expires"] for i in (1, 2, 5, 6)} == {
        i: ends[i] for i in (1, 2, 5, 6)
    }
    assert extend_leases(db, jobs, LEASE, "w1", 60, ids=[4, 5, 1, 99]) == [4]
    assert extend_leases(db, jobs, LEASE, "w2", 60, ids=[]) == []
    assert extend_leases(db, jobs, LEASE, "w3", 60) == []
    # The expired rows go back; the extended ones stay.
    assert [r["id"] for r in requeue_expired(db, jobs, LEASE, where=[IS_CLAIMED])] == [1, 2]


def test_extend_inside_a_unit_of_work_keeps_the_rows_until_it_ends(tables):
    db = tables
    add_jobs(db, ["PENDING"] * 3)
    leased_claim(db, "w1", 30)
    with db.transaction() as conn:
        held = extend_leases(db, jobs, LEASE, "w1", 30, ids=[1, 2])
        conn.execute(sa.update(jobs).where(jobs.c.id.in_(held)).values(status="DONE"))
    assert {i: r["status"] for i, r in all_rows(db).items()} == {
        1: "DONE",
        2: "DONE",
        3: "CLAIMED",
    }


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lease",
    [
        "claimed_by",
        Lease(worker="nope", expires="lease_expires"),
        Lease(worker="claimed_by", expires="claimed_by"),
        Lease(worker="id", expires="lease_expires"),
        Lease(worker="claimed_by", expires="lease_expires", restore={"status": "nope"}),
        Lease(worker="claimed_by", expires="lease_expires", restore={"status": "claimed_by"}),
        Lease(worker="claimed_by", expires="lease_expires", restore={"status": "status"}),
        Lease(worker="claimed_by", expires="lease_expires", restore=["status"]),
    ],
    ids=[
        "not-a-lease",
        "unknown",
        "same-column",
        "primary-key",
        "unknown-saved",
        "saved-is-worker",
        "saved-is-itself",
        "restore-list",
    ],
)
def test_a_bad_lease_is_refused_and_changes_nothing(tables, lease):
    db = tables
    add_jobs(db, ["PENDING"])
    leased_claim(db, "w0", SHORT)
    time.sleep(PAST_SHORT)
    before = all_rows(db)
    with pytest.raises(InvalidQuery):
        claim(db, jobs, {"status": "X"}, lease=lease, worker="w1", lease_seconds=5)
    with pytest.raises(InvalidQuery):
        requeue_expired(db, jobs, lease)
    with pytest.raises(InvalidQuery):
        extend_leases(db, jobs, lease, "w0", 5)
    assert all_rows(db) == before


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"worker": "", "lease_seconds": 5}, InvalidValue),
        ({"worker": 7, "lease_seconds": 5}, InvalidValue),
        ({"worker": None, "lease_seconds": 5}, InvalidValue),
        ({"worker": "w", "lease_seconds": 0}, InvalidValue),
        ({"worker": "w", "lease_seconds": -1}, InvalidValue),
        ({"worker": "w", "lease_seconds": math.nan}, InvalidValue),
        ({"worker": "w", "lease_seconds": True}, InvalidValue),
        ({"worker": "w", "lease_seconds": "5"}, InvalidValue),
        ({"worker": "w", "lease_seconds": None}, InvalidValue),
        ({"worker": "w", "lease_seconds": 5, "lease": None}, InvalidQuery),
        ({"worker": "w", "lease_seconds": 5, "values": {"claimed_by": "x"}}, InvalidQuery),
        ({"worker": "w", "lease_seconds": 5, "values": {"claimed_from": "x"}}, InvalidQuery),
    ],
    ids=repr,
)
def test_bad_lease_arguments_are_refused_and_change_nothing(tables, kwargs, error):
    db = tables
    add_jobs(db, ["PENDING", "PENDING"])
    before = all_rows(db)
    args = {"lease": LEASE, "values": {"status": "CLAIMED"}, **kwargs}
    with pytest.raises(error):
        claim(db, jobs, args.pop("values"), where=[NOT_CLAIMED], **args)
    assert all_rows(db) == before


def test_bad_extend_and_requeue_arguments_are_refused_and_change_nothing(tables):
    db = tables
    add_jobs(db, ["PENDING", "PENDING"])
    leased_claim(db, "w1", SHORT)
    time.sleep(PAST_SHORT)
    before = all_rows(db)
    with pytest.raises(InvalidQuery, match="ids"):
        extend_leases(db, jobs, LEASE, "w1", 5, ids="12")
    with pytest.raises(InvalidValue):
        extend_leases(db, jobs, LEASE, "", 5)
    with pytest.raises(InvalidValue):
        extend_leases(db, jobs, LEASE, "w1", 0)
    for values in ({"claimed_by": "x"}, {"status": "PENDING"}, {"nope": 1}):
        with pytest.raises(InvalidQuery):
            requeue_expired(db, jobs, LEASE, values=values)
    with pytest.raises(InvalidQuery, match="limit"):
        requeue_expired(db, jobs, LEASE, limit=-1)
    with pytest.raises(InvalidQuery, match="where"):
        requeue_expired(db, jobs, LEASE, where="status = 'CLAIMED'")
    assert all_rows(db) == before


# -- several sweepers at once -------------------------------------------------------------------

EXPIRED = 2000
SWEEPERS = 4


def sweep_until_empty(db: Database, batch: int) -> list[int]:
    """Requeue expired rows ``batch`` at a time until a sweep finds none; return their ids."""
    requeued: list[int] = []
    while True:
        rows = requeue_expired(db, jobs, LEASE, where=[IS_CLAIMED], limit=batch)
        if not rows:
            return requeued
        requeued.extend(row["id"] for row in rows)


def test_sweeper_processes_requeue_each_expired_row_once(shared_url, run_dir: Path, tables_of):
    db = shared_database(shared_url, run_dir)
    tables_of(db, cs.metadata)
    add_jobs(db, ["PENDING" if i % 3 else "EXECUTED" for i in range(1, EXPIRED + 1)])
    assert len(leased_claim(db, "dead", SHORT, limit=None)) == EXPIRED
    time.sleep(PAST_SHORT)
    per_sweeper = run_processes(shared_url, sweep_until_empty, [(50,)] * SWEEPERS)
    requeued = [i for ids in per_sweeper for i in ids]
    assert len(requeued) == len(set(requeued)) == EXPIRED
    stored = all_rows(db)
    assert all(
        r["status"] == ("PENDING" if i % 3 else "EXECUTED") and r["claimed_by"] is None
        for i, r in stored.items()
    )

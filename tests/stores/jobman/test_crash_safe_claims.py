"""Crash-safe claims in jobman: claim_jobs leases its jobs to the DAO's worker id,
extend_claims renews them, requeue_expired_jobs puts a dead worker's jobs back; and 4
worker processes, one killed with SIGKILL mid-batch, complete 10,000 jobs exactly once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time

import pytest
import sqlalchemy as sa

from dblayer.core import InvalidQuery, InvalidValue
from dblayer.stores.jobman import EngineSqliteDAO, JobmanSqliteDAO, WorkerSqliteDAO
from tests import concurrency
from tests.conftest import SHARED_BACKENDS, backend_url
from tests.stores.jobman.test_records import WORKER_FIELDS

from .concurrency import PENDING, crash_worker

SHORT = 0.2  # seconds of a lease that a test lets run out
PAST_SHORT = 0.5


def lease_rows(dao):
    """key -> (status, claimed_by, claimed_from, claim_expires) straight from the table."""
    t = dao.orms["job"].table
    query = sa.select(t.c.key, t.c.status, t.c.claimed_by, t.c.claimed_from, t.c.claim_expires)
    rows = dao.db.run(lambda conn: conn.execute(query).all(), readonly=True)
    return {key: tuple(rest) for key, *rest in rows}


def statuses(dao):
    return {job["key"]: job["status"] for job in dao.query_jobs()}


# -- the DAO's options ------------------------------------------------------------------------


def test_each_dao_has_its_own_worker_id_and_a_default_lease():
    first, second = WorkerSqliteDAO(initialize=False), JobmanSqliteDAO(initialize=False)
    host, pid, rand = first.worker_id.rsplit(":", 2)
    assert (host, pid) == (socket.gethostname(), str(os.getpid())) and rand
    assert first.worker_id != second.worker_id
    assert first.lease_seconds == second.lease_seconds == 300
    named = EngineSqliteDAO(initialize=False, worker_id="w1", lease_seconds=2.5)
    assert (named.worker_id, named.lease_seconds) == ("w1", 2.5)
    jobman = JobmanSqliteDAO(lock_timeout=5, initialize=False, worker_id="jm", lease_seconds=9)
    assert (jobman.worker_id, jobman.lease_seconds, jobman.lock_timeout) == ("jm", 9.0, 5)


@pytest.mark.parametrize(
    "options",
    [
        {"worker_id": ""},
        {"worker_id": 5},
        {"lease_seconds": 0},
        {"lease_seconds": -1},
        {"lease_seconds": float("inf")},
        {"lease_seconds": True},
        {"lease_seconds": "60"},
    ],
    ids=repr,
)
def test_bad_lease_options_are_refused(options):
    with pytest.raises(InvalidValue):
        WorkerSqliteDAO(initialize=False, **options)


@pytest.mark.parametrize("field", ["claimed_by", "claim_expires", "claimed_from"])
def test_the_lease_columns_cannot_be_job_fields(field):
    with pytest.raises(InvalidValue, match=field):
        WorkerSqliteDAO(initialize=False, extra_job_fields={field: {"type": "TEXT"}})


# -- claims record their lease ------------------------------------------------------------------


def test_claim_jobs_leases_the_jobs_to_the_dao_and_job_dicts_do_not_show_it(dao):
    dao.save_jobs(
        [
            {"key": "a", "status": "PENDING"},
            {"key": "b", "status": "EXECUTED"},
            {"key": "c", "status": "RUNNING"},
        ]
    )
    query = {"filters": [{"field": "status", "op": "IN", "arg": ["PENDING", "EXECUTED"]}]}
    claimed = dao.claim_jobs(query)
    assert sorted(job["key"] for job in claimed) == ["a", "b"]
    assert all(list(job) == WORKER_FIELDS for job in claimed)
    assert all(list(job) == WORKER_FIELDS for job in dao.query_jobs())
    rows = lease_rows(dao)
    assert rows["a"][:3] == ("CLAIMED", dao.worker_id, "PENDING")
    assert rows["b"][:3] == ("CLAIMED", dao.worker_id, "EXECUTED")
    assert rows["c"] == ("RUNNING", None, None, None)
    assert all(rows[k][3] > time.time() + dao.lease_seconds - 60 for k in "ab")


def test_saving_a_claimed_job_keeps_its_lease(dao):
    dao.save_jobs([{"key": "a", "status": "PENDING"}])
    [job] = dao.claim_jobs()
    dao.save_jobs([{**job, "engine_meta": {"step": 1}}])
    assert lease_rows(dao)["a"][:3] == ("CLAIMED", dao.worker_id, "PENDING")
    assert dao.extend_claims() == ["a"]


# -- requeue_expired_jobs ---------------------------------------------------------------------------


def test_requeue_expired_jobs_returns_them_to_the_status_they_were_claimed_from(dao, monkeypatch):
    dao.save_jobs(
        [
            {"key": "a", "status": "PENDING", "batch_meta": {"n": 1}},
            {"key": "b", "status": "EXECUTED"},
            {"key": "c", "status": "PENDING"},
            {"key": "d", "status": "PENDING"},
        ]
    )
    monkeypatch.setattr(dao, "lease_seconds", SHORT)
    dead = dao.claim_jobs({"filters": [{"field": "key", "op": "IN", "arg": ["a", "b", "c"]}]})
    # c is finished before its lease ends: a finished job is never requeued.
    dao.save_jobs([{**next(j for j in dead if j["key"] == "c"), "status": "COMPLETED"}])
    monkeypatch.setattr(dao, "lease_seconds", 60)
    dao.claim_jobs({"filters": [{"field": "key", "op": "=", "arg": "d"}]})  # alive
    modified = {job["key"]: job["modified"] for job in dao.query_jobs()}
    assert dao.requeue_expired_jobs() == []  # nothing has expired yet
    time.sleep(PAST_SHORT)
    requeued = dao.requeue_expired_jobs()
    assert sorted(job["key"] for job in requeued) == ["a", "b"]
    assert all(list(job) == WORKER_FIELDS for job in requeued)
    assert all(job["modified"] >= modified[job["key"]] for job in requeued)
    assert {job["key"]: job for job in requeued} == {
        k: job for k, job in ((j["key"], j) for j in dao.query_jobs()) if k in "ab"
    }
    assert statuses(dao) == {"a": "PENDING", "b": "EXECUTED", "c": "COMPLETED", "d": "CLAIMED"}
    assert dao.get_job("a")["batch_meta"] == {"n": 1}
    rows = lease_rows(dao)
    assert rows["a"] == ("PENDING", None, None, None) and rows["b"] == (
        "EXECUTED",
        None,
        None,
        None,
    )
    assert dao.requeue_expired_jobs() == []
    waiting = {"filters": [{"field": "status", "op": "IN", "arg": ["PENDING", "EXECUTED"]}]}
    assert sorted(job["key"] for job in dao.claim_jobs(waiting)) == ["a", "b"]


def test_requeue_expired_jobs_takes_at_most_limit(dao, monkeypatch):
    dao.save_jobs([{"key": f"j{n}", "status": "PENDING"} for n in range(5)])
    monkeypatch.setattr(dao, "lease_seconds", SHORT)
    dao.claim_jobs()
    time.sleep(PAST_SHORT)
    assert len(dao.requeue_expired_jobs(limit=2)) == 2
    assert len(dao.requeue_expired_jobs(limit=None)) == 3
    with pytest.raises(InvalidQuery):
        dao.requeue_expired_jobs(limit=-1)


# -- extend_claims ------------------------------------------------------------------------------------


def test_extend_claims_renews_only_the_unexpired_claims_of_this_dao(dao, monkeypatch):
    dao.save_jobs([{"key": f"j{n}", "status": "PENDING"} for n in range(6)])
    first_two = {**PENDING, "order_by": {"field": "key"}, "limit": 2}
    me = dao.worker_id
    monkeypatch.setattr(dao, "lease_seconds", SHORT)
    dao.claim_jobs(first_two)  # j0, j1: their lease runs out
    monkeypatch.setattr(dao, "lease_seconds", 60)
    dao.claim_jobs(first_two)  # j2, j3
    monkeypatch.setattr(dao, "worker_id", "someone-else")
    dao.claim_jobs({**first_two, "limit": 1})  # j4, another worker's
    monkeypatch.setattr(dao, "worker_id", me)
    time.sleep(PAST_SHORT)
    before = lease_rows(dao)
    assert sorted(dao.extend_claims()) == ["j2", "j3"]
    after = lease_rows(dao)
    assert all(after[k][3] > before[k][3] for k in ("j2", "j3"))
    assert {k: after[k] for k in ("j0", "j1", "j4", "j5")} == {
        k: before[k] for k in ("j0", "j1", "j4", "j5")
    }
    assert dao.extend_claims(["j3", "j4", "j0", "nope"]) == ["j3"]
    assert dao.extend_claims([]) == []
    with pytest.raises(InvalidQuery):
        dao.extend_claims("j3")
    assert sorted(job["key"] for job in dao.requeue_expired_jobs()) == ["j0", "j1"]
    assert lease_rows(dao)["j4"][:2] == ("CLAIMED", "someone-else")


# -- job_stats --------------------------------------------------------------------------------------


def test_job_stats_counts_statuses_pending_age_and_expired_claims(dao, monkeypatch):
    assert dao.job_stats() == {
        "statuses": {},
        "total": 0,
        "oldest_pending_age": None,
        "claimed": 0,
        "expired_claims": 0,
    }
    old = time.time() - 1000
    dao.save_jobs(
        [{"key": f"p{n}", "status": "PENDING", "created": old + n} for n in range(4)]
        + [{"key": "r", "status": "RUNNING"}, {"key": "x"}]
    )
    monkeypatch.setattr(dao, "lease_seconds", SHORT)
    dao.claim_jobs({**PENDING, "order_by": {"field": "created"}, "limit": 1})
    monkeypatch.setattr(dao, "lease_seconds", 60)
    dao.claim_jobs({**PENDING, "order_by": {"field": "created"}, "limit": 1})
    time.sleep(PAST_SHORT)
    stats = dao.job_stats()
    assert stats["statuses"] == {"PENDING": 2, "CLAIMED": 2, "RUNNING": 1, None: 1}
    assert stats["total"] == 6
    assert 990 <= stats["oldest_pending_age"] <= 1000 + 300  # p2 was created 998 s ago
    assert (stats["claimed"], stats["expired_claims"]) == (2, 1)


# -- the crash test ----------------------------------------------------------------------------------

JOBS = 10_000
WORKERS = 4
BATCH = 100
LEASE = 1.0
PREFIX = "jmt_crash_"


@pytest.mark.slow
@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_a_killed_workers_jobs_are_requeued_and_every_job_completes_once(
    make_dao, backend, run_dir
):
    dao = make_dao(WorkerSqliteDAO, table_prefix=PREFIX)
    keys = [f"job-{n:05d}" for n in range(JOBS)]
    dao.save_jobs([{"key": key, "status": "PENDING"} for key in keys])

    ctx = multiprocessing.get_context("spawn")
    start, claimed, messages = ctx.Barrier(WORKERS), ctx.Event(), ctx.Queue()
    from_victim, to_parent = ctx.Pipe(duplex=False)
    url = backend_url(backend, run_dir)
    names = [f"victim-{backend}", *(f"worker{n}-{backend}" for n in range(1, WORKERS))]
    children = [
        ctx.Process(
            target=crash_worker,
            args=(
                url,
                PREFIX,
                name,
                LEASE,
                BATCH,
                to_parent if n == 0 else None,
                start,
                claimed,
                messages,
            ),
        )
        for n, name in enumerate(names)
    ]
    for child in children:
        child.start()
    reports = {}
    try:
        assert from_victim.poll(concurrency.CHILD_TIMEOUT), "the victim did not claim"
        kind, name, *rest = from_victim.recv()
        assert kind == "victim", f"{name} failed:\n{rest[0]}"
        os.kill(children[0].pid, signal.SIGKILL)  # it holds half a batch: killed mid-batch
        reports[name] = rest
        while len(reports) < WORKERS:
            kind, name, *rest = messages.get(timeout=concurrency.CHILD_TIMEOUT)
            assert kind != "error", f"{name} failed:\n{rest[0]}"
            reports[name] = rest
    finally:
        for child in children:
            child.join(timeout=concurrency.CHILD_TIMEOUT)
            if child.is_alive():
                child.kill()
    assert children[0].exitcode == -signal.SIGKILL

    victim_keys, victim_done = reports[names[0]]
    assert len(victim_keys) == BATCH and victim_done == BATCH // 2
    completed = victim_done + sum(reports[name][0] for name in names[1:])
    requeued = sum(reports[name][1] for name in names[1:])
    assert completed == JOBS
    assert requeued >= BATCH - victim_done  # at least the victim's unfinished half

    # In the database: every job COMPLETED, each completion recorded once, by its finisher.
    jobs = {job["key"]: job for job in dao.query_jobs()}
    assert set(jobs) == set(keys)
    assert {job["status"] for job in jobs.values()} == {"COMPLETED"}
    done = {kvp["key"]: kvp["value"] for kvp in dao.query_kvps()}
    assert sorted(done) == sorted(f"done:{key}" for key in keys)
    assert all(jobs[key]["engine_key"] == done[f"done:{key}"] for key in keys)
    unfinished = victim_keys[victim_done:]
    assert all(jobs[key]["engine_key"] != names[0] for key in unfinished)
    assert all(jobs[key]["engine_key"] == names[0] for key in victim_keys[:victim_done])
    stats = dao.job_stats()
    assert (stats["claimed"], stats["expired_claims"]) == (0, 0)

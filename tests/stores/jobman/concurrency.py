"""Helpers of the jobman store's multi-process (and multi-thread) tests.

Children are started with multiprocessing's "spawn" context, so everything they run
lives at module level here; each child opens its own DAO from a URL.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from dblayer.stores.jobman import WorkerSqliteDAO
from tests import concurrency
from tests.concurrency import run_threads

__all__ = ["claim_until_empty", "crash_worker", "increment", "run_processes", "run_threads"]
PENDING = {"filters": [{"field": "status", "op": "=", "arg": "PENDING"}]}


def claim_until_empty(dao: WorkerSqliteDAO, batch: int) -> list[list[str]]:
    """Claim PENDING jobs ``batch`` at a time until none is left; return the batches' keys."""
    batches: list[list[str]] = []
    while True:
        jobs = dao.claim_jobs({**PENDING, "limit": batch})
        if not jobs:
            return batches
        for job in jobs:
            if job["status"] != "CLAIMED":
                raise AssertionError(f"claim_jobs returned a job that is not CLAIMED: {job!r}")
        batches.append([job["key"] for job in jobs])


def increment(dao: WorkerSqliteDAO, key: str, times: int) -> int:
    """Add 1 to the kvp ``key`` ``times`` times by get_kvp + update_kvp + retry.

    Returns how many update_kvp calls lost a race (raised UpdateError) on the way.
    """
    lost = 0
    for _ in range(times):
        while True:
            current = dao.get_kvp(key)["value"]
            try:
                dao.update_kvp(key, current + 1, where_prev_value=current)
                break
            except dao.UpdateError:
                lost += 1
    return lost


@contextmanager
def open_dao(url: str, prefix: str) -> Iterator[WorkerSqliteDAO]:
    """A child's own DAO on ``url``, connected before the race starts."""
    dao = WorkerSqliteDAO(db_uri=url, table_prefix=prefix, initialize=False)
    try:
        dao.get_kvp("connect before the race starts")
        yield dao
    finally:
        dao.close()


def run_processes(
    url: str, prefix: str, work: Callable[..., Any], args_per_child: list[tuple[Any, ...]]
) -> list[Any]:
    """Run ``work(WorkerSqliteDAO(url, prefix), *args)`` in one spawned process per entry,
    all released together; return their results in order."""
    return concurrency.run_processes(partial(open_dao, url, prefix), work, args_per_child)


# -- crash-safe claims: workers that complete each job once, one of them killed ---------------

ACTIVE = {"filters": [{"field": "status", "op": "IN", "arg": ["PENDING", "CLAIMED"]}], "limit": 1}


def complete(dao: WorkerSqliteDAO, keys: list[str]) -> int:
    """Complete the jobs of ``keys`` this DAO still holds, recording each completion as the
    kvp ``done:<key>`` (a second completion of a job would collide); return how many."""
    with dao.db.transaction():
        held = dao.extend_claims(keys)  # locked until the end of the transaction
        if held:
            dao.update_jobs(
                {"status": "COMPLETED", "engine_key": dao.worker_id},
                {"filters": [{"field": "key", "op": "IN", "arg": held}]},
            )
            dao.save_kvps(
                [{"key": f"done:{key}", "value": dao.worker_id} for key in held], replace=False
            )
    return len(held)


def crash_worker(
    url: str,
    prefix: str,
    name: str,
    lease_seconds: float,
    batch: int,
    victim: Any,
    start: Any,
    claimed: Any,
    messages: Any,
) -> None:
    """One worker of the crash test. The victim (``victim``: the sending end of a Pipe of
    its own, since a process killed while it holds a Queue's lock would block every other
    writer) claims a batch, completes half of it, says so and waits to be killed; the
    others claim, complete and sweep until no job is left, then report how many jobs they
    completed and requeued on ``messages``. The others start claiming once the victim has
    its batch (the Event ``claimed``): on SQLite a waiting writer can be passed over for
    as long as busy writers keep the lock, and the victim must not find the queue empty."""
    try:
        dao = WorkerSqliteDAO(
            db_uri=url,
            table_prefix=prefix,
            initialize=False,
            worker_id=name,
            lease_seconds=lease_seconds,
        )
        dao.get_kvp("connect before the race starts")
        start.wait(concurrency.CHILD_TIMEOUT)
        if victim:
            try:
                keys = [job["key"] for job in dao.claim_jobs({**PENDING, "limit": batch})]
            finally:
                claimed.set()
            done = complete(dao, keys[: len(keys) // 2])
            victim.send(("victim", name, keys, done))
            time.sleep(concurrency.CHILD_TIMEOUT)
            return
        claimed.wait(concurrency.CHILD_TIMEOUT)
        completed = requeued = 0
        while True:
            jobs = dao.claim_jobs({**PENDING, "limit": batch})
            if jobs:
                completed += complete(dao, [job["key"] for job in jobs])
                continue
            swept = len(dao.requeue_expired_jobs())
            requeued += swept
            if not swept and not dao.query_jobs(ACTIVE):
                break
            if not swept:
                time.sleep(0.05)  # the victim's jobs are still leased
        messages.put(("done", name, completed, requeued))
    except BaseException:
        report = ("error", name, traceback.format_exc())
        if victim:
            victim.send(report)
        else:
            messages.put(report)

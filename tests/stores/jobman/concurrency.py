"""Helpers of the jobman store's multi-process (and multi-thread) tests.

Children are started with multiprocessing's "spawn" context, so everything they run
lives at module level here; each child opens its own DAO from a URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from dblayer.stores.jobman import WorkerSqliteDAO
from tests import concurrency
from tests.concurrency import run_threads

__all__ = ["claim_until_empty", "increment", "run_processes", "run_threads"]
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

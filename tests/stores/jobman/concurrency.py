"""Helpers of the jobman store's multi-process (and multi-thread) tests.

Children are started with multiprocessing's "spawn" context, so everything they run
lives at module level here; each child opens its own DAO from a URL.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dblayer.stores.jobman import WorkerSqliteDAO

# Seconds a test waits for its children before it fails (a hang, not a timing assertion).
CHILD_TIMEOUT = 240
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


def _child(
    url: str,
    prefix: str,
    work: Callable[..., Any],
    args: tuple[Any, ...],
    start: Any,
    results: Any,
    index: int,
) -> None:
    try:
        dao = WorkerSqliteDAO(db_uri=url, table_prefix=prefix, initialize=False)
        try:
            dao.get_kvp("connect before the race starts")
            start.wait(CHILD_TIMEOUT)
            results.put((index, "ok", work(dao, *args)))
        finally:
            dao.close()
    except BaseException:  # the parent must hear about any failure, not time out
        results.put((index, "error", traceback.format_exc()))


def run_processes(
    url: str, prefix: str, work: Callable[..., Any], args_per_child: list[tuple[Any, ...]]
) -> list[Any]:
    """Run ``work(WorkerSqliteDAO(url, prefix), *args)`` in one spawned process per entry,
    all released together; return their results in order."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(args_per_child))
    results = ctx.Queue()
    children = [
        ctx.Process(target=_child, args=(url, prefix, work, args, start, results, i))
        for i, args in enumerate(args_per_child)
    ]
    for child in children:
        child.start()
    try:
        outcomes = [results.get(timeout=CHILD_TIMEOUT) for _ in children]
    finally:
        for child in children:
            child.join(timeout=CHILD_TIMEOUT)
            if child.is_alive():
                child.kill()
    errors = [detail for _, status, detail in outcomes if status != "ok"]
    if errors:
        raise AssertionError("a child process failed:\n" + "\n".join(errors))
    return [detail for _, _, detail in sorted(outcomes, key=lambda o: o[0])]


def run_threads(
    dao: WorkerSqliteDAO, work: Callable[..., Any], args_per_thread: list[tuple[Any, ...]]
) -> list[Any]:
    """Run ``work(dao, *args)`` in one thread per entry, all released together, sharing ``dao``."""
    start = threading.Barrier(len(args_per_thread))

    def go(args: tuple[Any, ...]) -> Any:
        start.wait(CHILD_TIMEOUT)
        return work(dao, *args)

    with ThreadPoolExecutor(max_workers=len(args_per_thread)) as pool:
        futures = [pool.submit(go, args) for args in args_per_thread]
        return [f.result(timeout=CHILD_TIMEOUT) for f in futures]

"""Helpers for the multi-process (and multi-thread) tests of claims and compare-and-set.

Children are started with multiprocessing's "spawn" context, so everything they run
lives at module level here; each child opens its own Database from a URL.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dblayer.core import Database, KeyValueStore, claim
from tests.core import claims_schema as cs

# Seconds a test waits for its children before it fails (a hang, not a timing assertion).
CHILD_TIMEOUT = 240


def shared_database(url: str, run_dir: Path) -> Database:
    """The test run's shared Database for the backend ``url`` (as given by ``shared_url``)."""
    from tests.conftest import SHARED_BACKENDS, backend_url, open_database  # not in children

    backend = next(b for b in SHARED_BACKENDS if backend_url(b, run_dir) == url)
    return open_database(backend, run_dir)


# -- the work, shared by processes and threads ---------------------------------------------


def claim_until_empty(db: Database, worker: str, batch: int) -> list[int]:
    """Claim PENDING jobs ``batch`` at a time until none is left; return the ids claimed."""
    jobs = cs.jobs
    claimed: list[int] = []
    while True:
        rows = claim(
            db,
            jobs,
            {"status": "CLAIMED", "worker": worker},
            where=[jobs.c.status == "PENDING"],
            order_by=[jobs.c.id],
            limit=batch,
        )
        if not rows:
            return claimed
        for row in rows:
            # What claim() hands back must be the row as this worker left it.
            if row["status"] != "CLAIMED" or row["worker"] != worker:
                raise AssertionError(f"{worker} got a row it did not claim: {row!r}")
        claimed.extend(row["id"] for row in rows)


def increment(db: Database, key: str, times: int) -> int:
    """Add 1 to the counter ``key`` ``times`` times by read + compare_and_set + retry.

    Returns how many compare_and_set calls failed (lost races) on the way.
    """
    store = KeyValueStore(db, cs.kv)
    lost = 0
    for _ in range(times):
        while True:
            current = store.get(key)
            if store.compare_and_set(key, current + 1, current):
                break
            lost += 1
    return lost


# -- processes ------------------------------------------------------------------------------


def _child(
    url: str, work: Callable[..., Any], args: tuple[Any, ...], start: Any, results: Any, index: int
) -> None:
    try:
        db = Database(url)
        try:
            db.server_version()  # connect before the race starts
            start.wait(CHILD_TIMEOUT)
            results.put((index, "ok", work(db, *args)))
        finally:
            db.dispose()
    except BaseException:  # the parent must hear about any failure, not time out
        results.put((index, "error", traceback.format_exc()))


def run_processes(
    url: str, work: Callable[..., Any], args_per_child: list[tuple[Any, ...]]
) -> list[Any]:
    """Run ``work(Database(url), *args)`` in one spawned process per entry of
    ``args_per_child``, all released together; return their results in order."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(args_per_child))
    results = ctx.Queue()
    children = [
        ctx.Process(target=_child, args=(url, work, args, start, results, i))
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
    db: Database, work: Callable[..., Any], args_per_thread: list[tuple[Any, ...]]
) -> list[Any]:
    """Run ``work(db, *args)`` in one thread per entry, all released together, sharing ``db``."""
    start = threading.Barrier(len(args_per_thread))

    def go(args: tuple[Any, ...]) -> Any:
        start.wait(CHILD_TIMEOUT)
        return work(db, *args)

    with ThreadPoolExecutor(max_workers=len(args_per_thread)) as pool:
        futures = [pool.submit(go, args) for args in args_per_thread]
        return [f.result(timeout=CHILD_TIMEOUT) for f in futures]

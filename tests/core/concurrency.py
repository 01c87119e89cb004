"""Helpers for the multi-process (and multi-thread) tests of claims and compare-and-set.

Children are started with multiprocessing's "spawn" context, so everything they run
lives at module level here; each child opens its own Database from a URL
(the runner itself is tests/concurrency.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from dblayer.core import Database, KeyValueStore, claim
from tests import concurrency
from tests.concurrency import run_threads
from tests.core import claims_schema as cs

__all__ = ["claim_until_empty", "increment", "run_processes", "run_threads", "shared_database"]


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


@contextmanager
def open_database(url: str) -> Iterator[Database]:
    """A child's own Database on ``url``, connected before the race starts."""
    with Database(url) as db:
        db.server_version()
        yield db


def run_processes(
    url: str, work: Callable[..., Any], args_per_child: list[tuple[Any, ...]]
) -> list[Any]:
    """Run ``work(Database(url), *args)`` in one spawned process per entry, all released
    together; return their results in order."""
    return concurrency.run_processes(partial(open_database, url), work, args_per_child)

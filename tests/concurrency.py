"""Running one piece of work in several processes (or threads) at once, for race tests.

Children are started with multiprocessing's "spawn" context; each opens its own
resource (a Database, a DAO, ...) with ``opener``, a picklable callable returning a
context manager that yields the resource ready to use (connected). All children
are released together by a barrier; any failure in a child fails the test with
the child's traceback.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

# Seconds a test waits for its children before it fails (a hang, not a timing assertion).
CHILD_TIMEOUT = 240

Opener = Callable[[], AbstractContextManager[Any]]


def _child(
    opener: Opener,
    work: Callable[..., Any],
    args: tuple[Any, ...],
    start: Any,
    results: Any,
    index: int,
) -> None:
    try:
        with opener() as resource:
            start.wait(CHILD_TIMEOUT)
            results.put((index, "ok", work(resource, *args)))
    except BaseException:  # the parent must hear about any failure, not time out
        results.put((index, "error", traceback.format_exc()))


def run_processes(
    opener: Opener, work: Callable[..., Any], args_per_child: list[tuple[Any, ...]]
) -> list[Any]:
    """Run ``work(resource, *args)`` in one spawned process per entry of ``args_per_child``,
    all released together; return their results in order."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(args_per_child))
    results = ctx.Queue()
    children = [
        ctx.Process(target=_child, args=(opener, work, args, start, results, i))
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
    resource: Any, work: Callable[..., Any], args_per_thread: list[tuple[Any, ...]]
) -> list[Any]:
    """Run ``work(resource, *args)`` in one thread per entry, all released together, sharing
    ``resource``; return their results in order."""
    start = threading.Barrier(len(args_per_thread))

    def go(args: tuple[Any, ...]) -> Any:
        start.wait(CHILD_TIMEOUT)
        return work(resource, *args)

    with ThreadPoolExecutor(max_workers=len(args_per_thread)) as pool:
        futures = [pool.submit(go, args) for args in args_per_thread]
        return [f.result(timeout=CHILD_TIMEOUT) for f in futures]

"""Worker processes that run one side of a multi-process case ("ours" or "raw") on command.

Each worker opens what it needs once with ``setup(backend, name)`` — a picklable,
module-level callable returning a context manager that yields ``{"ours": fn, "raw": fn}``
already warmed up — and then, per command, waits at a barrier so all start together
and reports when it started, when it finished and what its side returned.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from .runner import Backend

TIMEOUT = 600  # seconds a worker or the parent waits before giving up on the other

Setup = Callable[[Backend, str], AbstractContextManager[Mapping[str, Callable[..., Any]]]]


def _worker(
    setup: Setup, backend: Backend, name: str, commands: Any, results: Any, barrier: Any
) -> None:
    try:
        with setup(backend, name) as sides:
            results.put(("ready", name, None))
            while (command := commands.get()) is not None:
                side, args = command
                barrier.wait(TIMEOUT)
                start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
                got = sides[side](*args)
                results.put((side, name, (start, time.perf_counter(), got)))
    except BaseException:
        results.put(("error", name, traceback.format_exc()))


class WorkerPool:
    """``n`` spawned worker processes that run one side of a case on command."""

    def __init__(self, setup: Setup, backend: Backend, n: int) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.names = [f"w{i}" for i in range(n)]
        self.commands = [spawn.Queue() for _ in self.names]
        self.results = spawn.Queue()
        self.barrier = spawn.Barrier(n + 1)
        self.procs = [
            spawn.Process(
                target=_worker, args=(setup, backend, name, q, self.results, self.barrier)
            )
            for name, q in zip(self.names, self.commands, strict=True)
        ]
        for proc in self.procs:
            proc.start()
        self._collect("ready")

    def _collect(self, side: str) -> dict[str, Any]:
        got = {}
        for _ in self.names:
            kind, name, payload = self.results.get(timeout=TIMEOUT)
            if kind == "error":
                self.close()
                raise RuntimeError(f"worker {name} failed:\n{payload}")
            if kind != side:
                raise RuntimeError(f"worker {name} answered {kind!r}, expected {side!r}")
            got[name] = payload
        return got

    def run(self, side: str, *args: Any) -> tuple[float, dict[str, Any]]:
        """Release every worker on ``side``; seconds from the first start to the last finish,
        and what each worker's side returned."""
        for q in self.commands:
            q.put((side, args))
        self.barrier.wait(TIMEOUT)
        got = self._collect(side)
        start = min(s for s, _, _ in got.values())
        end = max(e for _, e, _ in got.values())
        return end - start, {name: result for name, (_, _, result) in got.items()}

    def close(self) -> None:
        """Stop the workers."""
        for q in self.commands:
            q.put(None)
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()


def time_sides(
    setup: Setup,
    backend: Backend,
    workers: int,
    reps: int,
    reset: Callable[[], None],
    check: Callable[[dict[str, Any]], Mapping[str, int]],
    *args: Any,
) -> tuple[dict[str, float], Counter[str]]:
    """Best seconds per side over ``reps`` rounds (after one warm-up round) with ``workers``
    processes, the table reset before each run, and the problems ``check`` counted."""
    pool = WorkerPool(setup, backend, workers)
    try:
        best = {"ours": float("inf"), "raw": float("inf")}
        problems: Counter[str] = Counter()
        for rep in range(reps + 1):  # the first round is a warm-up
            for side in ("ours", "raw"):
                reset()
                seconds, got = pool.run(side, *args)
                problems.update(check(got))
                if rep:
                    best[side] = min(best[side], seconds)
    finally:
        pool.close()
    return best, problems

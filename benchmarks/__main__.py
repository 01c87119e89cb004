"""``python -m benchmarks``: run the cases on the chosen backends and print ours/raw ratios."""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dblayer.core import Database

from . import (
    blitz_add_many,
    blitz_queue,
    bulk_insert,
    claims,
    compare_and_set,
    copy_jobman,
    filtered_query,
    jobman_claim_jobs,
    jobman_query_jobs,
    jobman_save_jobs,
    nova_archive,
    nova_compute_node_statistics,
    nova_fixed_ip_associate_pool,
    nova_instance_create,
    nova_instance_get,
    nova_instance_list,
    nova_quota_reserve,
    nova_service_get_by_compute_host,
    point_get,
)
from .runner import (
    BACKENDS,
    Backend,
    Context,
    Result,
    backend_for,
    print_table,
    raw_connect,
    write_json,
)

CASES: dict[str, Callable[[Context], None]] = {
    "bulk_insert": bulk_insert.run,
    "point_get": point_get.run,
    "filtered_query": filtered_query.run,
    "claims": claims.run,
    "compare_and_set": compare_and_set.run,
    "jobman_save_jobs": jobman_save_jobs.run,
    "jobman_claim_jobs": jobman_claim_jobs.run,
    "jobman_query_jobs": jobman_query_jobs.run,
    "blitz_queue": blitz_queue.run,
    "blitz_add_many": blitz_add_many.run,
    "nova_instance_create": nova_instance_create.run,
    "nova_instance_get": nova_instance_get.run,
    "nova_instance_list": nova_instance_list.run,
    "nova_fixed_ip_associate_pool": nova_fixed_ip_associate_pool.run,
    "nova_service_get_by_compute_host": nova_service_get_by_compute_host.run,
    "nova_compute_node_statistics": nova_compute_node_statistics.run,
    "nova_quota_reserve": nova_quota_reserve.run,
    "copy_jobman": copy_jobman.run,
    "nova_archive": nova_archive.run,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time dblayer against the raw drivers doing the same work; print ours/raw.",
    )
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument(
        "--case",
        action="append",
        choices=list(CASES),
        help="a case to run (repeatable; default: all)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every row and call count (default 1.0; 0.1 is a quick run)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=3,
        help="timed runs per side of the short cases; the best counts (default 3)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run our side once more under cProfile and print where the time goes",
    )
    args = parser.parse_args(argv)
    if not args.scale > 0:
        parser.error("--scale must be positive")
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def _reachable(backend: Backend, db: Database) -> str | None:
    """The server version, or None (after saying why) when either side cannot connect."""
    try:
        version = db.server_version()
        raw_connect(backend).close()
    except Exception as e:  # a benchmark reports an unreachable server and goes on
        print(f"== {backend.name}: not reachable at {db.url}: {e}", flush=True)
        return None
    return version


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 if a backend or case failed or a claim was doubled."""
    args = parse_args(argv)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    cases = list(dict.fromkeys(args.case or CASES))
    print(
        f"dblayer benchmarks: Python {platform.python_version()}, SQLAlchemy {sa.__version__}, "
        f"scale {args.scale:g}, best of {args.reps}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="dblayer-bench-"))
    results: list[Result] = []
    failures: list[str] = []
    versions: dict[str, Any] = {}
    started = time.time()
    try:
        for name in backends:
            backend = backend_for(name, tmp)
            db = Database(backend.url)
            version = _reachable(backend, db)
            if version is None:
                failures.append(f"{name} unreachable")
                continue
            versions[name] = version
            print(f"== {name} {version}", flush=True)
            ctx = Context(backend, db, scale=args.scale, reps=args.reps, profile=args.profile)
            for case in cases:
                try:
                    CASES[case](ctx)
                except Exception:
                    traceback.print_exc()
                    failures.append(f"{case} on {name}")
            results.extend(ctx.results)
            db.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print_table(results)
    bad_claims = [
        r
        for r in results
        if any(r.extra.get(k) for k in ("double_claims", "unclaimed", "mismatched"))
    ]
    failures += [f"{r.case} on {r.backend}: {r.note}" for r in bad_claims]
    if args.json:
        meta = {
            "scale": args.scale,
            "reps": args.reps,
            "python": platform.python_version(),
            "sqlalchemy": sa.__version__,
            "servers": versions,
            "started": started,
            "seconds": time.time() - started,
            "failures": failures,
        }
        write_json(args.json, results, meta)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""claim_jobs and update_kvp raced by 4 processes (4 threads on in-memory SQLite)."""

from __future__ import annotations

import pytest

from dblayer.stores.jobman import WorkerSqliteDAO
from tests.conftest import backend_url

from .concurrency import claim_until_empty, increment, run_processes, run_threads

PREFIX = "jmt_cc_"
WORKERS = 4


def race(dao, backend, run_dir, work, args):
    """Run ``work`` in WORKERS processes on the backend (threads sharing ``dao`` in memory)."""
    if backend == "sqlite_memory":  # an in-memory database lives in one process
        return run_threads(dao, work, [args] * WORKERS)
    return run_processes(backend_url(backend, run_dir), PREFIX, work, [args] * WORKERS)


@pytest.mark.slow
def test_10000_jobs_claimed_by_4_workers_in_batches_of_100_each_exactly_once(
    make_dao, backend, run_dir
):
    dao = make_dao(WorkerSqliteDAO, table_prefix=PREFIX)
    keys = [f"job-{n:05d}" for n in range(10_000)]
    dao.save_jobs(
        [{"key": key, "status": "PENDING", "batch_meta": {"n": n}} for n, key in enumerate(keys)]
    )
    batches = [
        batch
        for worker in race(dao, backend, run_dir, claim_until_empty, (100,))
        for batch in worker
    ]
    claimed = [key for batch in batches for key in batch]
    assert all(1 <= len(batch) <= 100 for batch in batches)
    assert len(claimed) == len(set(claimed)) == 10_000
    assert set(claimed) == set(keys)
    assert {job["status"] for job in dao.query_jobs()} == {"CLAIMED"}


@pytest.mark.slow
def test_update_kvp_raced_by_4_workers_loses_no_update(make_dao, backend, run_dir):
    dao = make_dao(WorkerSqliteDAO, table_prefix=PREFIX)
    dao.create_kvp({"key": "counter", "value": 0})
    lost = race(dao, backend, run_dir, increment, ("counter", 25))
    assert dao.get_kvp("counter")["value"] == WORKERS * 25
    assert all(n >= 0 for n in lost)

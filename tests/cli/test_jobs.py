"""``dblayer jobs stats|requeue-expired`` run as a user runs them (the installed entry point
in a subprocess) on a SQLite file, PostgreSQL and MariaDB, the database checked afterwards."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dblayer.stores.jobman import JobmanSqliteDAO, WorkerSqliteDAO
from tests.cli.test_cli import SECRET, one_line_error, run, run_json, run_ok
from tests.conftest import SHARED_BACKENDS, backend_url, open_database
from tests.stores.jobman.conftest import fresh_dao  # noqa: F401 - a fixture

SHORT = 0.2  # a lease the test lets run out
PAST_SHORT = 0.5


@pytest.fixture(params=SHARED_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backends several processes share (the command runs in its own)."""
    return request.param


@pytest.fixture
def url(backend: str, run_dir: Path) -> str:
    """A database of these tests' own on each backend."""
    open_database(backend, run_dir, store="cli_jobs")  # fails if the server is down
    return backend_url(backend, run_dir, store="cli_jobs")


@pytest.fixture
def make_queue(fresh_dao: Any, url: str) -> Any:  # noqa: F811 - the fixture imported above
    """``make_queue(cls, **kwargs)``: a DAO on fresh tables in ``url`` (dropped afterwards)."""
    return lambda cls, **kwargs: fresh_dao(cls, db_uri=url, **kwargs)


def fill(dao: Any) -> None:
    """10 jobs: 2 claimed by a worker whose lease ran out, 1 live claim, 1 RUNNING, 6 waiting
    (5 PENDING created 100 s ago or later, 1 EXECUTED)."""
    old = time.time() - 100
    dao.save_jobs(
        [{"key": f"p{n}", "status": "PENDING", "created": old + n} for n in range(7)]
        + [{"key": "e", "status": "EXECUTED"}, {"key": "r", "status": "RUNNING"}, {"key": "x"}]
    )
    dead = {"filters": [{"field": "key", "op": "IN", "arg": ["p0", "e"]}]}
    dao.lease_seconds = SHORT
    dao.claim_jobs(dead)
    dao.lease_seconds = 60
    dao.claim_jobs({"filters": [{"field": "key", "op": "=", "arg": "p1"}]})
    time.sleep(PAST_SHORT)


def test_stats_of_a_jobman_queue(make_queue, url):
    dao = make_queue(JobmanSqliteDAO)
    fill(dao)
    found = run_json("jobs", "stats", "--url", url)
    assert found["table"] == "jobman_job" and found["dao"] == "jobman"
    assert found["statuses"] == {"PENDING": 5, "CLAIMED": 3, "RUNNING": 1, "null": 1}
    assert found["total"] == 10
    assert 95 <= found["oldest_pending_age_seconds"] <= 400  # p2, created 98 s ago
    assert (found["claimed"], found["expired_claims"]) == (3, 1 + 1)
    text = run_ok("jobs", "stats", "--url", url).stdout
    assert "jobman queue jobman_job" in text and "10 jobs" in text
    assert "claimed: 3, lease expired: 2" in text
    assert "(none)" in text and "PENDING" in text


def test_requeue_expired_puts_the_dead_workers_jobs_back(make_queue, url):
    dao = make_queue(JobmanSqliteDAO)
    fill(dao)
    done = run_json("jobs", "requeue-expired", "--url", url)
    assert done["requeued"] == 2
    assert sorted(done["keys"]) == ["e", "p0"]
    assert done["statuses"] == {"EXECUTED": 1, "PENDING": 1}
    statuses = {job["key"]: job["status"] for job in dao.query_jobs()}
    assert (statuses["p0"], statuses["e"], statuses["p1"]) == ("PENDING", "EXECUTED", "CLAIMED")
    assert run_json("jobs", "stats", "--url", url)["expired_claims"] == 0
    assert "requeued 0 jobs in jobman_job" in run_ok("jobs", "requeue-expired", "--url", url).stdout


def test_a_worker_queue_by_its_prefix_and_limit(make_queue, url):
    dao = make_queue(WorkerSqliteDAO, table_prefix="clij_w_")
    dao.save_jobs([{"key": f"j{n}", "status": "PENDING"} for n in range(3)])
    dao.lease_seconds = SHORT
    dao.claim_jobs()
    time.sleep(PAST_SHORT)
    args = ("--dao", "worker", "--table-prefix", "clij_w_", "--url", url)
    assert run_json("jobs", "stats", *args)["expired_claims"] == 3
    assert run_json("jobs", "requeue-expired", "--limit", "2", *args)["requeued"] == 2
    assert run_json("jobs", "requeue-expired", *args)["requeued"] == 1
    assert {job["status"] for job in dao.query_jobs()} == {"PENDING"}


def test_errors_are_one_line_and_change_nothing(make_queue, url):
    dao = make_queue(WorkerSqliteDAO, table_prefix="clij_old_")
    dao.save_jobs([{"key": "a", "status": "CLAIMED"}])
    one_line_error(run("jobs", "stats", "--url", url, "--dao", "worker", "--table-prefix", "nope_"))
    line = one_line_error(run("jobs", "stats", "--url", url, "--dao", "boss"))
    assert "--dao must be one of" in line
    line = one_line_error(run("jobs", "requeue-expired", "--url", url, "--table-prefix", "q_"))
    assert "--table-prefix" in line
    one_line_error(run("jobs", "requeue-expired", "--url", url, "--limit", "0"))
    # A table from before leases: told to upgrade it, and left as it is.
    for column in ("claimed_by", "claim_expires", "claimed_from"):
        dao.db.run(
            lambda conn, c=column: conn.execute(
                sa.text(f"ALTER TABLE clij_old_job DROP COLUMN {c}")
            )
        )
    args = ("--url", url, "--dao", "worker", "--table-prefix", "clij_old_")
    assert "dblayer db upgrade" in one_line_error(run("jobs", "requeue-expired", *args))
    columns = {c["name"] for c in sa.inspect(dao.db.engine).get_columns("clij_old_job")}
    assert "claimed_by" not in columns
    assert dao.query_jobs() == [{**dao.query_jobs()[0], "key": "a", "status": "CLAIMED"}]


def test_a_password_in_the_url_is_never_printed():
    bad = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/nope"
    for command in ("stats", "requeue-expired"):
        line = one_line_error(run("jobs", command, "--url", bad, "--json"))
        assert SECRET not in line

"""The job DAOs: their schemas, claim_jobs, status helpers and a full JobMan cycle, on every backend."""

from __future__ import annotations

import time

import pytest

from dblayer.core import InvalidQuery
from dblayer.stores.jobman import (
    EngineSqliteDAO,
    JobmanSqliteDAO,
    JobsDaoMixin,
    WorkerSqliteDAO,
)
from tests.conftest import backend_url
from tests.stores.jobman.test_records import WORKER_FIELDS

PENDING = {"filters": [{"field": "status", "op": "=", "arg": "PENDING"}]}


def statuses(dao):
    return {job["key"]: job["status"] for job in dao.query_jobs()}


def test_job_statuses():
    names = ["CLAIMED", "COMPLETED", "EXECUTED", "FAILED", "PENDING", "RUNNING", "UNKNOWN"]
    assert {n: getattr(JobsDaoMixin.JOB_STATUSES, n) for n in names} == {n: n for n in names}
    assert JobmanSqliteDAO.JOB_STATUSES is JobsDaoMixin.JOB_STATUSES


# -- the DAOs and their schemas ---------------------------------------------------------------


def test_job_schemas():
    assert list(EngineSqliteDAO.JobSchema.get_field_infos()) == [
        "created",
        "modified",
        "key",
        "status",
    ]
    assert list(WorkerSqliteDAO.JobSchema.get_field_infos()) == WORKER_FIELDS
    assert list(JobmanSqliteDAO.JobSchema.get_field_infos()) == [
        "created",
        "modified",
        "key",
        "job_spec",
        "status",
        "batchable",
        "worker_key",
        "worker_meta",
        "errors",
        "source_key",
        "source_meta",
        "source_tag",
        "purgeable",
    ]
    assert JobmanSqliteDAO.JobSchema.get_field_infos()["key"]["primary_key"] is True


def test_jobman_dao_tables_and_its_fixed_prefix(jobman):
    assert [orm.table.name for orm in jobman.orms.values()] == ["jobman_job", "jobman_kvp"]
    job = jobman.create_job({"job_spec": {"dir": "/x"}, "status": "PENDING", "source_key": "s1"})
    assert list(job) == list(JobmanSqliteDAO.JobSchema.get_field_infos())
    assert jobman.get_job(job["key"]) == job
    with pytest.raises(TypeError):
        JobmanSqliteDAO(table_prefix="other_")
    with pytest.raises(TypeError):
        JobmanSqliteDAO(orm_specs=[])


def test_jobman_dao_source_key_filter(jobman):
    jobman.save_jobs([{"key": "a", "source_key": "s1"}, {"key": "b", "source_key": "s2"}])
    assert jobman.generate_source_key_filter(source_key="s1") == {
        "field": "source_key",
        "op": "=",
        "arg": "s1",
    }
    found = jobman.query_jobs({"filters": [jobman.generate_source_key_filter("s2")]})
    assert [job["key"] for job in found] == ["b"]


@pytest.mark.parametrize("cls", [EngineSqliteDAO, WorkerSqliteDAO])
def test_extra_job_fields_add_and_override_fields(make_dao, cls):
    extra = {"priority": {"type": "INTEGER"}, "status": {"type": "JSON"}, "notes": {"type": "TEXT"}}
    dao = make_dao(cls, table_prefix=f"jmt_x{cls.__name__[0].lower()}_", extra_job_fields=extra)
    assert list(dao.orms["job"].fields)[-2:] == ["priority", "notes"]
    dao.save_jobs(
        [
            {"key": "a", "priority": 2, "status": {"phase": "PENDING"}, "notes": "n"},
            {"key": "b", "priority": 1, "status": ["x"]},
        ]
    )
    by_priority = dao.query_jobs({"order_by": {"field": "priority"}})
    assert [job["key"] for job in by_priority] == ["b", "a"]
    assert dao.get_job("a")["status"] == {"phase": "PENDING"}
    found = dao.query_jobs(
        {"filters": [{"field": "status", "op": "=", "arg": {"phase": "PENDING"}}]}
    )
    assert [job["key"] for job in found] == ["a"]


def test_engine_and_worker_daos_with_prefixes_keep_apart(make_dao):
    engine = make_dao(EngineSqliteDAO, table_prefix="jmt_engine_k_")
    worker = make_dao(WorkerSqliteDAO, table_prefix="jmt_worker_k_")
    engine.create_job({"key": "k", "status": "PENDING"})
    worker.create_job({"key": "k", "status": "RUNNING", "engine_key": "e"})
    assert engine.get_job("k")["status"] == "PENDING"
    assert worker.get_job("k")["status"] == "RUNNING"
    assert [orm.table.name for orm in engine.orms.values()] == [
        "jmt_engine_k_job",
        "jmt_engine_k_kvp",
    ]


def test_extra_job_fields_must_be_a_dict():
    with pytest.raises(TypeError):
        WorkerSqliteDAO(extra_job_fields=["priority"])


# -- status helpers -------------------------------------------------------------------------------


def test_get_jobs_for_status_and_generate_status_filter(dao):
    dao.save_jobs(
        [{"key": "a", "status": "PENDING"}, {"key": "b", "status": "RUNNING"}, {"key": "c"}]
    )
    assert dao.generate_status_filter(status="RUNNING") == {
        "field": "status",
        "op": "=",
        "arg": "RUNNING",
    }
    assert [job["key"] for job in dao.get_jobs_for_status(status="PENDING")] == ["a"]
    assert [job["key"] for job in dao.get_jobs_for_status("RUNNING")] == ["b"]
    assert [job["key"] for job in dao.get_jobs_for_status(None)] == ["c"]
    assert dao.get_jobs_for_status("FAILED") == []


# -- claim_jobs -----------------------------------------------------------------------------------


def test_claim_jobs_claims_the_matching_jobs(dao):
    saved = dao.save_jobs(
        [
            {"key": "a", "status": "PENDING", "engine_meta": {"n": [1]}},
            {"key": "b", "status": "PENDING"},
            {"key": "c", "status": "RUNNING"},
        ]
    )
    before = time.time()
    claimed = dao.claim_jobs(query=PENDING)
    assert sorted(job["key"] for job in claimed) == ["a", "b"]
    old = {job["key"]: job for job in saved}
    for job in claimed:
        assert list(job) == list(old[job["key"]])
        assert job["status"] == "CLAIMED"
        assert job["modified"] >= before >= old[job["key"]]["modified"]
        assert job["created"] == old[job["key"]]["created"]
        assert dao.get_job(job["key"]) == job
    assert next(j for j in claimed if j["key"] == "a")["engine_meta"] == {"n": [1]}
    assert statuses(dao) == {"a": "CLAIMED", "b": "CLAIMED", "c": "RUNNING"}
    assert dao.claim_jobs(PENDING) == []


def test_claim_jobs_takes_limit_jobs_in_order_by_order(dao):
    dao.save_jobs(
        [{"key": k, "status": "PENDING", "created": float(n)} for n, k in enumerate("edcba")]
    )
    query = {**PENDING, "order_by": {"field": "created", "direction": "DESC"}, "limit": 2}
    assert [job["key"] for job in dao.claim_jobs(query)] == ["a", "b"]
    query["order_by"] = [{"field": "created", "direction": "ASC"}]
    assert [job["key"] for job in dao.claim_jobs(query)] == ["e", "d"]
    assert [job["key"] for job in dao.claim_jobs(query)] == ["c"]
    assert dao.claim_jobs(query) == []


def test_claim_jobs_never_claims_a_claimed_job_again(dao):
    dao.save_jobs([{"key": "a", "status": "PENDING"}, {"key": "b"}])
    assert sorted(job["key"] for job in dao.claim_jobs()) == ["a", "b"]
    assert dao.claim_jobs() == []
    assert dao.claim_jobs({"filters": [{"field": "status", "op": "=", "arg": "CLAIMED"}]}) == []
    dao.update_jobs({"status": "PENDING"}, {"filters": [{"field": "key", "op": "=", "arg": "a"}]})
    assert [job["key"] for job in dao.claim_jobs()] == ["a"]


def test_claim_jobs_with_limit_zero_or_no_match_claims_nothing(dao):
    dao.save_jobs([{"key": "a", "status": "PENDING"}])
    assert dao.claim_jobs({**PENDING, "limit": 0}) == []
    assert dao.claim_jobs({"filters": [{"field": "status", "op": "IN", "arg": []}]}) == []
    assert statuses(dao) == {"a": "PENDING"}


@pytest.mark.parametrize(
    "query",
    [
        {"filters": [{"field": "nope", "op": "=", "arg": 1}]},
        {"filters": [{"field": "status", "op": "MATCHES", "arg": "x"}]},
        {"order_by": {"field": "nope"}},
        {"limit": -1},
        {"offset": 1},
        ["status"],
    ],
    ids=repr,
)
def test_a_bad_claim_query_raises_and_claims_nothing(dao, query):
    dao.save_jobs([{"key": "a", "status": "PENDING"}])
    with pytest.raises(InvalidQuery):
        dao.claim_jobs(query)
    assert statuses(dao) == {"a": "PENDING"}


def test_two_daos_on_one_database_claim_apart(dao, backend, run_dir):
    if backend == "sqlite_memory":
        other = dao
    else:
        other = WorkerSqliteDAO(
            db_uri=backend_url(backend, run_dir), table_prefix="jmt_w_", initialize=False
        )
    try:
        dao.save_jobs([{"key": f"j{n}", "status": "PENDING"} for n in range(10)])
        first = dao.claim_jobs({**PENDING, "limit": 4})
        second = other.claim_jobs(PENDING)
        assert len(first) == 4 and len(second) == 6
        assert not {j["key"] for j in first} & {j["key"] for j in second}
        assert other.claim_jobs(PENDING) == dao.claim_jobs(PENDING) == []
    finally:
        if other is not dao:
            other.close()


# -- a whole JobMan cycle -------------------------------------------------------------------------


def test_a_jobman_cycle(jobman):
    st = jobman.JOB_STATUSES
    jobs = [
        {
            "key": f"s{s}-{n}",
            "status": st.PENDING,
            "source_key": f"source{s}",
            "created": 1000.0 + 10 * n + s,
            "job_spec": {"dir": f"/jobs/{s}/{n}", "cfg": {"cores": n}, "batchable": n % 2},
        }
        for s in (1, 2)
        for n in range(5)
    ]
    jobman.save_jobs(jobs, replace=False)
    assert len(jobman.get_jobs_for_status(st.PENDING)) == 10

    # A worker claims the oldest four, runs them, and completes three with results, one fails.
    claimed = jobman.claim_jobs(
        {
            "filters": [jobman.generate_status_filter(st.PENDING)],
            "order_by": {"field": "created", "direction": "ASC"},
            "limit": 4,
        }
    )
    assert [job["key"] for job in claimed] == ["s1-0", "s2-0", "s1-1", "s2-1"]
    claimed_keys = [job["key"] for job in claimed]
    result = jobman.update_jobs(
        updates={"status": st.RUNNING, "worker_key": "w1"},
        query={"filters": [{"field": "key", "op": "IN", "arg": claimed_keys}]},
    )
    assert result == {"rowcount": 4}
    running = jobman.get_jobs_for_status(st.RUNNING)
    assert sorted(job["key"] for job in running) == sorted(claimed_keys)
    done = []
    for job in running:
        if job["key"] == "s2-1":
            job.update(status=st.FAILED, errors=[{"message": "exit 1", "trace": None}])
        else:
            job.update(
                status=st.COMPLETED, worker_meta={"result": {"energy": -1.5, "files": ["out.log"]}}
            )
        done.append(job)
    saved = jobman.save_jobs(done)
    assert all(new["modified"] >= old["modified"] for new, old in zip(saved, running, strict=True))

    # The source collects its completed jobs, newest first.
    completed = jobman.query_jobs(
        {
            "filters": [
                jobman.generate_status_filter(st.COMPLETED),
                jobman.generate_source_key_filter("source1"),
            ],
            "order_by": [{"field": "created", "direction": "DESC"}],
        }
    )
    assert [job["key"] for job in completed] == ["s1-1", "s1-0"]
    assert completed[0]["worker_meta"] == {"result": {"energy": -1.5, "files": ["out.log"]}}
    assert completed[0]["job_spec"] == {"dir": "/jobs/1/1", "cfg": {"cores": 1}, "batchable": 1}
    failed = jobman.get_jobs_for_status(st.FAILED)
    assert [(job["key"], job["errors"]) for job in failed] == [
        ("s2-1", [{"message": "exit 1", "trace": None}])
    ]
    pending_source2 = jobman.query_jobs(
        {
            "filters": [
                jobman.generate_status_filter(st.PENDING),
                {"field": "source_key", "op": "=", "arg": "source2"},
            ],
            "order_by": {"field": "created"},
        }
    )
    assert [job["key"] for job in pending_source2] == ["s2-2", "s2-3", "s2-4"]
    # Purge what is finished.
    jobman.update_jobs(
        {"purgeable": 1},
        {"filters": [{"field": "status", "op": "IN", "arg": [st.COMPLETED, st.FAILED]}]},
    )
    assert len(jobman.query_jobs({"filters": [{"field": "purgeable", "op": "=", "arg": 1}]})) == 4
    assert (
        len(jobman.query_jobs({"filters": [{"field": "purgeable", "op": "IS", "arg": None}]})) == 6
    )

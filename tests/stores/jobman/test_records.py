"""Saving, reading and updating jobs through a DAO, on every backend."""

from __future__ import annotations

import gc
import re
import time
import uuid

import pytest

from dblayer.core import ConflictError, DatabaseError, InvalidQuery, InvalidValue
from dblayer.stores.jobman import ORM, SqliteDAO, WorkerSqliteDAO

WORKER_FIELDS = [
    "created",
    "modified",
    "key",
    "status",
    "batchable",
    "batch_meta",
    "is_batch",
    "parent_batch_key",
    "engine_key",
    "engine_meta",
]


def keys(jobs):
    return sorted(job["key"] for job in jobs)


def stored(dao):
    """Every job in the table, by key."""
    return {job["key"]: job for job in dao.query_jobs()}


# -- saving -----------------------------------------------------------------------------------


def test_create_job_returns_every_field_with_defaults(dao):
    before = time.time()
    job = dao.create_job({"status": "PENDING"})
    assert list(job) == WORKER_FIELDS
    assert str(uuid.UUID(job["key"])) == job["key"]
    assert before <= job["created"] <= job["modified"]
    assert all(job[f] is None for f in WORKER_FIELDS[4:])
    assert dao.get_job(job["key"]) == job
    assert stored(dao) == {job["key"]: job}


def test_default_fills_none_only_and_auto_update_always_runs(dao):
    first = dao.create_job({"key": "k", "created": 5.0, "modified": 6.0})
    assert first["created"] == 5.0
    assert first["modified"] != 6.0
    again = dao.save_jobs([{**first, "status": "RUNNING"}])[0]
    assert again["created"] == 5.0
    assert again["modified"] >= first["modified"]
    assert dao.get_job("k") == again


def test_json_fields_round_trip_nested_values_and_none(dao):
    meta = {
        "subjobs": [{"key": "s1", "cfg": {"x": [1, 2.5, None, True, "é"]}}],
        "empty": {},
        "list": [],
    }
    saved = dao.save_jobs(
        [
            {"key": "j1", "batch_meta": meta, "engine_meta": None},
            {"key": "j2", "batch_meta": [1, "two", None, {"n": None}], "engine_meta": "text"},
            {"key": "j3", "batch_meta": 0, "engine_meta": False},
            {"key": "j4", "batch_meta": {"t": (1, 2), 3: "int key"}, "engine_meta": 1.5},
        ]
    )
    got = stored(dao)
    assert [got[job["key"]] for job in saved] == saved
    assert got["j1"]["batch_meta"] == meta
    assert got["j1"]["engine_meta"] is None
    assert got["j2"]["batch_meta"] == [1, "two", None, {"n": None}]
    assert got["j3"]["batch_meta"] == 0 and got["j3"]["engine_meta"] is False
    # Stored as JSON gives it back: tuples are lists, keys are strings.
    assert got["j4"]["batch_meta"] == {"t": [1, 2], "3": "int key"}
    assert got["j4"]["engine_meta"] == 1.5


def test_keys_that_are_not_fields_are_ignored(dao):
    job = dao.create_job({"key": "k", "status": "PENDING", "not_a_field": 1})
    assert "not_a_field" not in job
    assert dao.get_job("k") == job


def test_values_are_stored_as_their_field_types(dao):
    job = dao.create_job({"key": "k", "batchable": True, "is_batch": False, "created": 7})
    assert job["batchable"] == 1 and job["is_batch"] == 0 and job["created"] == 7.0
    got = dao.get_job("k")
    assert (got["batchable"], got["is_batch"], got["created"]) == (1, 0, 7.0)
    assert type(got["batchable"]) is int and type(got["created"]) is float


def test_keys_differ_by_case_and_trailing_space(dao):
    dao.save_jobs(
        [{"key": "a", "status": "1"}, {"key": "A", "status": "2"}, {"key": "a ", "status": "3"}]
    )
    assert {k: j["status"] for k, j in stored(dao).items()} == {"a": "1", "A": "2", "a ": "3"}


def test_replace_overwrites_the_whole_record(dao):
    dao.create_job({"key": "k", "status": "PENDING", "engine_key": "e1"})
    dao.save_jobs([{"key": "k", "status": "RUNNING"}])
    got = dao.get_job("k")
    assert got["status"] == "RUNNING" and got["engine_key"] is None
    assert len(stored(dao)) == 1


def test_replace_with_a_key_twice_in_one_batch_keeps_the_last(dao):
    dao.save_jobs([{"key": "k", "status": "A"}, {"key": "k", "status": "B"}])
    assert dao.get_job("k")["status"] == "B"


def test_replace_false_saves_new_keys(dao):
    saved = dao.save_jobs([{"key": "a"}, {"key": "b"}], replace=False)
    assert keys(saved) == ["a", "b"] == sorted(stored(dao))


def test_replace_false_on_an_existing_key_saves_nothing_of_the_batch(dao):
    dao.create_job({"key": "old", "status": "PENDING"})
    with pytest.raises(SqliteDAO.IntegrityError) as info:
        dao.save_jobs([{"key": "new"}, {"key": "old", "status": "CHANGED"}], replace=False)
    assert isinstance(info.value, ConflictError)
    assert isinstance(info.value.__cause__, ORM.IntegrityError)
    assert list(stored(dao)) == ["old"]
    assert dao.get_job("old")["status"] == "PENDING"


def test_replace_false_with_a_key_twice_in_one_batch_saves_nothing(dao):
    with pytest.raises(dao.IntegrityError):
        dao.save_jobs([{"key": "a"}, {"key": "b"}, {"key": "a"}], replace=False)
    assert stored(dao) == {}


@pytest.mark.parametrize(
    "bad",
    [
        {"key": "k", "status": 5},
        {"key": "k", "batchable": "yes"},
        {"key": "k", "batchable": 1.5},
        {"key": "k", "is_batch": 2**63},
        {"key": "k", "created": "now"},
        {"key": "k", "created": float("nan")},
        {"key": "k", "batch_meta": {1, 2}},
        {"key": "k", "batch_meta": {"x": float("inf")}},
        {"key": "k", "engine_meta": object()},
        {"key": "x" * 256},
        {"key": 5},
        "not a dict",
    ],
    ids=lambda bad: repr(bad)[:40],
)
def test_a_bad_record_raises_invalid_value_and_saves_nothing(dao, bad):
    dao.create_job({"key": "existing", "status": "PENDING"})
    with pytest.raises(InvalidValue):
        dao.save_jobs([{"key": "good"}, bad])
    assert list(stored(dao)) == ["existing"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"key": "k", "status": 5}, "field 'status' takes a string, got 5"),
        ({"key": "k", "created": float("nan")}, "field 'created' takes a finite number"),
        ({"key": "k", "batch_meta": {"x": float("inf")}}, "field 'batch_meta' takes JSON (NaN"),
        ({"key": "k", "engine_meta": {"x": {1, 2}}}, "field 'engine_meta' takes JSON (dict,"),
        ({"key": "k", "batch_meta": {"x": {1: "a", (1,): "b"}}}, "'batch_meta' takes JSON (obj"),
        ({"key": 5}, "field 'key' takes a string, got 5"),
        ({"key": "x" * 256}, "field 'key' takes a string of at most 255 characters"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_a_refused_record_names_the_field_and_what_it_takes(dao, bad, message):
    with pytest.raises(InvalidValue, match=re.escape(message)):
        dao.save_jobs([{"key": "good"}, bad])
    assert stored(dao) == {}


def test_json_values_come_back_as_json_gives_them(dao):
    class Name(str):
        pass

    class Number(int):
        pass

    meta = {"s": Name("n"), "i": Number(3), "t": ((1, 2), ()), "d": {2: "b", 10: "a"}}
    saved = dao.save_jobs([{"key": "k", "batch_meta": meta, "engine_meta": (True, None)}])
    expected = {"s": "n", "i": 3, "t": [[1, 2], []], "d": {"2": "b", "10": "a"}}
    assert saved[0]["batch_meta"] == expected
    assert saved[0]["engine_meta"] == [True, None]
    assert [type(v) for v in saved[0]["batch_meta"].values()] == [dict, int, str, list]
    assert dao.get_job("k") == saved[0]


@pytest.mark.parametrize(
    "meta",
    [{10: "a", 9.5: "b"}, {"b": {"y": 1, "x": 2}, "a": [{"d": 1, "c": 2}]}, {1: "int", "1.5": 2}],
    ids=["number-keys", "nested", "mixed-keys"],
)
def test_a_saved_json_value_is_found_by_an_equal_value_in_any_key_order(dao, meta):
    dao.save_jobs([{"key": "k", "batch_meta": meta}, {"key": "other", "batch_meta": {}}])
    reordered = dict(reversed(list(meta.items())))
    for arg in (meta, reordered):
        query = {"filters": [{"field": "batch_meta", "op": "=", "arg": arg}]}
        assert [job["key"] for job in dao.query_jobs(query)] == ["k"]
    dao.update_jobs({"engine_meta": reordered}, {})
    query = {"filters": [{"field": "engine_meta", "op": "=", "arg": meta}]}
    assert keys(dao.query_jobs(query)) == ["k", "other"]


@pytest.mark.parametrize("jobs", [None, {"key": "k"}, "k", 5])
def test_save_jobs_needs_a_list_of_dicts(dao, jobs):
    with pytest.raises(InvalidValue):
        dao.save_jobs(jobs)
    assert stored(dao) == {}


def test_a_bulk_save_leaves_the_garbage_collector_as_it_was(dao):
    jobs = [{"key": f"k{i}", "batch_meta": {"i": i}} for i in range(1500)]
    assert gc.isenabled()
    assert len(dao.save_jobs(jobs)) == 1500
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(dao.IntegrityError):
            dao.save_jobs(jobs, replace=False)
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert len(stored(dao)) == 1500


def test_save_jobs_of_no_jobs(dao):
    assert dao.save_jobs([]) == []


def test_get_job_of_a_missing_key_is_none(dao):
    dao.create_job({"key": "k"})
    assert dao.get_job("other") is None
    assert dao.get_job(None) is None


# -- querying ---------------------------------------------------------------------------------

LOADED = [
    {
        "key": "a",
        "status": "PENDING",
        "batchable": 1,
        "created": 1.0,
        "engine_key": "e1",
        "engine_meta": {"n": 1},
    },
    {
        "key": "b",
        "status": "PENDING",
        "batchable": 0,
        "created": 2.0,
        "engine_key": None,
        "engine_meta": {"n": 2, "tags": ["x"]},
    },
    {
        "key": "c",
        "status": "RUNNING",
        "batchable": None,
        "created": 3.0,
        "engine_key": "e2",
        "engine_meta": None,
    },
    {
        "key": "d",
        "status": "COMPLETED",
        "batchable": 1,
        "created": 4.0,
        "engine_key": "e1",
        "engine_meta": "done",
    },
    {
        "key": "e",
        "status": None,
        "batchable": 0,
        "created": 5.0,
        "engine_key": "x_e3",
        "engine_meta": [1, 2],
    },
]


@pytest.fixture
def loaded(dao):
    dao.save_jobs(LOADED)
    return dao


def matching(dao, *filters):
    return "".join(
        keys(
            dao.query_jobs(
                {"filters": [dict(zip(("field", "op", "arg"), f, strict=True)) for f in filters]}
            )
        )
    )


@pytest.mark.parametrize(
    "field, op, arg, expected",
    [
        ("status", "=", "PENDING", "ab"),
        ("status", "!=", "PENDING", "cde"),
        ("status", "! =", "PENDING", "cde"),
        ("status", "IN", ["RUNNING", "COMPLETED"], "cd"),
        ("status", "! IN", ["PENDING"], "cde"),
        ("status", "IN", [], ""),
        ("status", "! IN", [], "abcde"),
        ("status", "IS", None, "e"),
        ("status", "IS NOT", None, "abcd"),
        ("status", "=", None, "e"),
        ("created", "<", 3, "ab"),
        ("created", "<=", 3.0, "abc"),
        ("created", ">", 4, "e"),
        ("created", ">=", 4, "de"),
        ("engine_key", "LIKE", "e%", "acd"),
        ("engine_key", "LIKE", "%e_", "acde"),
        ("batchable", "=", True, "ad"),
        ("batchable", "!=", 1, "bce"),
        ("key", "IN", ["a", "e", "zz"], "ae"),
        ("engine_meta", "=", {"tags": ["x"], "n": 2}, "b"),
        ("engine_meta", "=", {"n": 2, "tags": ["x"]}, "b"),
        ("engine_meta", "=", "done", "d"),
        ("engine_meta", "=", "DONE", ""),
        ("engine_meta", "=", [1, 2], "e"),
        ("engine_meta", "!=", {"n": 1}, "bcde"),
        ("engine_meta", "IN", [{"n": 1}, [1, 2]], "ae"),
        ("engine_meta", "! IN", [{"n": 1}], "bcde"),
        ("engine_meta", "IS", None, "c"),
        ("engine_meta", "=", None, "c"),
        ("engine_meta", "IS NOT", None, "abde"),
    ],
)
def test_filter_operators(loaded, field, op, arg, expected):
    assert matching(loaded, (field, op, arg)) == expected


def test_filters_are_anded(loaded):
    assert matching(loaded, ("status", "=", "PENDING"), ("batchable", "=", 1)) == "a"


def test_no_query_returns_every_job_with_every_field(loaded):
    jobs = loaded.query_jobs()
    assert keys(jobs) == list("abcde")
    assert all(list(job) == WORKER_FIELDS for job in jobs)
    assert keys(loaded.query_jobs({})) == list("abcde")


def test_limit(loaded):
    order = {"field": "created"}
    assert keys(loaded.query_jobs({"order_by": order, "limit": 2})) == ["a", "b"]
    assert loaded.query_jobs({"limit": 0}) == []


def test_order_by_one_dict_or_a_list(loaded):
    def order(order_by, *filters):
        query = {
            "order_by": order_by,
            "filters": [dict(zip(("field", "op", "arg"), f, strict=True)) for f in filters],
        }
        return "".join(job["key"] for job in loaded.query_jobs(query))

    assert order({"field": "created", "direction": "DESC"}) == "edcba"
    assert order({"field": "created"}) == "abcde"
    assert order([{"field": "created", "direction": "asc"}]) == "abcde"
    two = [{"field": "batchable", "direction": "ASC"}, {"field": "created", "direction": "desc"}]
    assert order(two, ("batchable", "IS NOT", None)) == "ebda"


@pytest.mark.parametrize(
    "query",
    [
        {"filters": [{"field": "nope", "op": "=", "arg": 1}]},
        {"filters": [{"field": "status", "op": "~", "arg": "x"}]},
        {"filters": [{"field": "status", "op": "= 1 OR 1 =", "arg": "x"}]},
        {"filters": [{"field": "status", "op": "REGEXP", "arg": "x"}]},
        {"filters": [{"field": "status", "op": "=", "arg": 5}]},
        {"filters": [{"field": "status", "op": "IN", "arg": "PENDING"}]},
        {"filters": [{"field": "status", "op": "IN", "arg": ["PENDING", 5]}]},
        {"filters": [{"field": "created", "op": "<", "arg": "yesterday"}]},
        {"filters": [{"field": "created", "op": "<", "arg": None}]},
        {"filters": [{"field": "batchable", "op": "LIKE", "arg": "1%"}]},
        {"filters": [{"field": "engine_meta", "op": "<", "arg": {"n": 1}}]},
        {"filters": [{"field": "engine_meta", "op": "LIKE", "arg": "%n%"}]},
        {"filters": [{"field": "status", "op": "IS", "arg": "PENDING"}]},
        {"filters": {"field": "status", "op": "=", "arg": "PENDING"}},
        {"order_by": {"field": "nope"}},
        {"order_by": {"field": "created", "direction": "SIDEWAYS"}},
        {"fields": "key"},
        {"limit": -1},
        {"limit": "10"},
        "status = 'PENDING'",
    ],
    ids=lambda q: repr(q)[:60],
)
def test_a_bad_query_raises_invalid_query(loaded, query):
    with pytest.raises(InvalidQuery):
        loaded.query_jobs(query)


# -- updating ---------------------------------------------------------------------------------


def test_update_jobs_sets_fields_of_matching_jobs(loaded):
    before = stored(loaded)
    result = loaded.update_jobs(
        updates={"status": "FAILED", "engine_meta": {"error": ["boom", None]}},
        query={"filters": [{"field": "status", "op": "=", "arg": "PENDING"}]},
    )
    assert result == {"rowcount": 2}
    after = stored(loaded)
    for key in "ab":
        assert after[key]["status"] == "FAILED"
        assert after[key]["engine_meta"] == {"error": ["boom", None]}
        # jobman's update does not bump modified
        assert after[key]["modified"] == before[key]["modified"]
    assert all(after[k] == before[k] for k in "cde")


def test_update_rowcount_counts_matched_jobs_even_if_unchanged(loaded):
    result = loaded.update_jobs(
        {"status": "PENDING"}, {"filters": [{"field": "key", "op": "IN", "arg": ["a", "b", "c"]}]}
    )
    assert result == {"rowcount": 3}


def test_update_with_an_empty_query_updates_every_job(loaded):
    assert loaded.update_jobs({"engine_key": "all"}, {}) == {"rowcount": 5}
    assert {job["engine_key"] for job in loaded.query_jobs()} == {"all"}


def test_update_matching_nothing(loaded):
    query = {"filters": [{"field": "status", "op": "IN", "arg": []}]}
    assert loaded.update_jobs({"status": "X"}, query) == {"rowcount": 0}


@pytest.mark.parametrize(
    "updates, query, error",
    [
        ({"status": "X"}, None, InvalidQuery),
        ({}, {}, InvalidQuery),
        (None, {}, InvalidQuery),
        ({"nope": 1}, {}, InvalidQuery),
        ({"status": "X"}, {"filters": [{"field": "nope", "op": "=", "arg": 1}]}, InvalidQuery),
        ({"status": "X"}, {"limit": 1}, InvalidQuery),
        ({"batchable": "yes"}, {}, InvalidValue),
        ({"engine_meta": {1, 2}}, {}, InvalidValue),
        ({"key": None}, {}, InvalidValue),
    ],
)
def test_a_bad_update_raises_and_changes_nothing(loaded, updates, query, error):
    before = stored(loaded)
    with pytest.raises(error):
        loaded.update_jobs(updates, query)
    assert stored(loaded) == before


def test_a_database_failure_on_update_raises_orm_update_error(fresh_dao):
    dao = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_none_", initialize=False)
    with pytest.raises(ORM.UpdateError) as info:
        dao.update_jobs({"status": "X"}, {})
    assert isinstance(info.value, DatabaseError)


def test_a_database_failure_on_save_raises_insert_error(fresh_dao):
    dao = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_none_", initialize=False)
    with pytest.raises(SqliteDAO.InsertError) as info:
        dao.save_jobs([{"key": "k"}])
    assert isinstance(info.value, DatabaseError)
    assert isinstance(info.value.__cause__, ORM.InsertError)

"""Key-value pairs: save, get, query and the compare-and-set update_kvp, on every backend."""

from __future__ import annotations

import pytest

from dblayer.core import CompareAndSetFailed, InvalidQuery, InvalidValue
from dblayer.stores.jobman import SqliteDAO, WorkerSqliteDAO
from tests.conftest import backend_url


def values(dao):
    return {kvp["key"]: kvp["value"] for kvp in dao.query_kvps()}


def test_save_get_and_query_kvps(dao):
    saved = dao.save_kvps([{"key": "a", "value": {"n": [1, None]}}, {"key": "b", "value": None}])
    assert [list(kvp) for kvp in saved] == [["key", "value", "created", "modified"]] * 2
    assert dao.get_kvp("a") == saved[0]
    assert dao.get_kvp("b")["value"] is None
    assert dao.get_kvp("missing") is None
    created = dao.create_kvp({"key": "c", "value": "text"})
    assert dao.get_kvp("c") == created
    query = {
        "filters": [{"field": "key", "op": "IN", "arg": ["a", "c"]}],
        "order_by": {"field": "key"},
    }
    assert [kvp["key"] for kvp in dao.query_kvps(query)] == ["a", "c"]
    assert values(dao) == {"a": {"n": [1, None]}, "b": None, "c": "text"}


def test_save_kvps_replace_false_on_an_existing_key(dao):
    dao.save_kvps([{"key": "a", "value": 1}])
    with pytest.raises(SqliteDAO.IntegrityError):
        dao.save_kvps([{"key": "b", "value": 2}, {"key": "a", "value": 3}], replace=False)
    assert values(dao) == {"a": 1}


def test_a_kvp_needs_a_key(dao):
    with pytest.raises(InvalidValue):
        dao.save_kvps([{"value": 1}])
    with pytest.raises(InvalidValue):
        dao.create_kvp({"key": None, "value": 1})
    assert values(dao) == {}


def test_update_kvp_sets_the_value(dao):
    before = dao.create_kvp({"key": "lock", "value": "UNLOCKED"})
    assert dao.update_kvp("lock", "LOCKED", where_prev_value="UNLOCKED") is None
    after = dao.get_kvp("lock")
    assert after["value"] == "LOCKED"
    # jobman's update_kvp does not bump modified
    assert (after["created"], after["modified"]) == (before["created"], before["modified"])


def test_update_kvp_without_where_prev_value_needs_only_the_key(dao):
    dao.create_kvp({"key": "k", "value": {"any": "thing"}})
    dao.update_kvp(key="k", new_value=[1, {"b": None}])
    assert values(dao) == {"k": [1, {"b": None}]}


@pytest.mark.parametrize(
    "stored, expected",
    [
        (None, None),
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}),
        ([1, "x"], [1, "x"]),
        (0, 0),
        (1.5, 1.5),
        (True, True),
        ("text", "text"),
    ],
)
def test_update_kvp_matches_an_equal_json_value(dao, stored, expected):
    dao.create_kvp({"key": "k", "value": stored})
    dao.update_kvp("k", "new", where_prev_value=expected)
    assert values(dao) == {"k": "new"}


@pytest.mark.parametrize(
    "stored, expected",
    [
        ("UNLOCKED", "LOCKED"),
        (1, 1.0),
        (1, True),
        (0, False),
        (0, None),
        (None, 0),
        ({"a": 1}, {"a": 1, "b": 2}),
        ([1, 2], [2, 1]),
        ("text", "TEXT"),
    ],
)
def test_update_kvp_on_another_value_raises_and_changes_nothing(dao, stored, expected):
    before = dao.create_kvp({"key": "k", "value": stored})
    with pytest.raises(SqliteDAO.UpdateError) as info:
        dao.update_kvp("k", "new", where_prev_value=expected)
    assert isinstance(info.value, CompareAndSetFailed)
    assert dao.get_kvp("k") == before


def test_update_kvp_of_a_missing_key_raises_and_creates_nothing(dao):
    dao.create_kvp({"key": "other", "value": 1})
    with pytest.raises(dao.UpdateError):
        dao.update_kvp("missing", 2)
    with pytest.raises(dao.UpdateError):
        dao.update_kvp("missing", 2, where_prev_value=None)
    with pytest.raises(dao.UpdateError):
        dao.update_kvp(None, 2)
    assert values(dao) == {"other": 1}


@pytest.mark.parametrize(
    "call",
    [
        lambda dao: dao.update_kvp("k", {1, 2}),
        lambda dao: dao.update_kvp("k", float("nan")),
        lambda dao: dao.update_kvp("k", 2, where_prev_value={1, 2}),
        lambda dao: dao.update_kvp(5, 2),
    ],
)
def test_update_kvp_with_a_bad_value_raises_invalid_value(dao, call):
    dao.create_kvp({"key": "k", "value": 1})
    with pytest.raises(InvalidValue):
        call(dao)
    assert values(dao) == {"k": 1}


def test_update_kvp_is_committed(dao, backend, run_dir):
    dao.create_kvp({"key": "k", "value": 1})
    dao.update_kvp("k", 2, where_prev_value=1)
    if backend == "sqlite_memory":
        other = dao  # an in-memory database lives in its own DAO only
    else:
        other = WorkerSqliteDAO(
            db_uri=backend_url(backend, run_dir), table_prefix="jmt_w_", initialize=False
        )
    try:
        assert other.get_kvp("k")["value"] == 2
        dao.save_kvps([{"key": "later", "value": 0}])  # a later write does not wait on a held lock
        assert other.get_kvp("later")["value"] == 0
    finally:
        if other is not dao:
            other.close()


def test_kvps_of_an_unknown_kind_are_refused(make_dao):
    dao = make_dao(WorkerSqliteDAO, table_prefix="jmt_nokv_", include_kvp_orm=False)
    assert list(dao.orms) == ["job"]
    with pytest.raises(InvalidQuery):
        dao.get_kvp("k")
    with pytest.raises(InvalidQuery):
        dao.update_kvp("k", 1)

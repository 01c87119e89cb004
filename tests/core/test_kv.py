"""KeyValueStore: get / set / delete / compare_and_set on every backend, and CAS under contention."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import (
    ABSENT,
    CompareAndSetFailed,
    ConstraintNotMet,
    InvalidValue,
    KeyValueStore,
)
from tests.core import claims_schema as cs
from tests.core.concurrency import increment, run_processes, run_threads, shared_database


@pytest.fixture
def store(db, tables_of):
    tables_of(db, cs.metadata)
    return KeyValueStore(db, cs.kv)


def stored(store: KeyValueStore) -> dict:
    """Every key and value in the table, read directly."""
    with store.db.transaction(readonly=True) as conn:
        return {r.key: r.value for r in conn.execute(sa.select(cs.kv.c.key, cs.kv.c.value))}


VALUES = [
    {"a": {"b": [1, 2, {"c": None}]}, "d": "e"},
    [1, "two", 3.5, None, True, False, [], {}],
    None,
    True,
    False,
    0,
    -17,
    2.25,
    "",
    "ünïcødé ✓ 日本語 🚀",
    {"ключ": "значение", "emoji": "🙂"},
]


# -- get / set / delete ---------------------------------------------------------------------


def test_missing_key_gives_default(store):
    assert store.get("missing") is None
    assert store.get("missing", "fallback") == "fallback"
    assert store.get("missing", default=0) == 0


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_json_values_round_trip(store, value):
    store.set("k", value)
    got = store.get("k", default="absent")
    assert got == value
    assert type(got) is type(value)


def test_set_replaces_and_keeps_created_at(store):
    store.set("k", 1)
    store.set("k", {"now": "a dict"})
    assert store.get("k") == {"now": "a dict"}
    with store.db.transaction(readonly=True) as conn:
        row = conn.execute(sa.select(cs.kv).where(cs.kv.c.key == "k")).mappings().one()
    assert row["created_at"] <= row["updated_at"]
    assert stored(store) == {"k": {"now": "a dict"}}


def test_a_stored_null_is_not_a_missing_key(store):
    store.set("k", None)
    assert store.get("k", "fallback") is None


def test_delete(store):
    store.set("a", 1)
    store.set("b", 2)
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.delete("never") is False
    assert store.get("a", "gone") == "gone"
    assert stored(store) == {"b": 2}


def test_keys_are_exact_strings(store):
    # Case, accents and trailing spaces make different keys on every backend
    # (MariaDB's default collation would fold them together).
    keys = ["a", "A", "a ", "é", "e", "ß", "ss"]
    for n, key in enumerate(keys):
        store.set(key, n)
    assert [store.get(k) for k in keys] == list(range(len(keys)))
    assert stored(store) == {k: n for n, k in enumerate(keys)}


def test_longest_key_is_accepted(store):
    key = "k" * 255
    store.set(key, 1)
    assert store.get(key) == 1
    assert store.compare_and_set(key, 2, 1)
    assert store.delete(key)


BAD_KEYS = ["", None, 1, b"bytes", ("t",), "k" * 256]


@pytest.mark.parametrize(
    "key", BAD_KEYS, ids=["empty", "none", "int", "bytes", "tuple", "too-long"]
)
def test_bad_keys_are_rejected_everywhere(store, key):
    store.set("other", 1)
    calls = [
        lambda: store.get(key),
        lambda: store.set(key, 1),
        lambda: store.delete(key),
        lambda: store.compare_and_set(key, 1),
        lambda: store.compare_and_set(key, 2, 1),
    ]
    for call in calls:
        with pytest.raises(InvalidValue):
            call()
    assert stored(store) == {"other": 1}


def test_key_length_follows_the_table(db, tables_of):
    tables_of(db, cs.metadata)
    short = KeyValueStore(db, cs.short_kv)
    short.set("k" * 10, 1)
    with pytest.raises(InvalidValue, match="at most 10"):
        short.set("k" * 11, 1)
    assert short.get("k" * 10) == 1


@pytest.mark.parametrize(
    "value",
    [{1, 2}, object(), float("nan"), {"x": b"bytes"}],
    ids=["set", "object", "nan", "bytes"],
)
def test_values_that_are_not_json_are_rejected(store, value):
    store.set("k", "before")
    with pytest.raises(InvalidValue):
        store.set("k", value)
    with pytest.raises(InvalidValue):
        store.set("new", value)
    with pytest.raises(InvalidValue):
        store.compare_and_set("k", value, "before")
    with pytest.raises(InvalidValue):
        store.compare_and_set("new2", value)
    assert stored(store) == {"k": "before"}


# -- compare_and_set ------------------------------------------------------------------------


def test_cas_absent_creates_only_if_missing(store):
    assert store.compare_and_set("k", {"v": 1}) is True
    assert store.get("k") == {"v": 1}
    assert store.compare_and_set("k", {"v": 2}, ABSENT) is False
    assert store.get("k") == {"v": 1}
    with pytest.raises(CompareAndSetFailed):
        store.compare_and_set("k", {"v": 3}, raise_on_mismatch=True)
    assert stored(store) == {"k": {"v": 1}}


def test_cas_with_the_expected_value_applies(store):
    store.set("k", {"n": 1, "tags": ["a"]})
    assert (
        store.compare_and_set("k", {"n": 2}, {"tags": ["a"], "n": 1}) is True
    )  # key order is free
    assert store.get("k") == {"n": 2}


def test_cas_with_another_value_changes_nothing(store):
    store.set("k", 1)
    assert store.compare_and_set("k", 5, 2) is False
    assert store.get("k") == 1
    with pytest.raises(CompareAndSetFailed) as info:
        store.compare_and_set("k", 5, 2, raise_on_mismatch=True)
    assert isinstance(info.value, ConstraintNotMet)
    assert store.get("k") == 1


def test_cas_on_a_missing_key_with_an_expected_value_fails(store):
    assert store.compare_and_set("k", 1, 0) is False
    assert store.compare_and_set("k", 1, None) is False
    with pytest.raises(CompareAndSetFailed):
        store.compare_and_set("k", 1, 0, raise_on_mismatch=True)
    assert stored(store) == {}


@pytest.mark.parametrize(
    "held, expected",
    [(1, True), (1, 1.0), (0, False), (0, None), ("1", 1), ("a", "A"), ({"a": 1}, {"a": True})],
    ids=["int-bool", "int-float", "zero-false", "zero-none", "str-int", "case", "nested-bool"],
)
def test_cas_compares_json_values_exactly(store, held, expected):
    store.set("k", held)
    assert store.compare_and_set("k", "new", expected) is False
    assert store.get("k") == held
    assert store.compare_and_set("k", "new", held) is True
    assert store.get("k") == "new"


def test_cas_expected_value_is_compared_as_it_would_be_stored(store):
    store.set("k", (1, {2: "two"}))  # stored as [1, {"2": "two"}]
    assert store.get("k") == [1, {"2": "two"}]
    assert store.compare_and_set("k", "new", (1, {2: "two"})) is True


def test_cas_with_a_new_value_that_is_not_json_is_rejected_even_on_mismatch(store):
    store.set("k", 1)
    with pytest.raises(InvalidValue):
        store.compare_and_set("k", object(), "not what is there")
    assert store.get("k") == 1


def test_cas_expecting_null_matches_a_stored_null(store):
    store.set("k", None)
    assert store.compare_and_set("k", 1, None) is True
    assert store.get("k") == 1


def test_cas_expecting_a_value_that_is_not_json_is_rejected(store):
    store.set("k", 1)
    with pytest.raises(InvalidValue):
        store.compare_and_set("k", 2, object())
    assert store.get("k") == 1


def test_cas_joins_an_open_transaction(store):
    store.set("k", 1)
    with pytest.raises(RuntimeError), store.db.transaction():
        assert store.compare_and_set("k", 2, 1)
        assert store.compare_and_set("n", "new")
        assert store.get("k") == 2
        raise RuntimeError("roll back")
    assert stored(store) == {"k": 1}


# -- concurrency ----------------------------------------------------------------------------

WORKERS = 4
INCREMENTS = 500


def test_processes_increment_a_counter_with_cas(shared_url, run_dir: Path, tables_of):
    db = shared_database(shared_url, run_dir)
    tables_of(db, cs.metadata)
    store = KeyValueStore(db, cs.kv)
    assert store.compare_and_set("counter", 0)
    run_processes(shared_url, increment, [("counter", INCREMENTS)] * WORKERS)
    assert store.get("counter") == WORKERS * INCREMENTS


def test_threads_increment_a_counter_with_cas_on_memory_sqlite(run_dir: Path, tables_of):
    from tests.conftest import open_database

    db = open_database("sqlite_memory", run_dir)
    tables_of(db, cs.metadata)
    store = KeyValueStore(db, cs.kv)
    assert store.compare_and_set("counter", 0)
    run_threads(db, increment, [("counter", INCREMENTS)] * WORKERS)
    assert store.get("counter") == WORKERS * INCREMENTS


def test_canonical_json_equates_only_equal_json():
    from dblayer.core import canonical_json

    assert canonical_json({"a": 1, "b": [1, 2]}) == canonical_json({"b": (1, 2), "a": 1})
    assert len({canonical_json(1), canonical_json(1.0), canonical_json(True)}) == 3

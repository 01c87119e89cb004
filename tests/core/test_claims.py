"""claim(): atomic claiming of rows, on every backend, alone and under concurrency."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import ConflictError, Database, InvalidQuery, claim
from tests.core import claims_schema as cs
from tests.core.concurrency import claim_until_empty, run_processes, run_threads, shared_database

jobs = cs.jobs
CLAIMED = {"status": "CLAIMED", "worker": "w1"}
PENDING = jobs.c.status == "PENDING"


def add_jobs(db: Database, count: int, **columns: object) -> None:
    rows = [
        {"id": i, "status": "PENDING", "priority": i % 7, **columns} for i in range(1, count + 1)
    ]
    with db.transaction() as conn:
        conn.execute(sa.insert(jobs), rows)


def all_rows(db: Database) -> list[dict]:
    with db.transaction(readonly=True) as conn:
        return [dict(r) for r in conn.execute(sa.select(jobs).order_by(jobs.c.id)).mappings()]


@pytest.fixture
def tables(db, tables_of):
    tables_of(db, cs.metadata)
    return db


# -- what it returns and changes ------------------------------------------------------------


def test_claim_returns_exactly_the_rows_it_moved(tables):
    db = tables
    add_jobs(db, 5, payload={"n": [1, 2]})
    rows = claim(db, jobs, CLAIMED, where=[PENDING], order_by=[jobs.c.id], limit=3)
    assert [r["id"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert isinstance(row, dict)
        assert row["status"] == "CLAIMED"
        assert row["worker"] == "w1"
        assert row["payload"] == {"n": [1, 2]}
        assert row["updated_at"] is not None  # the column's onupdate ran, and came back
    stored = {r["id"]: r for r in all_rows(db)}
    assert [i for i, r in stored.items() if r["status"] == "CLAIMED"] == [1, 2, 3]
    assert all(stored[i]["worker"] is None for i in (4, 5))
    assert rows == [stored[i] for i in (1, 2, 3)]


def test_claim_takes_the_first_rows_by_order_and_returns_them_in_that_order(tables):
    db = tables
    add_jobs(db, 20)
    order = [jobs.c.priority.desc(), jobs.c.id.desc()]
    expected = [r["id"] for r in sorted(all_rows(db), key=lambda r: (-r["priority"], -r["id"]))][:6]
    rows = claim(db, jobs, CLAIMED, where=[PENDING], order_by=order, limit=6)
    assert [r["id"] for r in rows] == expected
    claimed = sorted(r["id"] for r in all_rows(db) if r["status"] == "CLAIMED")
    assert claimed == sorted(expected)


def test_claim_honours_where(tables):
    db = tables
    add_jobs(db, 10)
    rows = claim(db, jobs, CLAIMED, where=[PENDING, jobs.c.priority == 3], limit=10)
    assert sorted(r["id"] for r in rows) == [3, 10]
    assert sorted(r["id"] for r in all_rows(db) if r["status"] == "CLAIMED") == [3, 10]


def test_claim_accepts_a_single_clause(tables):
    db = tables
    add_jobs(db, 3)
    rows = claim(db, jobs, CLAIMED, where=PENDING, order_by=jobs.c.id.desc(), limit=1)
    assert [r["id"] for r in rows] == [3]


def test_claimed_rows_are_not_claimed_again(tables):
    db = tables
    add_jobs(db, 5)
    first = claim(db, jobs, CLAIMED, where=[PENDING], order_by=[jobs.c.id], limit=3)
    second = claim(db, jobs, {"status": "CLAIMED", "worker": "w2"}, where=[PENDING], limit=10)
    assert sorted(r["id"] for r in second) == [4, 5]
    assert not {r["id"] for r in first} & {r["id"] for r in second}
    assert claim(db, jobs, CLAIMED, where=[PENDING], limit=10) == []


def test_claim_limit_larger_than_an_in_list(tables):
    db = tables
    add_jobs(db, 1200)
    rows = claim(db, jobs, CLAIMED, where=[PENDING], order_by=[jobs.c.id], limit=1100)
    assert [r["id"] for r in rows] == list(range(1, 1101))
    assert sum(r["status"] == "CLAIMED" for r in all_rows(db)) == 1100


def test_claim_values_may_be_sql_expressions(tables):
    db = tables
    add_jobs(db, 3)
    rows = claim(
        db,
        jobs,
        {"status": "CLAIMED", "priority": jobs.c.priority + 100},
        where=[PENDING],
        order_by=[jobs.c.id],
        limit=2,
    )
    assert [(r["id"], r["priority"]) for r in rows] == [(1, 101), (2, 102)]
    assert [r["priority"] for r in all_rows(db)] == [101, 102, 3]


def test_a_value_the_column_refuses_raises_and_changes_nothing(tables):
    db = tables
    add_jobs(db, 3)
    with pytest.raises(ConflictError):
        claim(db, jobs, {"status": None}, where=[PENDING], limit=3)
    assert all(r["status"] == "PENDING" for r in all_rows(db))


def test_limit_zero_returns_nothing_and_changes_nothing(tables):
    db = tables
    add_jobs(db, 3)
    assert claim(db, jobs, CLAIMED, where=[PENDING], limit=0) == []
    assert all(r["status"] == "PENDING" for r in all_rows(db))


def test_nothing_matching_returns_empty(tables):
    db = tables
    assert claim(db, jobs, CLAIMED, where=[PENDING], limit=5) == []
    add_jobs(db, 3)
    assert claim(db, jobs, CLAIMED, where=[jobs.c.status == "EXECUTED"], limit=5) == []
    assert all(r["status"] == "PENDING" for r in all_rows(db))


# -- bad input ------------------------------------------------------------------------------


def test_limit_none_claims_every_matching_row(tables):
    db = tables
    add_jobs(db, 5)
    rows = claim(db, jobs, CLAIMED, where=[PENDING], order_by=[jobs.c.id], limit=None)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in all_rows(db))
    assert all(r["status"] == "CLAIMED" for r in all_rows(db))


@pytest.mark.parametrize("limit", [-1, "5", 1.5, True])
def test_bad_limit_is_rejected(tables, limit):
    db = tables
    add_jobs(db, 3)
    with pytest.raises(InvalidQuery, match="limit"):
        claim(db, jobs, CLAIMED, where=[PENDING], limit=limit)
    assert all(r["status"] == "PENDING" for r in all_rows(db))


@pytest.mark.parametrize(
    "values",
    [
        {},
        None,
        [("status", "CLAIMED")],
        {"nope": 1},
        {"status": "CLAIMED", "bogus": 2},
        {1: "x"},
        {"id": 99},
    ],
    ids=["empty", "none", "list", "unknown", "one-unknown", "non-str", "primary-key"],
)
def test_bad_values_are_rejected(tables, values):
    db = tables
    add_jobs(db, 3)
    with pytest.raises(InvalidQuery):
        claim(db, jobs, values, where=[PENDING], limit=3)
    assert all(r["status"] == "PENDING" and r["worker"] is None for r in all_rows(db))


@pytest.mark.parametrize(
    "where, order_by",
    [
        ("status = 'PENDING'", ()),
        ([PENDING, "1=1"], ()),
        ((), "id"),
        ((), [jobs.c.id, 3]),
        ({"status": 1}, ()),
    ],
    ids=["where-str", "where-item-str", "order-str", "order-item-int", "where-dict"],
)
def test_bad_where_or_order_is_rejected(tables, where, order_by):
    db = tables
    add_jobs(db, 3)
    with pytest.raises(InvalidQuery):
        claim(db, jobs, CLAIMED, where=where, order_by=order_by, limit=3)
    assert all(r["status"] == "PENDING" for r in all_rows(db))


def test_claim_takes_a_mapped_class(tables):
    db = tables
    with db.transaction() as conn:
        conn.execute(sa.insert(cs.servers), [{"id": 1, "task": "todo"}, {"id": 2, "task": "todo"}])
    rows = claim(
        db, cs.Server, {"task": "taken"}, where=[cs.Server.task == "todo"], order_by=[cs.Server.id]
    )
    assert rows == [{"id": 1, "host": None, "vm_state": None, "task": "taken"}]


@pytest.mark.parametrize("target", ["cl_jobs", None, 5], ids=["name", "none", "int"])
def test_claim_needs_a_table(tables, target):
    db = tables
    add_jobs(db, 2)
    with pytest.raises(InvalidQuery):
        claim(db, target, CLAIMED, where=[PENDING])
    assert all(r["status"] == "PENDING" for r in all_rows(db))


def test_composite_primary_key_is_rejected(tables):
    db = tables
    with db.transaction() as conn:
        conn.execute(sa.insert(cs.pairs), [{"a": 1, "b": "x", "status": "PENDING"}])
    with pytest.raises(InvalidQuery, match="single-column primary key"):
        claim(db, cs.pairs, {"status": "CLAIMED"}, where=[cs.pairs.c.status == "PENDING"])
    with db.transaction(readonly=True) as conn:
        assert conn.execute(sa.select(cs.pairs.c.status)).scalar_one() == "PENDING"


# -- transactions ---------------------------------------------------------------------------


def test_claim_joins_an_open_transaction_and_rolls_back_with_it(tables):
    db = tables
    add_jobs(db, 4)
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute(sa.insert(jobs), [{"id": 100, "status": "PENDING"}])
        rows = claim(db, jobs, CLAIMED, where=[PENDING], order_by=[jobs.c.id.desc()], limit=2)
        # It ran on this transaction: it sees the row inserted above, and its change is visible.
        assert [r["id"] for r in rows] == [100, 4]
        assert (
            conn.execute(sa.select(jobs.c.status).where(jobs.c.id == 4)).scalar_one() == "CLAIMED"
        )
        raise RuntimeError("roll back")
    rows = all_rows(db)
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    assert all(r["status"] == "PENDING" and r["worker"] is None for r in rows)


def test_claim_in_a_committed_transaction_is_kept(tables):
    db = tables
    add_jobs(db, 4)
    with db.transaction():
        first = claim(db, jobs, CLAIMED, where=[PENDING], order_by=[jobs.c.id], limit=2)
        second = claim(db, jobs, CLAIMED, where=[PENDING], order_by=[jobs.c.id], limit=2)
    assert [r["id"] for r in first + second] == [1, 2, 3, 4]
    assert all(r["status"] == "CLAIMED" for r in all_rows(db))


# -- concurrency ----------------------------------------------------------------------------

TOTAL = 10_000
BATCH = 100
WORKERS = 4


def check_every_row_claimed_once(db: Database, per_worker: list[list[int]]) -> None:
    ids = [i for claimed in per_worker for i in claimed]
    assert len(ids) == len(set(ids)), "a row was claimed twice"
    assert set(ids) == set(range(1, TOTAL + 1))
    rows = all_rows(db)
    assert len(rows) == TOTAL
    assert all(r["status"] == "CLAIMED" for r in rows)
    owner = {i: f"w{n}" for n, claimed in enumerate(per_worker) for i in claimed}
    assert all(r["worker"] == owner[r["id"]] for r in rows)


def test_processes_claim_every_row_exactly_once(shared_url, run_dir: Path, tables_of):
    db = shared_database(shared_url, run_dir)
    tables_of(db, cs.metadata)
    add_jobs(db, TOTAL)
    per_worker = run_processes(
        shared_url, claim_until_empty, [(f"w{n}", BATCH) for n in range(WORKERS)]
    )
    check_every_row_claimed_once(db, per_worker)


def test_threads_claim_every_row_exactly_once_on_memory_sqlite(run_dir: Path, tables_of):
    from tests.conftest import open_database

    db = open_database("sqlite_memory", run_dir)
    tables_of(db, cs.metadata)
    add_jobs(db, TOTAL)
    per_worker = run_threads(db, claim_until_empty, [(f"w{n}", BATCH) for n in range(WORKERS)])
    check_every_row_claimed_once(db, per_worker)

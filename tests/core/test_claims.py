"""claim(): atomic claiming of rows, on every backend, alone and under concurrency."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import ConflictError, Database, InvalidQuery, claim
from dblayer.core.claims import PreparedClaim, QueryClaims
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


# -- prepared claims ------------------------------------------------------------------------

# A worker's claim: its name and the status it claims from are parameters of each run.
TAKE = {"status": "CLAIMED", "worker": sa.bindparam("worker")}
FROM = jobs.c.status == sa.bindparam("from_status")
PENDING_FILTER = {"field": "status", "op": "=", "arg": "PENDING"}


def stored_status(db: Database) -> dict[int, tuple[str, str | None]]:
    return {r["id"]: (r["status"], r["worker"]) for r in all_rows(db)}


def test_a_prepared_claim_runs_with_new_values_each_time(tables):
    db = tables
    add_jobs(db, 5, payload={"n": [1]})
    take = PreparedClaim(jobs, TAKE, where=[FROM], order_by=[jobs.c.id.desc()], limit=2)
    first = take.run(db, {"worker": "w1", "from_status": "PENDING"})
    second = take.run(db, {"worker": "w2", "from_status": "PENDING"})
    assert [r["id"] for r in first] == [5, 4] and [r["id"] for r in second] == [3, 2]
    stored = {r["id"]: r for r in all_rows(db)}
    assert first + second == [stored[i] for i in (5, 4, 3, 2)]
    assert all(r["payload"] == {"n": [1]} for r in first)
    assert all(r["updated_at"] is not None for r in first)  # the column's onupdate ran
    assert stored[1]["status"] == "PENDING" and stored[1]["updated_at"] is None
    assert [stored[i]["worker"] for i in (5, 4, 3, 2)] == ["w1", "w1", "w2", "w2"]
    assert take.run(db, {"worker": "w3", "from_status": "EXECUTED"}) == []
    assert [r["id"] for r in take.run(db, {"worker": "w3", "from_status": "PENDING"})] == [1]
    assert take.run(db, {"worker": "w3", "from_status": "PENDING"}) == []


def test_a_prepared_claim_without_order_takes_limit_matching_rows(tables):
    db = tables
    add_jobs(db, 6)
    take = PreparedClaim(jobs, TAKE, where=[FROM, jobs.c.priority < 5], limit=3)
    rows = take.run(db, {"worker": "w1", "from_status": "PENDING"})
    assert len(rows) == 3 and {r["id"] for r in rows} <= {1, 2, 3, 4}
    stored = {r["id"]: r for r in all_rows(db)}
    assert sorted(rows, key=lambda r: r["id"]) == [
        stored[r["id"]] for r in sorted(rows, key=lambda r: r["id"])
    ]
    rest = PreparedClaim(jobs, TAKE, where=[FROM], limit=None).run(
        db, {"worker": "w2", "from_status": "PENDING"}
    )
    assert sorted(r["id"] for r in rows + rest) == [1, 2, 3, 4, 5, 6]
    assert all(status == "CLAIMED" for status, _ in stored_status(db).values())


@pytest.mark.parametrize("count", [1, 3, 500, 1100])
def test_a_prepared_claim_of_many_rows_keeps_their_order(tables, count):
    db = tables
    add_jobs(db, 1200)
    take = PreparedClaim(jobs, TAKE, where=[FROM], order_by=[jobs.c.id.desc()], limit=count)
    rows = take.run(db, {"worker": "w1", "from_status": "PENDING"})
    assert [r["id"] for r in rows] == list(range(1200, 1200 - count, -1))
    assert sum(status == "CLAIMED" for status, _ in stored_status(db).values()) == count


def test_a_prepared_claim_takes_in_lists_of_fixed_values(tables):
    db = tables
    add_jobs(db, 6)  # priority = id % 7
    args = {"worker": "w1", "from_status": "PENDING"}
    where = [jobs.c.id.in_([2, 4, 5]), jobs.c.priority.not_in([4]), FROM]
    assert sorted(
        r["id"] for r in PreparedClaim(jobs, TAKE, where=where, limit=None).run(db, args)
    ) == [2, 5]
    assert PreparedClaim(jobs, TAKE, where=[jobs.c.id.in_([])], limit=None).run(db, args) == []
    rest = PreparedClaim(jobs, TAKE, where=[jobs.c.id.not_in([]), FROM], limit=None).run(db, args)
    assert sorted(r["id"] for r in rest) == [1, 3, 4, 6]
    with pytest.raises(InvalidQuery, match="IN lists of fixed values only, not 'ids'"):
        PreparedClaim(jobs, TAKE, where=[jobs.c.id.in_(sa.bindparam("ids", expanding=True))])


def test_a_prepared_claim_returns_the_columns_asked_for(tables):
    db = tables
    add_jobs(db, 2)
    take = PreparedClaim(
        jobs, TAKE, where=[FROM], order_by=[jobs.c.id], returning=[jobs.c.worker, jobs.c.id]
    )
    assert take.run(db, {"worker": "w1", "from_status": "PENDING"}) == [{"worker": "w1", "id": 1}]
    with pytest.raises(InvalidQuery, match="including its primary key"):
        PreparedClaim(jobs, TAKE, returning=[jobs.c.worker])
    with pytest.raises(InvalidQuery, match="including its primary key"):
        PreparedClaim(jobs, TAKE, returning=[jobs.c.id, cs.servers.c.host])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"worker": "w1"}, "from_status"),
        ([("worker", "w1")], "params must be a dict"),
        ("worker=w1", "params must be a dict"),
    ],
    ids=["missing", "list", "str"],
)
def test_bad_parameters_of_a_prepared_claim_are_refused(tables, params, match):
    db = tables
    add_jobs(db, 3)
    take = PreparedClaim(jobs, TAKE, where=[FROM], order_by=[jobs.c.id])
    with pytest.raises(InvalidQuery, match=match):
        take.run(db, params)
    with pytest.raises(InvalidQuery, match="go with a lease"):
        take.run(db, {"worker": "w1", "from_status": "PENDING"}, worker="w1")
    assert all(s == ("PENDING", None) for s in stored_status(db).values())


def test_a_bad_prepared_claim_is_refused_when_built(tables):
    with pytest.raises(InvalidQuery, match="limit"):
        PreparedClaim(jobs, TAKE, limit=-1)
    with pytest.raises(InvalidQuery, match="unknown columns"):
        PreparedClaim(jobs, {"nope": 1})
    with pytest.raises(InvalidQuery, match="the claim's own"):
        PreparedClaim(jobs, {"status": sa.bindparam("dblayer_q0")})
    with pytest.raises(InvalidQuery, match="where"):
        PreparedClaim(jobs, TAKE, where="status = 'PENDING'")
    with pytest.raises(InvalidQuery, match="single-column primary key"):
        PreparedClaim(cs.pairs, {"status": "CLAIMED"})
    # An onupdate that reads SQLAlchemy's execution context: only claim() can run it.
    contextual = sa.Table(
        "cl_not_created",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(20)),
        sa.Column("seen", sa.Integer, onupdate=lambda context: 1),
    )
    with pytest.raises(InvalidQuery, match="onupdate of 'seen'"):
        PreparedClaim(contextual, {"status": "CLAIMED"})


def test_a_prepared_claim_refusing_a_value_changes_nothing(tables):
    db = tables
    add_jobs(db, 3)
    take = PreparedClaim(jobs, {"status": sa.bindparam("status")}, where=[PENDING], limit=None)
    with pytest.raises(ConflictError):
        take.run(db, {"status": None})
    assert all(s == ("PENDING", None) for s in stored_status(db).values())


def test_a_prepared_claim_joins_an_open_transaction(tables):
    db = tables
    add_jobs(db, 3)
    take = PreparedClaim(jobs, TAKE, where=[FROM], limit=None)
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute(sa.insert(jobs), [{"id": 100, "status": "PENDING"}])
        rows = take.run(db, {"worker": "w1", "from_status": "PENDING"})
        assert sorted(r["id"] for r in rows) == [1, 2, 3, 100]
        raise RuntimeError("roll back")
    assert stored_status(db) == {i: ("PENDING", None) for i in (1, 2, 3)}


def test_query_claims_claim_by_dict_queries(tables):
    db = tables
    add_jobs(db, 10)
    claims = QueryClaims(jobs, TAKE, allowed_fields=("status", "priority", "id"))
    pending = PENDING_FILTER
    query = {"filters": [pending], "order_by": {"field": "id", "direction": "DESC"}, "limit": 2}
    assert [r["id"] for r in claims.claim(db, query, {"worker": "w1"})] == [10, 9]
    assert [r["id"] for r in claims.claim(db, query, {"worker": "w2"})] == [8, 7]
    # IN lists of several lengths, each a shape of its own.
    for ids in ([1], [2, 3], [4, 5, 6]):
        in_ids = {"filters": [pending, {"field": "id", "op": "IN", "arg": ids}]}
        assert sorted(r["id"] for r in claims.claim(db, in_ids, {"worker": "w3"})) == ids
    assert (
        claims.claim(db, {"filters": [{"field": "id", "op": "IN", "arg": []}]}, {"worker": "x"})
        == []
    )
    assert claims.claim(db, {"limit": 0}, {"worker": "x"}) == []
    assert [r["id"] for r in claims.claim(db, {"filters": [pending]}, {"worker": "w4"})] == []
    owners = ["w3"] * 6 + ["w2"] * 2 + ["w1"] * 2
    assert stored_status(db) == {i + 1: ("CLAIMED", w) for i, w in enumerate(owners)}


def test_query_claims_keep_working_past_their_shape_cache(tables):
    db = tables
    add_jobs(db, 80)
    claims = QueryClaims(jobs, TAKE)
    for n in range(1, 81):  # 80 shapes: a limit of its own each
        at_most = {"field": "id", "op": "<=", "arg": n}
        query = {"filters": [at_most, PENDING_FILTER], "order_by": "id", "limit": n}
        assert [r["id"] for r in claims.claim(db, query, {"worker": f"w{n}"})] == [n]
    assert all(stored_status(db)[n] == ("CLAIMED", f"w{n}") for n in range(1, 81))


@pytest.mark.parametrize(
    "query",
    [
        {"filters": [{"field": "worker", "op": "=", "arg": None}]},
        {"filters": [{"field": "status", "op": "MATCHES", "arg": "x"}]},
        {"order_by": {"field": "payload"}},
        {"limit": -1},
        {"offset": 1},
        ["status"],
    ],
    ids=repr,
)
def test_a_bad_query_claims_nothing(tables, query):
    db = tables
    add_jobs(db, 3)
    claims = QueryClaims(jobs, TAKE, allowed_fields=("status", "id"))
    with pytest.raises(InvalidQuery):
        claims.claim(db, query, {"worker": "w1"})
    assert all(s == ("PENDING", None) for s in stored_status(db).values())


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


def prepared_claim_until_empty(db: Database, worker: str, batch: int) -> list[int]:
    """claim_until_empty with one PreparedClaim, in no order: one statement per batch."""
    take = PreparedClaim(jobs, TAKE, where=[FROM], limit=batch)
    claimed: list[int] = []
    while rows := take.run(db, {"worker": worker, "from_status": "PENDING"}):
        if any(row["status"] != "CLAIMED" or row["worker"] != worker for row in rows):
            raise AssertionError(f"{worker} got a row it did not claim: {rows!r}")
        claimed.extend(row["id"] for row in rows)
    return claimed


def test_processes_claim_every_row_exactly_once_with_a_prepared_claim(
    shared_url, run_dir: Path, tables_of
):
    db = shared_database(shared_url, run_dir)
    tables_of(db, cs.metadata)
    add_jobs(db, TOTAL)
    args = [(f"w{n}", BATCH) for n in range(WORKERS)]
    per_worker = run_processes(shared_url, prepared_claim_until_empty, args)
    check_every_row_claimed_once(db, per_worker)


def test_threads_claim_every_row_exactly_once_on_memory_sqlite(run_dir: Path, tables_of):
    from tests.conftest import open_database

    db = open_database("sqlite_memory", run_dir)
    tables_of(db, cs.metadata)
    add_jobs(db, TOTAL)
    per_worker = run_threads(db, claim_until_empty, [(f"w{n}", BATCH) for n in range(WORKERS)])
    check_every_row_claimed_once(db, per_worker)

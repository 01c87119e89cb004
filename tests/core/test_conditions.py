"""constraint / equal_any / not_equal / conditional_update (nova's conditional updates)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dblayer.core import (
    Constraint,
    ConstraintNotMet,
    InvalidQuery,
    conditional_update,
    constraint,
    equal_any,
    not_equal,
)
from dblayer.core.conditions import Condition
from tests.core import claims_schema as cs

servers = cs.servers
ROWS = [
    {"id": 1, "host": "h1", "vm_state": "active", "task": None},
    {"id": 2, "host": "h2", "vm_state": "error", "task": "x"},
    {"id": 3, "host": "h1", "vm_state": None, "task": None},
    {"id": 4, "host": None, "vm_state": "stopped", "task": None},
]


@pytest.fixture
def rows(db, tables_of):
    tables_of(db, cs.metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(servers), ROWS)
    return db


def table_state(db) -> list[dict]:
    with db.transaction(readonly=True) as conn:
        return [dict(r) for r in conn.execute(sa.select(servers).order_by(servers.c.id)).mappings()]


def update(db, values, *where, constraint=None, target=servers) -> int:
    with db.transaction() as conn:
        return conditional_update(conn, target, values, *where, constraint=constraint)


def by_id(row_id: int):
    return servers.c.id == row_id


# -- updates that apply ---------------------------------------------------------------------


def test_update_applies_when_the_constraint_holds(rows):
    db = rows
    n = update(db, {"task": "deleting"}, by_id(1), constraint=constraint(host=equal_any("h1")))
    assert n == 1
    expected = [dict(r) for r in ROWS]
    expected[0]["task"] = "deleting"
    assert table_state(db) == expected


def test_equal_any_matches_any_of_its_values(rows):
    db = rows
    c = constraint(vm_state=equal_any("stopped", "error", "active"))
    assert update(db, {"task": "t"}, by_id(2), constraint=c) == 1
    assert update(db, {"task": "t"}, by_id(4), constraint=c) == 1


def test_not_equal_excludes_every_value(rows):
    db = rows
    c = constraint(vm_state=not_equal("error", "stopped"))
    assert update(db, {"task": "t"}, by_id(1), constraint=c) == 1
    for row_id in (2, 4):
        with pytest.raises(ConstraintNotMet):
            update(db, {"task": "t"}, by_id(row_id), constraint=c)


def test_several_conditions_must_all_hold(rows):
    db = rows
    c = constraint(host=equal_any("h1"), vm_state=not_equal("error"))
    assert update(db, {"task": "t"}, by_id(1), constraint=c) == 1
    with pytest.raises(ConstraintNotMet):
        update(db, {"task": "t"}, by_id(2), constraint=c)  # host differs, vm_state is "error"


def test_update_of_several_rows_returns_how_many_matched(rows):
    db = rows
    assert update(db, {"task": "sweep"}, constraint=constraint(host=equal_any("h1", "h2"))) == 3
    assert [r["task"] for r in table_state(db)] == ["sweep", "sweep", "sweep", None]


def test_writing_the_values_a_row_already_holds_still_counts_as_met(rows):
    # MariaDB/MySQL would report 0 changed rows; the constraint held, so this is no failure.
    db = rows
    assert update(db, {"host": "h1"}, by_id(1), constraint=constraint(host=equal_any("h1"))) == 1
    assert table_state(db) == ROWS


def test_update_without_a_constraint_uses_where_alone(rows):
    db = rows
    assert update(db, {"task": "t"}, by_id(4)) == 1
    with pytest.raises(ConstraintNotMet):
        update(db, {"task": "t"}, by_id(99))


def test_mapped_class_and_session(rows):
    db = rows
    with db.session() as session:
        n = conditional_update(
            session,
            cs.Server,
            {"task": "orm"},
            cs.Server.id == 1,
            constraint=constraint(host=equal_any("h1")),
        )
    assert n == 1
    assert table_state(db)[0]["task"] == "orm"


# -- updates that do not apply --------------------------------------------------------------


def test_constraint_not_met_leaves_the_row_untouched(rows):
    db = rows
    with pytest.raises(ConstraintNotMet):
        update(
            db,
            {"task": "deleting", "host": "moved"},
            by_id(2),
            constraint=constraint(host=equal_any("h1")),
        )
    assert table_state(db) == ROWS


def test_constraint_not_met_rolls_back_the_whole_transaction(rows):
    db = rows
    with pytest.raises(ConstraintNotMet), db.transaction() as conn:
        conn.execute(sa.update(servers).where(by_id(4)).values(task="earlier"))
        conditional_update(
            conn, servers, {"task": "t"}, by_id(2), constraint=constraint(host=equal_any("h1"))
        )
    assert table_state(db) == ROWS


def test_not_equal_does_not_match_null(rows):
    # SQL semantics, as in nova: NULL != 'x' is not true.
    db = rows
    with pytest.raises(ConstraintNotMet):
        update(db, {"task": "t"}, by_id(3), constraint=constraint(vm_state=not_equal("error")))
    with pytest.raises(ConstraintNotMet):
        update(db, {"task": "t"}, by_id(4), constraint=constraint(host=not_equal("h1")))
    assert table_state(db) == ROWS


def test_equal_any_none_matches_null(rows):
    # As SQLAlchemy renders ``column == None``: IS NULL.
    db = rows
    assert (
        update(db, {"task": "t"}, by_id(3), constraint=constraint(vm_state=equal_any(None, "x")))
        == 1
    )
    with pytest.raises(ConstraintNotMet):
        update(db, {"task": "t"}, by_id(1), constraint=constraint(vm_state=equal_any(None)))


# -- bad input ------------------------------------------------------------------------------


def test_equal_any_needs_a_value():
    with pytest.raises(InvalidQuery, match="at least one"):
        equal_any()


@pytest.mark.parametrize(
    "value", ["h1", None, 1, ["h1"], Condition(("h1",))], ids=["str", "none", "int", "list", "bare"]
)
def test_constraint_with_a_non_condition_is_rejected(rows, value):
    db = rows
    with pytest.raises(InvalidQuery):
        c = constraint(host=value)
        update(db, {"task": "t"}, by_id(1), constraint=c)
    assert table_state(db) == ROWS


def test_constraint_on_an_unknown_column_is_rejected(rows):
    db = rows
    c = constraint(nope=equal_any(1))
    with pytest.raises(InvalidQuery, match="nope"):
        update(db, {"task": "t"}, by_id(1), constraint=c)
    with pytest.raises(InvalidQuery, match="nope"):
        c.apply(servers, sa.select(servers))
    assert table_state(db) == ROWS


def test_constraint_class_checks_its_input(rows):
    with pytest.raises(InvalidQuery):
        Constraint([("host", equal_any("h1"))])
    with pytest.raises(InvalidQuery):
        Constraint({1: equal_any("h1")}).apply(servers, sa.select(servers))


@pytest.mark.parametrize(
    "values",
    [{}, None, {"nope": 1}, {"task": "t", "bogus": 1}, {1: "x"}],
    ids=["empty", "none", "unknown", "one-unknown", "non-str"],
)
def test_bad_values_are_rejected(rows, values):
    db = rows
    with pytest.raises(InvalidQuery):
        update(db, values, by_id(1), constraint=constraint(host=equal_any("h1")))
    assert table_state(db) == ROWS


@pytest.mark.parametrize("where", ["id = 1", {"id": 1}, 1], ids=["str", "dict", "int"])
def test_where_must_be_clauses(rows, where):
    db = rows
    with pytest.raises(InvalidQuery):
        update(db, {"task": "t"}, where)
    assert table_state(db) == ROWS


def test_constraint_argument_must_be_a_constraint(rows):
    db = rows
    with pytest.raises(InvalidQuery):
        update(db, {"task": "t"}, by_id(1), constraint={"host": equal_any("h1")})
    assert table_state(db) == ROWS


def test_target_must_be_a_table_or_mapped_class(rows):
    db = rows
    with pytest.raises(InvalidQuery):
        update(db, {"task": "t"}, by_id(1), target="cl_servers")
    assert table_state(db) == ROWS


# -- Constraint.apply -----------------------------------------------------------------------


def test_apply_on_a_select(rows):
    db = rows
    c = constraint(host=equal_any("h1", "h2"), vm_state=not_equal("error"))
    assert isinstance(c, Constraint)
    query = c.apply(servers, sa.select(servers.c.id).order_by(servers.c.id))
    with db.transaction(readonly=True) as conn:
        assert list(conn.execute(query).scalars()) == [1]  # 2 is "error", 3 has a NULL vm_state


def test_apply_on_an_orm_select(rows):
    db = rows
    c = constraint(host=equal_any("h1"))
    with db.session(readonly=True) as session:
        found = session.scalars(
            c.apply(cs.Server, sa.select(cs.Server).order_by(cs.Server.id))
        ).all()
    assert [s.id for s in found] == [1, 3]


def test_not_equal_without_values_restricts_nothing(rows):
    db = rows
    query = constraint(vm_state=not_equal()).apply(
        servers, sa.select(sa.func.count()).select_from(servers)
    )
    with db.transaction(readonly=True) as conn:
        assert conn.execute(query).scalar_one() == 4

"""The task log (nova notes §2.21 "Task log", §3.22): one begin per task, period and host
(the unique key decides, even between racing callers), end, reads, on every backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidValue
from dblayer.stores.nova import exception, get_admin_context, models
from tests.concurrency import run_processes
from tests.stores.nova.conftest import table_rows

T = models.TaskLog
BEGIN = dt.datetime(2024, 3, 1, 0, 0, 0, 250)
END = dt.datetime(2024, 4, 1, 0, 0, 0, 250)


def rows(db: Database) -> list[dict]:
    return table_rows(db, T)


def begin(admin, host: str = "host1", name: str = "instance_usage_audit", **more) -> None:
    nova.task_log_begin_task(admin, name, BEGIN, END, host, message="started", **more)


def test_begin_records_a_running_task(nova_db, admin):
    assert begin(admin, task_items=7) is None
    [stored] = rows(nova_db)
    assert stored["task_name"] == "instance_usage_audit" and stored["host"] == "host1"
    assert stored["state"] == "RUNNING" and stored["message"] == "started"
    assert (
        stored["period_beginning"] == BEGIN and stored["period_ending"] == END
    )  # microseconds kept
    assert stored["task_items"] == 7 and stored["errors"] == 0
    # task_items only when given (truthy): else the column's default.
    begin(admin, host="host2", task_items=0)
    assert rows(nova_db)[1]["task_items"] == 0


def test_a_second_begin_is_refused(nova_db, admin):
    begin(admin)
    with pytest.raises(exception.TaskAlreadyRunning) as err:
        begin(admin)
    assert "instance_usage_audit" in str(err.value) and "host1" in str(err.value)
    # Even once it is done, and even if the row is deleted (the key has no 'deleted').
    nova.task_log_end_task(admin, "instance_usage_audit", BEGIN, END, "host1", 0)
    with pytest.raises(exception.TaskAlreadyRunning):
        begin(admin)
    assert len(rows(nova_db)) == 1
    # Another host, task or period is another row.
    begin(admin, host="host2")
    begin(admin, name="other")
    nova.task_log_begin_task(
        admin, "other", BEGIN, END + dt.timedelta(seconds=1), "host1", message="m"
    )
    assert len(rows(nova_db)) == 4


def test_begin_rejects_bad_values_and_stores_nothing(nova_db, admin):
    with pytest.raises(InvalidValue, match="message"):
        nova.task_log_begin_task(admin, "t", BEGIN, END, "host1")
    with pytest.raises(InvalidValue, match="message"):
        nova.task_log_begin_task(admin, "t", BEGIN, END, "host1", message="")
    with pytest.raises(InvalidValue):
        nova.task_log_begin_task(admin, "t", "2024-03-01", END, "host1", message="m")
    with pytest.raises(InvalidValue):
        nova.task_log_begin_task(admin, "t", BEGIN, END, None, message="m")
    with pytest.raises(InvalidValue):
        nova.task_log_begin_task(admin, "t", BEGIN, END, "host1", task_items="many", message="m")
    assert rows(nova_db) == []


def test_end_marks_every_matching_row_done(nova_db, admin):
    begin(admin)
    begin(admin, host="host2")
    nova.task_log_end_task(admin, "instance_usage_audit", BEGIN, END, "host1", 3, message="done")
    first, second = rows(nova_db)
    assert first["state"] == "DONE" and first["errors"] == 3 and first["message"] == "done"
    assert first["updated_at"] is not None
    assert second["state"] == "RUNNING"
    # Without a message the old one stays; a done task can be ended again.
    nova.task_log_end_task(admin, "instance_usage_audit", BEGIN, END, "host1", 4)
    assert rows(nova_db)[0]["message"] == "done" and rows(nova_db)[0]["errors"] == 4
    # host None: every host's row.
    nova.task_log_end_task(admin, "instance_usage_audit", BEGIN, END, None, 1)
    assert [r["state"] for r in rows(nova_db)] == ["DONE", "DONE"]


def test_end_of_a_task_never_begun(nova_db, admin):
    begin(admin)
    before = rows(nova_db)
    for args in (
        ("instance_usage_audit", BEGIN, END, "host2"),
        ("other", BEGIN, END, "host1"),
        ("instance_usage_audit", BEGIN, END + dt.timedelta(microseconds=1), "host1"),
    ):
        with pytest.raises(exception.TaskNotRunning) as err:
            nova.task_log_end_task(admin, *args, 0)
        assert args[0] in str(err.value)
    with pytest.raises(InvalidValue):
        nova.task_log_end_task(admin, "instance_usage_audit", BEGIN, END, "host1", "none")
    assert rows(nova_db) == before


def test_get_and_get_all_filter_on_host_and_state_when_given(nova_db, admin):
    begin(admin)
    begin(admin, host="host2")
    begin(admin, host="host3")
    nova.task_log_end_task(admin, "instance_usage_audit", BEGIN, END, "host2", 0)
    name = "instance_usage_audit"
    got = nova.task_log_get(admin, name, BEGIN, END, "host2")
    assert got.host == "host2" and got.state == "DONE"
    assert nova.task_log_get(admin, name, BEGIN, END, "host2", state="RUNNING") is None
    assert nova.task_log_get(admin, name, BEGIN, END, "host9") is None
    assert nova.task_log_get(admin, name, BEGIN, END, None).host == "host1"
    assert nova.task_log_get(admin, "other", BEGIN, END, "host1") is None
    every = nova.task_log_get_all(admin, name, BEGIN, END)
    assert [r.host for r in every] == ["host1", "host2", "host3"]
    assert [r.host for r in nova.task_log_get_all(admin, name, BEGIN, END, state="RUNNING")] == [
        "host1",
        "host3",
    ]
    assert [r.host for r in nova.task_log_get_all(admin, name, BEGIN, END, host="host3")] == [
        "host3"
    ]
    assert nova.task_log_get_all(admin, name, BEGIN, END + dt.timedelta(days=1)) == []


def test_reads_and_end_follow_read_deleted(nova_db, admin):
    begin(admin)
    [row] = rows(nova_db)
    with nova_db.transaction() as conn:
        table = T.__table__
        conn.execute(table.update().values(deleted=row["id"]))
    name = "instance_usage_audit"
    assert nova.task_log_get(admin, name, BEGIN, END, "host1") is None
    assert nova.task_log_get_all(admin, name, BEGIN, END) == []
    with pytest.raises(exception.TaskNotRunning):
        nova.task_log_end_task(admin, name, BEGIN, END, "host1", 0)
    deleted_ok = get_admin_context(read_deleted="yes")
    assert nova.task_log_get(deleted_ok, name, BEGIN, END, "host1").id == row["id"]
    assert len(nova.task_log_get_all(get_admin_context(read_deleted="only"), name, BEGIN, END)) == 1
    nova.task_log_end_task(deleted_ok, name, BEGIN, END, "host1", 2)
    assert rows(nova_db)[0]["state"] == "DONE"


def test_every_call_is_admin_only_and_changes_nothing(nova_db, admin, ctx):
    begin(admin)
    before = rows(nova_db)
    calls = [
        lambda: nova.task_log_begin_task(ctx, "t", BEGIN, END, "h", message="m"),
        lambda: nova.task_log_end_task(ctx, "instance_usage_audit", BEGIN, END, "host1", 0),
        lambda: nova.task_log_get(ctx, "instance_usage_audit", BEGIN, END, "host1"),
        lambda: nova.task_log_get_all(ctx, "instance_usage_audit", BEGIN, END),
    ]
    for call in calls:
        with pytest.raises(exception.AdminRequired):
            call()
    assert rows(nova_db) == before


# -- racing begins ---------------------------------------------------------------------------


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def _begin(_db: Any, rounds: int) -> list[str]:
    """Try to begin each round's task; 'ok' or the error's class name per round."""
    admin = get_admin_context()
    outcomes = []
    for i in range(rounds):
        try:
            nova.task_log_begin_task(admin, f"audit-{i}", BEGIN, END, "host1", message="m")
            outcomes.append("ok")
        except exception.TaskAlreadyRunning:
            outcomes.append("TaskAlreadyRunning")
    return outcomes


def test_racing_begins_let_exactly_one_through(nova_url):
    rounds = 5
    outcomes = run_processes(partial(_nova_on, nova_url), _begin, [(rounds,)] * 4)
    for i in range(rounds):
        per_round = sorted(o[i] for o in outcomes)
        assert per_round == ["TaskAlreadyRunning"] * 3 + ["ok"]
    stored = rows(nova.get_database())
    assert sorted(r["task_name"] for r in stored) == [f"audit-{i}" for i in range(rounds)]

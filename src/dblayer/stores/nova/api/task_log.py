"""nova DB API: the task log (notes §2.21 "Task log", §3.22). Every call is admin-only.

A periodic task records one row per ``(task_name, host, period_beginning,
period_ending)``; that key is unique (without ``deleted``), and the unique constraint is
what refuses a second ``task_log_begin_task``: of two callers racing to begin the same
task, exactly one inserts and the other gets TaskAlreadyRunning. ``message`` is NOT NULL
(callers must give one to begin a task). Reads and ``task_log_end_task`` use the
context's ``read_deleted``; ``host`` and ``state`` filter only when not None.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from dblayer.core import DuplicateEntry, InvalidValue

from .. import exception
from ..models import TaskLog
from ._base import ADMIN, api, execute, fetch_all, first, model_query, read_deleted_clause
from ._checks import clean_values, key_value

__all__ = [
    "task_log_begin_task",
    "task_log_end_task",
    "task_log_get",
    "task_log_get_all",
]

T = TaskLog


def _period(name: str, value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise InvalidValue(f"{name} must be a datetime, not {value!r}")
    return value


def _matching(
    task_name: Any, period_beginning: Any, period_ending: Any, host: Any, state: Any
) -> list[sa.ColumnElement[bool]]:
    """nova's task log filter: name and period, plus host and state when not None."""
    table = T.__table__
    where = [
        table.c.task_name == key_value(T, "task_name", task_name),
        table.c.period_beginning == _period("period_beginning", period_beginning),
        table.c.period_ending == _period("period_ending", period_ending),
    ]
    if host is not None:
        where.append(table.c.host == key_value(T, "host", host))
    if state is not None:
        where.append(table.c.state == key_value(T, "state", state))
    return where


@api(ADMIN)
def task_log_begin_task(
    context: Any,
    task_name: str,
    period_beginning: Any,
    period_ending: Any,
    host: str,
    task_items: int | None = None,
    message: str | None = None,
) -> None:
    """Mark a task as started for a given host/time period."""
    values: dict[str, Any] = {
        "task_name": task_name,
        "state": "RUNNING",
        "host": host,
        "period_beginning": _period("period_beginning", period_beginning),
        "period_ending": _period("period_ending", period_ending),
        "message": message or None,
    }
    # nova stored these only when given (truthy); message has no default.
    if task_items:
        values["task_items"] = task_items
    row = clean_values(T, values)
    try:
        execute(sa.insert(T.__table__).values(row))
    except DuplicateEntry:
        raise exception.TaskAlreadyRunning(task_name=task_name, host=host) from None


@api(ADMIN)
def task_log_end_task(
    context: Any,
    task_name: str,
    period_beginning: Any,
    period_ending: Any,
    host: str,
    errors: int,
    message: str | None = None,
) -> None:
    """Mark a task as complete for a given host/time period."""
    changes: dict[str, Any] = {"state": "DONE", "errors": errors}
    if message:
        changes["message"] = message
    changes = clean_values(T, changes)
    where = _matching(task_name, period_beginning, period_ending, host, None)
    visible = read_deleted_clause(T, context.read_deleted)
    if visible is not None:
        where.append(visible)
    # The ending is recorded whatever state the rows were in (nova's behaviour).
    ended = execute(sa.update(T.__table__).where(*where).values(changes)).rowcount
    if ended == 0:
        raise exception.TaskNotRunning(task_name=task_name, host=host)


@api(ADMIN)
def task_log_get(
    context: Any,
    task_name: str,
    period_beginning: Any,
    period_ending: Any,
    host: str,
    state: str | None = None,
) -> Any:
    """The task log row of a task, period and host (and state, if given), or None."""
    where = _matching(task_name, period_beginning, period_ending, host, state)
    return first(model_query(context, T).where(*where).order_by(T.id))


@api(ADMIN)
def task_log_get_all(
    context: Any,
    task_name: str,
    period_beginning: Any,
    period_ending: Any,
    host: str | None = None,
    state: str | None = None,
) -> list[Any]:
    """Every task log row of a task and period (of a host and state, if given)."""
    where = _matching(task_name, period_beginning, period_ending, host, state)
    return fetch_all(model_query(context, T).where(*where).order_by(T.id))

"""Races between processes (SQLite file, PostgreSQL, MariaDB):

- instance_update_and_get_original's expected_task_state is checked in the UPDATE itself:
  of two processes expecting the same state of an instance, exactly one wins and the
  other gets UnexpectedTaskStateError naming the winner's state;
- two first instance creations of a new project both end up in its one default group.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.stores.nova import RequestContext, exception, models
from tests.concurrency import run_processes

ROUNDS = 5


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def _race(_db: Any, uuids: list[str], name: str) -> tuple[list[tuple[str, Any]], Any]:
    """Try to take each instance from 'no task' to this child's own task state; then
    create an instance of a project that has no default group yet."""
    ctx = RequestContext("user1", "project1")
    outcomes: list[tuple[str, Any]] = []
    for instance_uuid in uuids:
        try:
            old, new = nova.instance_update_and_get_original(
                ctx, instance_uuid, {"task_state": name, "expected_task_state": None}
            )
            outcomes.append(("won", (old.task_state, new.task_state)))
        except exception.UnexpectedTaskStateError as e:
            outcomes.append(("lost", (e.kwargs["expected"], e.kwargs["actual"])))
    created = nova.instance_create(
        RequestContext(name, "new-project"), {"security_groups": ["default"]}
    )
    return outcomes, created.security_groups[0].id


def test_racing_processes_have_one_winner(nova_url):
    ctx = RequestContext("user1", "project1")
    uuids = [nova.instance_create(ctx, {"vm_state": "active"}).uuid for _ in range(ROUNDS)]
    names = ["task-a", "task-b"]
    results = run_processes(partial(_nova_on, nova_url), _race, [(uuids, n) for n in names])
    (updates_a, group_a), (updates_b, group_b) = results
    for i, instance_uuid in enumerate(uuids):
        (a, b) = (updates_a[i], updates_b[i])
        assert sorted([a[0], b[0]]) == ["lost", "won"], (a, b)
        winner = names[0] if a[0] == "won" else names[1]
        won, lost = (a, b) if a[0] == "won" else (b, a)
        assert won[1] == (None, winner)
        # The loser saw the winner's state, and changed nothing.
        assert lost[1] == ((None,), winner)
        assert nova.instance_get_by_uuid(ctx, instance_uuid).task_state == winner

    # One default group for the new project, counted once in its creator's quota usage.
    assert group_a == group_b
    with nova.get_database().transaction() as conn:
        groups = conn.execute(
            sa.select(models.SecurityGroup.id).where(
                models.SecurityGroup.project_id == "new-project"
            )
        ).all()
        usages = conn.execute(
            sa.select(models.QuotaUsage.in_use).where(models.QuotaUsage.project_id == "new-project")
        ).all()
    assert [g.id for g in groups] == [group_a]
    assert [u.in_use for u in usages] == [1]

"""Quota reservations raced by 4 processes (SQLite file, PostgreSQL, MariaDB).

Each process is one user of a project that starts with no usage rows at all (so the
processes also race to create them; ``fixed_ips`` is a per-project resource, one row
shared by all). The project may use 100 instances and 100 fixed IPs, each user 40
instances. Every process reserves 1-5 of each until it is refused three times for a
single one; each reservation is committed, rolled back, or made already expired and
returned by reservation_expire (and then committed in vain). Meanwhile every process
checks what it reads: the project never uses more than its limit, a user never more
than theirs. At the end usage equals what was committed, nothing is reserved, and
there is one usage row per user and resource.

Before that, the processes race to settle the same 20 reservations of another project
(commit, commit, roll back, expire): each is settled exactly once.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.stores.nova import RequestContext, exception, models
from dblayer.stores.nova.context import get_admin_context
from tests.concurrency import run_processes

PROJECT = "race-project"
SETTLE_PROJECT = "settle-project"
PROJECT_LIMIT = 100
USER_LIMIT = 40
PROCESSES = 4
SHARED = 20  # reservations of SETTLE_PROJECT all processes race to settle
MAX_STEPS = 120
PROJECT_QUOTAS = {"instances": PROJECT_LIMIT, "fixed_ips": PROJECT_LIMIT}
USER_QUOTAS = {"instances": USER_LIMIT, "fixed_ips": PROJECT_LIMIT}


def _later(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=seconds)


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def _check_usage(admin: Any, user_id: str) -> list[str]:
    """What is wrong with the project's and the user's usage as read now (nothing: [])."""
    problems = []
    project = nova.quota_usage_get_all_by_project(admin, PROJECT)
    for resource in ("instances", "fixed_ips"):
        used = project.get(resource, {"in_use": 0, "reserved": 0})
        if used["in_use"] + used["reserved"] > PROJECT_LIMIT or used["reserved"] < 0:
            problems.append(f"project {resource}: {used}")
    mine = nova.quota_usage_get(admin, PROJECT, "instances", user_id)
    if mine.in_use + mine.reserved > USER_LIMIT or mine.reserved < 0:
        problems.append(f"{user_id} instances: {mine.in_use} + {mine.reserved}")
    return problems


def _settle_shared(index: int, shared: list[str], rng: random.Random) -> None:
    owner = RequestContext("settler", SETTLE_PROJECT)
    order = list(shared)
    rng.shuffle(order)
    for reservation in order:
        if index in (0, 1):
            nova.reservation_commit(owner, [reservation])
        elif index == 2:
            nova.reservation_rollback(owner, [reservation])
        else:
            nova.reservation_expire(get_admin_context())


def _work(_db: Any, index: int, shared: list[str]) -> dict[str, Any]:
    """Race to settle ``shared``, then reserve and settle as user ``index`` until refused."""
    rng = random.Random(index)
    _settle_shared(index, shared, rng)
    ctx = RequestContext(f"user{index}", PROJECT)
    admin = get_admin_context()
    committed = {"instances": 0, "fixed_ips": 0}
    refused, problems, outcomes = 0, [], {"commit": 0, "rollback": 0, "expire": 0, "over": 0}
    for _ in range(MAX_STEPS):
        delta = rng.choice((1, 2, 3, 4, 5))
        deltas = {"instances": delta, "fixed_ips": delta}
        roll = rng.random()
        expire = _later(-1) if roll < 0.15 else _later(3600)
        try:
            reservations = nova.quota_reserve(
                ctx, None, PROJECT_QUOTAS, USER_QUOTAS, deltas, expire, 0, 0
            )
        except exception.OverQuota as e:
            outcomes["over"] += 1
            if delta == 1:
                refused += 1
                if refused == 3:
                    break
            for resource, limit in USER_QUOTAS.items():
                used = e.kwargs["usages"][resource]
                if used["in_use"] + used["reserved"] > limit:
                    problems.append(f"OverQuota reported {resource} {used}")
            continue
        if roll < 0.15:
            # Already expired: reservation_expire returns it; a commit after that is void.
            nova.reservation_expire(admin)
            nova.reservation_commit(ctx, reservations)
            outcomes["expire"] += 1
        elif roll < 0.35:
            nova.reservation_rollback(ctx, reservations)
            outcomes["rollback"] += 1
        else:
            nova.reservation_commit(ctx, reservations)
            nova.reservation_commit(ctx, reservations)  # a second commit changes nothing
            for resource in committed:
                committed[resource] += delta
            outcomes["commit"] += 1
        problems += _check_usage(admin, ctx.user_id)
    return {"committed": committed, "problems": problems, "outcomes": outcomes}


def _usage_rows(db: Any, project: str) -> list[Any]:
    u = models.QuotaUsage.__table__
    with db.transaction() as conn:
        return conn.execute(
            sa.select(u.c.user_id, u.c.resource, u.c.in_use, u.c.reserved).where(
                u.c.project_id == project, u.c.deleted == 0
            )
        ).all()


def test_racing_reservations_stay_within_quota(nova_url):
    owner = RequestContext("settler", SETTLE_PROJECT)
    limits = {"instances": 1000}
    shared = []
    for i in range(SHARED):
        # Half of them already expired, so reservation_expire races the commits too.
        expire = _later(-1 if i % 2 else 3600)
        shared += nova.quota_reserve(owner, None, limits, limits, {"instances": 1}, expire, 0, 0)

    results = run_processes(
        partial(_nova_on, nova_url), _work, [(i, shared) for i in range(PROCESSES)]
    )

    db = nova.get_database()
    for result in results:
        assert result["problems"] == []
    assert sum(r["outcomes"]["commit"] for r in results) > 0
    # Every shared reservation settled exactly once: nothing left reserved, none counted twice.
    (settled,) = [r for r in _usage_rows(db, SETTLE_PROJECT) if r.resource == "instances"]
    assert settled.reserved == 0
    assert 0 <= settled.in_use <= SHARED

    rows = _usage_rows(db, PROJECT)
    keys = [(r.user_id, r.resource) for r in rows]
    # The instances sync also counts cores and ram: their rows were made with the first.
    per_user = [(f"user{i}", r) for i in range(PROCESSES) for r in ("instances", "cores", "ram")]
    assert sorted(keys, key=str) == sorted([*per_user, (None, "fixed_ips")], key=str)
    total = {"instances": 0, "fixed_ips": 0}
    for row in rows:
        assert row.reserved == 0
        if row.resource in ("cores", "ram"):
            assert row.in_use == 0
            continue
        if row.resource == "instances":
            index = int(row.user_id.removeprefix("user"))
            assert row.in_use == results[index]["committed"]["instances"] <= USER_LIMIT
        total[row.resource] += row.in_use
    for resource in total:
        assert total[resource] == sum(r["committed"][resource] for r in results)
        assert total[resource] <= PROJECT_LIMIT

    # What is left can be reserved, and not one more.
    admin = get_admin_context()
    room = PROJECT_LIMIT - total["instances"]
    roomy = {"instances": PROJECT_LIMIT, "fixed_ips": PROJECT_LIMIT}
    last = RequestContext("late-user", PROJECT)
    if room:
        nova.quota_reserve(last, None, PROJECT_QUOTAS, roomy, {"instances": room}, _later(60), 0, 0)
    try:
        nova.quota_reserve(last, None, PROJECT_QUOTAS, roomy, {"instances": 1}, _later(60), 0, 0)
    except exception.OverQuota as e:
        assert e.kwargs["overs"] == ["instances"]
    else:
        raise AssertionError("a reservation past the project's limit was accepted")
    assert nova.quota_usage_get_all_by_project(admin, PROJECT)["instances"] == {
        "in_use": total["instances"],
        "reserved": room,
    }

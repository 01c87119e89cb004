"""4 processes racing security_group_ensure_default (SQLite file, PostgreSQL, MariaDB): each
new project ends with exactly one default group, one copy of the default rules and one
quota usage row counting it (the winner's user), and every caller gets that group."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.stores.nova import RequestContext, get_admin_context, models
from tests.concurrency import run_processes

PROCESSES = 4
PROJECTS = [f"race-project-{i}" for i in range(3)]


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def _ensure_defaults(_db: Any, user: str) -> list[tuple[int, int]]:
    """security_group_ensure_default for each project in turn, as ``user``: (group id,
    number of rules the returned group holds) per project."""
    found = []
    for project in PROJECTS:
        group = nova.security_group_ensure_default(RequestContext(user, project))
        assert (group.name, group.project_id) == ("default", project)
        found.append((group.id, len(group.rules)))
    return found


def test_racing_ensure_default_makes_one_group(nova_url):
    admin = get_admin_context()
    nova.security_group_default_rule_create(admin, {"protocol": "tcp", "cidr": "0.0.0.0/0"})
    nova.security_group_default_rule_create(admin, {"protocol": "icmp", "cidr": "::/0"})
    users = [(f"user-{i}",) for i in range(PROCESSES)]

    results = run_processes(partial(_nova_on, nova_url), _ensure_defaults, users)

    groups, rules, usages = _rows()
    for p, project in enumerate(PROJECTS):
        # Every caller got the one group, with its two rules.
        ((group_id, rule_count),) = {result[p] for result in results}
        assert rule_count == 2
        assert groups[project] == [group_id]
        assert sorted(rules[group_id]) == ["icmp", "tcp"]
        # Counted once, in the quota usage of one of the racers.
        ((user, in_use, reserved),) = usages[project]
        assert user in {u for (u,) in users} and (in_use, reserved) == (1, 0)


def _rows() -> tuple[dict[str, list[int]], dict[int, list[str]], dict[str, list[tuple]]]:
    """(live group ids by project, rule protocols by group id, usage rows by project)."""
    groups: dict[str, list[int]] = {p: [] for p in PROJECTS}
    rules: dict[int, list[str]] = {}
    usages: dict[str, list[tuple]] = {p: [] for p in PROJECTS}
    group, rule, usage = models.SecurityGroup, models.SecurityGroupIngressRule, models.QuotaUsage
    with nova.get_database().transaction() as conn:
        for row in conn.execute(sa.select(group.id, group.project_id, group.deleted)):
            assert row.deleted == 0
            groups[row.project_id].append(row.id)
        for row in conn.execute(sa.select(rule.parent_group_id, rule.protocol)):
            rules.setdefault(row.parent_group_id, []).append(row.protocol)
        for row in conn.execute(
            sa.select(usage.project_id, usage.user_id, usage.in_use, usage.reserved, usage.resource)
        ):
            assert row.resource == "security_groups"
            usages[row.project_id].append((row.user_id, row.in_use, row.reserved))
    return groups, rules, usages

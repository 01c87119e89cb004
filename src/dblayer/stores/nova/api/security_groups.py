"""nova DB API: security groups.

For now the one call every instance creation makes, ``security_group_ensure_default``,
and the private lookups ``instance_create`` uses; the rest of nova's security group
calls join this module later (add each to ``__all__``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from dblayer.core import DuplicateEntry, PreparedQuery, live, utcnow

from .. import exception
from ..models import (
    QuotaUsage,
    SecurityGroup,
    SecurityGroupIngressDefaultRule,
    SecurityGroupIngressRule,
)
from ._base import api, connection, execute, first, session

__all__ = ["security_group_ensure_default"]

DEFAULT_GROUP = "default"


def _project_is(column: Any, project_id: str | None) -> sa.ColumnElement[bool]:
    # An admin context has no project: its groups are the ones of no project.
    return column.is_(None) if project_id is None else column == project_id


@functools.cache
def _default_group_query(no_project: bool) -> PreparedQuery:
    groups = SecurityGroup.__table__
    project = groups.c.project_id
    return PreparedQuery(
        sa.select(groups.c.id)
        .where(
            groups.c.name == DEFAULT_GROUP,
            project.is_(None) if no_project else project == sa.bindparam("project_id"),
            live(groups),
        )
        .order_by(groups.c.id)
        .limit(1)
    )


def _default_group_id(project_id: str | None) -> int | None:
    conn = connection()
    if project_id is None:
        row = _default_group_query(True).first(conn)
    else:
        row = _default_group_query(False).first(conn, project_id=project_id)
    return None if row is None else row["id"]


def _count_group_in_quota(project_id: str | None, user_id: str | None) -> None:
    """Add one to the (project, user) 'security_groups' quota usage, creating the row."""
    usages = QuotaUsage.__table__
    where = (
        _project_is(usages.c.project_id, project_id),
        _project_is(usages.c.user_id, user_id),
        usages.c.resource == "security_groups",
        live(usages),
    )
    bumped = execute(sa.update(usages).where(*where).values(in_use=usages.c.in_use + 1))
    if bumped.rowcount == 0:
        execute(
            sa.insert(usages).values(
                project_id=project_id,
                user_id=user_id,
                resource="security_groups",
                in_use=1,
                reserved=0,
                until_refresh=None,
                # nova stamps a new usage row: quota refreshes go by its age.
                updated_at=utcnow(),
            )
        )


def _copy_default_rules(group_id: int) -> None:
    """Give the group a copy of every live default rule."""
    defaults = SecurityGroupIngressDefaultRule.__table__
    rows = execute(
        sa.select(defaults.c.protocol, defaults.c.from_port, defaults.c.to_port, defaults.c.cidr)
        .where(live(defaults))
        .order_by(defaults.c.id)
    ).all()
    if rows:
        execute(
            sa.insert(SecurityGroupIngressRule.__table__),
            [
                {
                    "parent_group_id": group_id,
                    "protocol": r.protocol,
                    "from_port": r.from_port,
                    "to_port": r.to_port,
                    "cidr": r.cidr,
                }
                for r in rows
            ],
        )


def ensure_default_group(context: Any) -> int:
    """The id of the context project's live 'default' group, created (with its quota
    usage and a copy of the default rules) when missing.

    A creator that loses a race to another one (the unique key on project, name and
    deleted) takes the winner's group instead of failing.
    """
    project_id, user_id = context.project_id, context.user_id
    group_id = _default_group_id(project_id)
    if group_id is not None:
        return group_id
    values = {
        "name": DEFAULT_GROUP,
        "description": DEFAULT_GROUP,
        "user_id": user_id,
        "project_id": project_id,
    }
    try:
        # A savepoint, so that a lost race leaves the transaction usable (PostgreSQL).
        with session().begin_nested():
            inserted = execute(sa.insert(SecurityGroup.__table__).values(values))
    except DuplicateEntry:
        group_id = _default_group_id(project_id)
        if group_id is None:
            raise exception.SecurityGroupExists(
                project_id=project_id, security_group_name=DEFAULT_GROUP
            ) from None
        return group_id
    group_id = inserted.inserted_primary_key[0]
    _count_group_in_quota(project_id, user_id)
    _copy_default_rules(group_id)
    return group_id


def group_ids_by_names(context: Any, project_id: str | None, names: Sequence[str]) -> list[int]:
    """The ids of the live groups named ``names`` in ``project_id``, in the order given
    (each once); SecurityGroupNotFoundForProject names the first that is missing."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    rows = execute(
        sa.select(SecurityGroup.id, SecurityGroup.name).where(
            _project_is(SecurityGroup.project_id, project_id),
            SecurityGroup.name.in_(wanted),
            live(SecurityGroup),
        )
    ).all()
    found = {row.name: row.id for row in rows}
    for name in wanted:
        if name not in found:
            raise exception.SecurityGroupNotFoundForProject(
                project_id=project_id, security_group_id=name
            )
    return [found[name] for name in wanted]


@api()
def security_group_ensure_default(context: Any) -> Any:
    """Ensure the context project's 'default' security group exists; return it (with its rules)."""
    group_id = ensure_default_group(context)
    return first(
        sa.select(SecurityGroup)
        .where(SecurityGroup.id == group_id)
        .options(selectinload(SecurityGroup.rules))
        .execution_options(populate_existing=True)
    )

"""nova DB API: security groups, their rules, the default rules and instance membership
(notes §2.20, §3.6).

Groups come back with their live ``rules``, each rule with its ``grantee_group`` (the
group it admits traffic from, or None), as nova's group reads joined them;
``instances`` is loaded where nova loaded it (``security_group_get_by_name`` always,
``security_group_get`` / ``security_group_update`` when ``columns_to_join`` names it)
and is an empty list otherwise. Rules come back with ``parent_group`` and
``grantee_group``, plus what ``columns_to_join`` names. Everything returned is loaded
before the call ends: nothing lazy-loads afterwards.

Reads use the context's ``read_deleted`` unless nova forced 'no' (by name, by project,
by instance, rule counts, ``in_use``). Only ``security_group_get`` is limited to a user
context's project (another project's group is not found), as in nova; the other calls
leave project checks to nova's API layer, as nova's DB layer did.

Destroys soft-delete the rows the context's ``read_deleted`` shows that are still live
(so 'only' changes nothing); ``updated_at`` is kept.

The project's 'default' group is made once: ``ensure_default_group`` looks, then inserts
under the unique key (project, name, deleted), and a creator that loses the race to a
concurrent one takes the winner's group.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from dblayer.core import DuplicateEntry, InvalidQuery, InvalidValue, PreparedQuery, live, utcnow

from .. import exception
from ..models import (
    Instance,
    QuotaUsage,
    SecurityGroup,
    SecurityGroupIngressDefaultRule,
    SecurityGroupIngressRule,
    SecurityGroupInstanceAssociation,
)
from ._base import (
    ADMIN,
    USER,
    api,
    connection,
    create,
    execute,
    fetch_all,
    first,
    model_query,
    read_deleted_clause,
    savepoint,
    session,
    soft_delete_where,
)
from ._checks import clean_values, key_value, require_instance

__all__ = [
    "instance_add_security_group",
    "instance_remove_security_group",
    "security_group_create",
    "security_group_default_rule_create",
    "security_group_default_rule_destroy",
    "security_group_default_rule_get",
    "security_group_default_rule_list",
    "security_group_destroy",
    "security_group_ensure_default",
    "security_group_get",
    "security_group_get_all",
    "security_group_get_by_instance",
    "security_group_get_by_name",
    "security_group_get_by_project",
    "security_group_in_use",
    "security_group_rule_count_by_group",
    "security_group_rule_create",
    "security_group_rule_destroy",
    "security_group_rule_get",
    "security_group_rule_get_by_security_group",
    "security_group_rule_get_by_security_group_grantee",
    "security_group_update",
]

DEFAULT_GROUP = "default"

Group = SecurityGroup
Rule = SecurityGroupIngressRule
DefaultRule = SecurityGroupIngressDefaultRule
Link = SecurityGroupInstanceAssociation

# What every group read loads: the live rules, each with the group it grants from.
_GROUP_RULES = selectinload(Group.rules).selectinload(Rule.grantee_group)
# What every rule read loads: the rule's own group and the group it grants from.
_RULE_GROUPS = (selectinload(Rule.parent_group), selectinload(Rule.grantee_group))
# security_group_rule_get_by_security_group's joins when the caller names none (nova's).
_RULE_DEFAULT_JOINS = (
    "grantee_group.instances.system_metadata",
    "grantee_group.instances.info_cache",
)


def _project_is(column: Any, project_id: str | None) -> sa.ColumnElement[bool]:
    # An admin context has no project: its groups are the ones of no project.
    return column.is_(None) if project_id is None else column == project_id


# -- loading what callers name (columns_to_join) ---------------------------------------------


def _names(columns_to_join: Any) -> list[str]:
    """``columns_to_join`` as a list of strings (None: none); InvalidQuery otherwise."""
    if columns_to_join is None:
        return []
    if isinstance(columns_to_join, str | bytes) or not isinstance(columns_to_join, Iterable):
        raise InvalidQuery(
            f"columns_to_join must be a list of relationship names, got {columns_to_join!r}"
        )
    names = list(columns_to_join)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise InvalidQuery(f"columns_to_join must hold strings, got {bad!r}")
    return names


# Bounded: callers name the paths, and relationship cycles make endlessly many valid ones.
@functools.lru_cache(maxsize=256)
def _path_option(model: Any, path: str) -> Any:
    """A loader option for the dotted relationship ``path`` from ``model``
    ('grantee_group.instances.info_cache'); InvalidQuery naming what may follow where a
    step is not a relationship."""
    option = None
    current = model
    for step in path.split("."):
        relationships = sa.inspect(current).relationships
        if step.startswith("_") or step not in relationships:
            allowed = ", ".join(sorted(r.key for r in relationships if not r.key.startswith("_")))
            raise InvalidQuery(
                f"columns_to_join: {path!r}: {current.__name__} has no relationship {step!r}; "
                f"it has: {allowed}"
            )
        relationship = relationships[step]
        attribute = relationship.class_attribute
        option = selectinload(attribute) if option is None else option.selectinload(attribute)
        current = relationship.mapper.class_
    return option


def _join_options(model: Any, paths: Iterable[str]) -> list[Any]:
    return [_path_option(model, path) for path in dict.fromkeys(paths)]


# -- values ----------------------------------------------------------------------------------


def _id(model: Any, value: Any, what: str) -> int:
    """An id argument checked: an integer (InvalidValue otherwise; None included)."""
    if value is None:
        raise InvalidValue(f"{what} must be an integer id, not None")
    return key_value(model, "id", value)


def _require_group(group_id: Any) -> None:
    """SecurityGroupNotFound unless a security group row (live or deleted) has ``group_id``.

    Checked before inserting a row that refers to it, so a bad id is nova's error on every
    backend instead of a foreign-key violation (which aborts a PostgreSQL transaction).
    """
    if group_id is None:
        return
    if execute(sa.select(Group.id).where(Group.id == group_id)).first() is None:
        raise exception.SecurityGroupNotFound(security_group_id=group_id)


def _visible_soft_delete(context: Any, model: Any, *where: sa.ColumnElement[bool]) -> int:
    """Soft-delete the live rows matching ``where`` that the context's read_deleted shows;
    return how many rows it shows (nova's count: 'yes' counts deleted rows too, and
    'only' shows no live row, so it deletes nothing)."""
    read_deleted = context.read_deleted
    if read_deleted == "no":
        return soft_delete_where(model, *where)
    visible = read_deleted_clause(model, read_deleted)
    stmt = sa.select(sa.func.count()).select_from(model.__table__).where(*where)
    if visible is not None:
        stmt = stmt.where(visible)
    shown = execute(stmt).scalar_one()
    if read_deleted == "yes":
        soft_delete_where(model, *where)
    return int(shown)


# -- the default group (also used by instance_create) ----------------------------------------


@functools.cache
def _default_group_query(no_project: bool) -> PreparedQuery:
    groups = Group.__table__
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
    defaults = DefaultRule.__table__
    rows = execute(
        sa.select(defaults.c.protocol, defaults.c.from_port, defaults.c.to_port, defaults.c.cidr)
        .where(live(defaults))
        .order_by(defaults.c.id)
    ).all()
    if rows:
        execute(
            sa.insert(Rule.__table__),
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
        # The loser's INSERT waits for the winner's commit on the unique key; its next
        # statement (READ COMMITTED on PostgreSQL and MariaDB) then sees the winner's row.
        with savepoint():
            inserted = execute(sa.insert(Group.__table__).values(values))
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
        sa.select(Group.id, Group.name).where(
            _project_is(Group.project_id, project_id),
            Group.name.in_(wanted),
            live(Group),
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
    return first(sa.select(Group).where(Group.id == group_id).options(_GROUP_RULES))


# -- groups ----------------------------------------------------------------------------------


def _read_group(group_id: int, options: Sequence[Any] = ()) -> Any:
    """The group ``group_id`` (whatever its state) with its rules and ``options``, read
    afresh even if an enclosing call's Session holds it already."""
    held = session().identity_map.get(sa.inspect(Group).identity_key_from_primary_key((group_id,)))
    if held is not None:
        session().expire(held)
    stmt = sa.select(Group).where(Group.id == group_id)
    return first(stmt.options(_GROUP_RULES, *options))


@api(USER)
def security_group_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a new security group."""
    columns = clean_values(Group, values)
    try:
        # A savepoint: a duplicate leaves an enclosing transaction usable (PostgreSQL).
        with savepoint():
            # A new group has no rules and no instances: nothing to load.
            return create(Group, columns)
    except DuplicateEntry:
        raise exception.SecurityGroupExists(
            project_id=columns.get("project_id"), security_group_name=columns.get("name")
        ) from None


@api(USER)
def security_group_get(
    context: Any, security_group_id: int, columns_to_join: list[str] | None = None
) -> Any:
    """Get security group by its id."""
    group_id = _id(Group, security_group_id, "security_group_id")
    # nova honoured only the names of the group's instances (and what hangs off them).
    paths = [n for n in _names(columns_to_join) if n.startswith("instances")]
    stmt = model_query(context, Group, project_only=True).where(Group.id == group_id)
    stmt = stmt.options(_GROUP_RULES, *_join_options(Group, paths))
    group = first(stmt)
    if group is None:
        raise exception.SecurityGroupNotFound(security_group_id=security_group_id)
    return group


@api(USER)
def security_group_get_all(context: Any) -> list[Any]:
    """Get all security groups."""
    stmt = model_query(context, Group).order_by(Group.id)
    return fetch_all(stmt.options(_GROUP_RULES))


@api(USER)
def security_group_get_by_instance(context: Any, instance_uuid: str) -> list[Any]:
    """Get security groups to which the instance is assigned."""
    instance_uuid = key_value(Link, "instance_uuid", instance_uuid)
    # Live links to the live instance; each group once, however often it is linked.
    linked = (
        sa.select(Link.security_group_id)
        .join(Instance, Instance.uuid == Link.instance_uuid)
        .where(Link.instance_uuid == instance_uuid, live(Link), live(Instance))
    )
    stmt = (
        model_query(context, Group, read_deleted="no")
        .where(Group.id.in_(linked))
        .order_by(Group.id)
    )
    return fetch_all(stmt.options(_GROUP_RULES))


@api(USER)
def security_group_get_by_name(
    context: Any, project_id: str, group_name: str, columns_to_join: list[str] | None = None
) -> Any:
    """Returns a security group with the specified name from a project."""
    # nova's public call never passed columns_to_join on: its instances and rules always.
    project_id = key_value(Group, "project_id", project_id)
    group_name = key_value(Group, "name", group_name)
    stmt = (
        model_query(context, Group, read_deleted="no")
        .where(_project_is(Group.project_id, project_id), Group.name == group_name)
        .order_by(Group.id)
    )
    group = first(stmt.options(_GROUP_RULES, selectinload(Group.instances)))
    if group is None:
        raise exception.SecurityGroupNotFoundForProject(
            project_id=project_id, security_group_id=group_name
        )
    return group


@api(USER)
def security_group_get_by_project(context: Any, project_id: str) -> list[Any]:
    """Get all security groups belonging to a project."""
    project_id = key_value(Group, "project_id", project_id)
    stmt = (
        model_query(context, Group, read_deleted="no")
        .where(_project_is(Group.project_id, project_id))
        .order_by(Group.id)
    )
    return fetch_all(stmt.options(_GROUP_RULES))


@api(USER)
def security_group_in_use(context: Any, group_id: int) -> bool:
    """Indicates if a security group is currently in use."""
    group_id = _id(Group, group_id, "group_id")
    in_use = (
        sa.select(Link.id)
        .join(Instance, Instance.uuid == Link.instance_uuid)
        .where(Link.security_group_id == group_id, live(Link), live(Instance))
        .limit(1)
    )
    return execute(in_use).first() is not None


@api(USER)
def security_group_update(
    context: Any,
    security_group_id: int,
    values: dict[str, Any],
    columns_to_join: list[str] | None = None,
) -> Any:
    """Update a security group."""
    group_id = _id(Group, security_group_id, "security_group_id")
    changes = clean_values(Group, values)
    options = _join_options(Group, _names(columns_to_join))
    groups = Group.__table__
    current = execute(
        model_query(context, Group, Group.project_id, Group.name).where(Group.id == group_id)
    ).first()
    if current is None:
        raise exception.SecurityGroupNotFound(security_group_id=security_group_id)
    if changes:
        try:
            with savepoint():
                # updated_at comes from the column's onupdate.
                execute(sa.update(groups).where(groups.c.id == group_id).values(changes))
        except DuplicateEntry:
            raise exception.SecurityGroupExists(
                project_id=changes.get("project_id", current.project_id),
                security_group_name=changes.get("name", current.name),
            ) from None
        group_id = changes.get("id", group_id)
    return _read_group(group_id, options)


@api(USER)
def security_group_destroy(context: Any, security_group_id: int) -> None:
    """Deletes a security group."""
    group_id = _id(Group, security_group_id, "security_group_id")
    # The group, its instances' links, the rules in it and the rules granting to it.
    _visible_soft_delete(context, Group, Group.id == group_id)
    _visible_soft_delete(context, Link, Link.security_group_id == group_id)
    _visible_soft_delete(context, Rule, Rule.group_id == group_id)
    _visible_soft_delete(context, Rule, Rule.parent_group_id == group_id)


# -- instance membership ---------------------------------------------------------------------


@api()
def instance_add_security_group(context: Any, instance_id: str, security_group_id: int) -> None:
    """Associate the given security group with the given instance."""
    if instance_id is None:
        raise InvalidValue("instance_id must be an instance uuid, not None")
    instance_uuid = key_value(Link, "instance_uuid", instance_id)
    group_id = _id(Group, security_group_id, "security_group_id")
    # Clear errors instead of foreign-key violations; no duplicate check (as nova).
    require_instance(instance_uuid)
    _require_group(group_id)
    execute(
        sa.insert(Link.__table__).values(
            instance_uuid=instance_uuid, security_group_id=group_id, deleted=0
        )
    )


@api(USER)
def instance_remove_security_group(context: Any, instance_id: str, security_group_id: int) -> None:
    """Disassociate the given security group from the given instance."""
    instance_uuid = key_value(Link, "instance_uuid", instance_id)
    group_id = _id(Group, security_group_id, "security_group_id")
    _visible_soft_delete(
        context, Link, Link.instance_uuid == instance_uuid, Link.security_group_id == group_id
    )


# -- rules -----------------------------------------------------------------------------------


def _rules(stmt: sa.Select[Any], paths: Iterable[str] = ()) -> Any:
    return stmt.options(*_RULE_GROUPS, *_join_options(Rule, paths))


@api(USER)
def security_group_rule_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a new security group rule."""
    columns = clean_values(Rule, values)
    _require_group(columns.get("parent_group_id"))
    _require_group(columns.get("group_id"))
    # A Core insert: no object of the rule in the Session yet, so the read below loads
    # the rule's groups into a fresh one (objects in the Session keep what they hold).
    rule_id = execute(sa.insert(Rule.__table__).values(columns)).inserted_primary_key[0]
    return first(_rules(sa.select(Rule).where(Rule.id == rule_id)))


@api(USER)
def security_group_rule_get(context: Any, security_group_rule_id: int) -> Any:
    """Gets a security group rule."""
    rule_id = _id(Rule, security_group_rule_id, "security_group_rule_id")
    rule = first(_rules(model_query(context, Rule).where(Rule.id == rule_id)))
    if rule is None:
        raise exception.SecurityGroupNotFoundForRule(rule_id=security_group_rule_id)
    return rule


@api(USER)
def security_group_rule_get_by_security_group(
    context: Any, security_group_id: int, columns_to_join: list[str] | None = None
) -> list[Any]:
    """Get all rules for a given security group."""
    group_id = _id(Group, security_group_id, "security_group_id")
    paths = _RULE_DEFAULT_JOINS if columns_to_join is None else _names(columns_to_join)
    stmt = model_query(context, Rule).where(Rule.parent_group_id == group_id).order_by(Rule.id)
    return fetch_all(_rules(stmt, paths))


@api(USER)
def security_group_rule_get_by_security_group_grantee(
    context: Any, security_group_id: int
) -> list[Any]:
    """Get all rules that grant access to the given security group."""
    group_id = _id(Group, security_group_id, "security_group_id")
    stmt = model_query(context, Rule).where(Rule.group_id == group_id).order_by(Rule.id)
    return fetch_all(_rules(stmt))


@api(USER)
def security_group_rule_destroy(context: Any, security_group_rule_id: int) -> None:
    """Deletes a security group rule."""
    rule_id = _id(Rule, security_group_rule_id, "security_group_rule_id")
    if _visible_soft_delete(context, Rule, Rule.id == rule_id) == 0:
        raise exception.SecurityGroupNotFoundForRule(rule_id=security_group_rule_id)


@api(USER)
def security_group_rule_count_by_group(context: Any, security_group_id: int) -> int:
    """Count rules in a given security group."""
    group_id = _id(Group, security_group_id, "security_group_id")
    count = sa.select(sa.func.count()).where(Rule.parent_group_id == group_id, live(Rule))
    return int(execute(count).scalar_one())


# -- default rules ---------------------------------------------------------------------------


@api(ADMIN)
def security_group_default_rule_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a default security group rule (copied into each new default group)."""
    columns = clean_values(DefaultRule, values)
    # Inserted, then read back: the object holds the CIDR as every later read gives it.
    rule_id = execute(sa.insert(DefaultRule.__table__).values(columns)).inserted_primary_key[0]
    return first(sa.select(DefaultRule).where(DefaultRule.id == rule_id))


@api(ADMIN)
def security_group_default_rule_destroy(context: Any, security_group_rule_default_id: int) -> None:
    """Delete a default security group rule."""
    rule_id = _id(DefaultRule, security_group_rule_default_id, "security_group_rule_default_id")
    if _visible_soft_delete(context, DefaultRule, DefaultRule.id == rule_id) == 0:
        raise exception.SecurityGroupDefaultRuleNotFound(rule_id=security_group_rule_default_id)


@api(USER)
def security_group_default_rule_get(context: Any, security_group_rule_default_id: int) -> Any:
    """Get a default security group rule by its id."""
    rule_id = _id(DefaultRule, security_group_rule_default_id, "security_group_rule_default_id")
    rule = first(model_query(context, DefaultRule).where(DefaultRule.id == rule_id))
    if rule is None:
        raise exception.SecurityGroupDefaultRuleNotFound(rule_id=security_group_rule_default_id)
    return rule


@api(USER)
def security_group_default_rule_list(context: Any) -> list[Any]:
    """Get every default security group rule."""
    return fetch_all(model_query(context, DefaultRule).order_by(DefaultRule.id))

"""nova DB API: instance groups, their policies, metadata and members.

A group is found by its uuid as the context reads (``read_deleted``); its three child
sets hold live rows only. Writes to a group's children lock the group row first, so
two callers adding to one group take turns and never store a policy, member or key
twice. nova made no access checks here; neither does this.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from dblayer.core import DuplicateEntry, InvalidQuery, live

from .. import exception
from ..models import InstanceGroup, InstanceGroupMember, InstanceGroupMetadata, InstanceGroupPolicy
from ._base import (
    api,
    execute,
    fetch_all,
    first,
    flush,
    model_query,
    replace_key_values,
    session,
    soft_delete_where,
)
from ._checks import clean_value, clean_values

__all__ = [
    "instance_group_create",
    "instance_group_delete",
    "instance_group_get",
    "instance_group_get_all",
    "instance_group_get_all_by_project_id",
    "instance_group_member_delete",
    "instance_group_members_add",
    "instance_group_members_get",
    "instance_group_metadata_add",
    "instance_group_metadata_delete",
    "instance_group_metadata_get",
    "instance_group_policies_add",
    "instance_group_policies_get",
    "instance_group_policy_delete",
    "instance_group_update",
]

_CHILDREN = (
    selectinload(InstanceGroup._policies),
    selectinload(InstanceGroup._metadata),
    selectinload(InstanceGroup._members),
)
# The keys of instance_group_update's values that replace a child set instead of a column.
_SETS = ("policies", "metadata", "members")


def _groups(context: Any) -> sa.Select[Any]:
    return model_query(context, InstanceGroup).options(*_CHILDREN).order_by(InstanceGroup.id)


def _group(context: Any, group_uuid: Any) -> Any:
    """The group with its children, as ``context`` reads; InstanceGroupNotFound."""
    if not isinstance(group_uuid, str):
        raise exception.InstanceGroupNotFound(group_uuid=group_uuid)
    group = first(_groups(context).where(InstanceGroup.uuid == group_uuid))
    if group is None:
        raise exception.InstanceGroupNotFound(group_uuid=group_uuid)
    return group


def _group_id(context: Any, group_uuid: Any) -> int:
    """The id of the group, its row locked until the call ends; InstanceGroupNotFound."""
    if not isinstance(group_uuid, str):
        raise exception.InstanceGroupNotFound(group_uuid=group_uuid)
    stmt = model_query(context, InstanceGroup, InstanceGroup.id, base_model=InstanceGroup)
    row = execute(stmt.where(InstanceGroup.uuid == group_uuid).limit(1).with_for_update()).first()
    if row is None:
        raise exception.InstanceGroupNotFound(group_uuid=group_uuid)
    return row.id


def _names(what: str, model: Any, column: str, values: Any) -> list[str]:
    """``values`` (a list of strings) checked against ``model.column``, duplicates dropped."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InvalidQuery(f"{what} must be a list of strings, got {values!r}")
    return list(dict.fromkeys(clean_value(model, column, v) for v in values))


def _pairs(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, Mapping):
        raise InvalidQuery(f"metadata must be a dict of key -> value, got {metadata!r}")
    return {
        clean_value(InstanceGroupMetadata, "key", k): clean_value(InstanceGroupMetadata, "value", v)
        for k, v in metadata.items()
    }


def _set_names(model: Any, column: str, group_id: int, names: list[str], set_delete: bool) -> None:
    """Add the ``names`` not yet live in the group's ``model`` rows; with ``set_delete``
    soft-delete the live ones not among them first."""
    table = model.__table__
    rows = execute(
        sa.select(table.c.id, table.c[column]).where(table.c.group_id == group_id, live(table))
    ).all()
    if set_delete:
        doomed = [r.id for r in rows if r[1] not in names]
        if doomed:
            soft_delete_where(model, table.c.id.in_(doomed))
    have = {r[1] for r in rows}
    new_rows = [{"group_id": group_id, column: name} for name in names if name not in have]
    if new_rows:
        execute(sa.insert(table), new_rows)


def _set_policies(group_id: int, policies: list[str], set_delete: bool) -> None:
    _set_names(InstanceGroupPolicy, "policy", group_id, policies, set_delete)


def _set_members(group_id: int, members: list[str], set_delete: bool) -> None:
    _set_names(InstanceGroupMember, "instance_id", group_id, members, set_delete)


def _set_metadata(group_id: int, metadata: dict[str, Any], set_delete: bool) -> None:
    replace_key_values(InstanceGroupMetadata, "group_id", group_id, metadata, delete=set_delete)


@api()
def instance_group_create(
    context: Any,
    values: dict[str, Any],
    policies: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    members: list[str] | None = None,
) -> Any:
    """Create a group (a uuid is generated unless given) with its policies, metadata and
    members, in one transaction; InstanceGroupIdExists when a live group has the uuid."""
    columns = clean_values(InstanceGroup, values)
    if not columns.get("uuid"):
        columns["uuid"] = str(uuid_module.uuid4())
    policy_names = _names("policies", InstanceGroupPolicy, "policy", policies or [])
    member_ids = _names("members", InstanceGroupMember, "instance_id", members or [])
    pairs = _pairs(metadata or {})
    group = InstanceGroup(**columns)
    session().add(group)
    try:
        flush()
    except DuplicateEntry:
        raise exception.InstanceGroupIdExists(group_uuid=columns["uuid"]) from None
    _set_policies(group.id, policy_names, False)
    _set_metadata(group.id, pairs, False)
    _set_members(group.id, member_ids, False)
    return _group(context, columns["uuid"])


@api()
def instance_group_get(context: Any, group_uuid: str) -> Any:
    """The group with ``group_uuid``, its policies, metadata and members loaded."""
    return _group(context, group_uuid)


@api()
def instance_group_get_all(context: Any) -> list[Any]:
    """Every group, with its policies, metadata and members."""
    return fetch_all(_groups(context))


@api()
def instance_group_get_all_by_project_id(context: Any, project_id: str) -> list[Any]:
    """The groups of ``project_id``, with their policies, metadata and members."""
    project_id = clean_value(InstanceGroup, "project_id", project_id, lookup=True)
    return fetch_all(_groups(context).where(InstanceGroup.project_id == project_id))


@api()
def instance_group_update(context: Any, group_uuid: str, values: dict[str, Any]) -> None:
    """Set ``values`` on the group; 'policies', 'metadata' and 'members' replace those sets."""
    if not isinstance(values, Mapping):
        raise InvalidQuery(f"values must be a dict, got {values!r}")
    columns = clean_values(InstanceGroup, {k: v for k, v in values.items() if k not in _SETS})
    policy_names = member_ids = pairs = None
    if values.get("policies") is not None:
        policy_names = _names("policies", InstanceGroupPolicy, "policy", values["policies"])
    if values.get("members") is not None:
        member_ids = _names("members", InstanceGroupMember, "instance_id", values["members"])
    if values.get("metadata") is not None:
        pairs = _pairs(values["metadata"])
    group_id = _group_id(context, group_uuid)
    if columns:
        table = InstanceGroup.__table__
        try:
            execute(sa.update(table).where(table.c.id == group_id).values(columns))
        except DuplicateEntry:
            raise exception.InstanceGroupIdExists(group_uuid=columns.get("uuid")) from None
    if policy_names is not None:
        _set_policies(group_id, policy_names, True)
    if pairs is not None:
        _set_metadata(group_id, pairs, True)
    if member_ids is not None:
        _set_members(group_id, member_ids, True)


@api()
def instance_group_delete(context: Any, group_uuid: str) -> None:
    """Soft-delete the group and its policies, metadata and members."""
    group_id = _group_id(context, group_uuid)
    soft_delete_where(InstanceGroup, InstanceGroup.__table__.c.id == group_id)
    for model in (InstanceGroupPolicy, InstanceGroupMetadata, InstanceGroupMember):
        soft_delete_where(model, model.__table__.c.group_id == group_id)


def _delete_one(context: Any, group_uuid: Any, model: Any, column: str, value: Any) -> int:
    group_id = _group_id(context, group_uuid)
    if not isinstance(value, str):
        return 0
    table = model.__table__
    return soft_delete_where(model, table.c.group_id == group_id, table.c[column] == value)


@api()
def instance_group_members_add(
    context: Any, group_uuid: str, members: list[str], set_delete: bool = False
) -> list[str]:
    """Add the instance ids not yet members (``set_delete``: make them the only members)."""
    member_ids = _names("members", InstanceGroupMember, "instance_id", members)
    _set_members(_group_id(context, group_uuid), member_ids, bool(set_delete))
    return members


@api()
def instance_group_members_get(context: Any, group_uuid: str) -> list[str]:
    """The instance ids of the group's members."""
    return _group(context, group_uuid).members


@api()
def instance_group_member_delete(context: Any, group_uuid: str, instance_id: str) -> None:
    """Remove one member; InstanceGroupMemberNotFound when it is not one."""
    if not _delete_one(context, group_uuid, InstanceGroupMember, "instance_id", instance_id):
        raise exception.InstanceGroupMemberNotFound(group_uuid=group_uuid, instance_id=instance_id)


@api()
def instance_group_metadata_add(
    context: Any, group_uuid: str, metadata: dict[str, Any], set_delete: bool = False
) -> dict[str, Any]:
    """Add or update metadata keys (``set_delete``: make them the only keys)."""
    pairs = _pairs(metadata)
    _set_metadata(_group_id(context, group_uuid), pairs, bool(set_delete))
    return metadata


@api()
def instance_group_metadata_get(context: Any, group_uuid: str) -> dict[str, Any]:
    """The group's metadata as a dict."""
    return _group(context, group_uuid).metadetails


@api()
def instance_group_metadata_delete(context: Any, group_uuid: str, key: str) -> None:
    """Remove one metadata key; InstanceGroupMetadataNotFound when there is none."""
    if not _delete_one(context, group_uuid, InstanceGroupMetadata, "key", key):
        raise exception.InstanceGroupMetadataNotFound(group_uuid=group_uuid, metadata_key=key)


@api()
def instance_group_policies_add(
    context: Any, group_uuid: str, policies: list[str], set_delete: bool = False
) -> list[str]:
    """Add the policies the group lacks (``set_delete``: make them its only policies)."""
    names = _names("policies", InstanceGroupPolicy, "policy", policies)
    _set_policies(_group_id(context, group_uuid), names, bool(set_delete))
    return policies


@api()
def instance_group_policies_get(context: Any, group_uuid: str) -> list[str]:
    """The group's policy names."""
    return _group(context, group_uuid).policies


@api()
def instance_group_policy_delete(context: Any, group_uuid: str, policy: str) -> None:
    """Remove one policy; InstanceGroupPolicyNotFound when the group lacks it."""
    if not _delete_one(context, group_uuid, InstanceGroupPolicy, "policy", policy):
        raise exception.InstanceGroupPolicyNotFound(group_uuid=group_uuid, policy=policy)

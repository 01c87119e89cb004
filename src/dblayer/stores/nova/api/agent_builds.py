"""nova DB API: guest agent builds (notes §3.26). Every call is admin-only.

A build is unique among live rows by ``(hypervisor, os, architecture)``. Lookups see
live rows; update and destroy find the build by id as the context's ``read_deleted``
allows (destroy soft-deletes live rows only).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dblayer.core import DuplicateEntry

from .. import exception
from ..models import AgentBuild
from ._base import ADMIN, api, create, execute, fetch_all, first, model_query, soft_delete_where
from ._checks import clean_values, key_value, require_keys

__all__ = [
    "agent_build_create",
    "agent_build_destroy",
    "agent_build_get_all",
    "agent_build_get_by_triple",
    "agent_build_update",
]

_TRIPLE = ("hypervisor", "os", "architecture")


def _exists(values: Any) -> exception.AgentBuildExists:
    return exception.AgentBuildExists(**{key: values.get(key) for key in _TRIPLE})


@api(ADMIN)
def agent_build_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a new agent build entry."""
    require_keys("agent_build_create", values)
    build = clean_values(AgentBuild, values)
    try:
        return create(AgentBuild, build)
    except DuplicateEntry:
        raise _exists(build) from None


@api(ADMIN)
def agent_build_get_by_triple(context: Any, hypervisor: str, os: str, architecture: str) -> Any:
    """Get agent build by hypervisor/OS/architecture triple."""
    stmt = (
        model_query(context, AgentBuild, read_deleted="no")
        .where(
            AgentBuild.hypervisor == key_value(AgentBuild, "hypervisor", hypervisor),
            AgentBuild.os == key_value(AgentBuild, "os", os),
            AgentBuild.architecture == key_value(AgentBuild, "architecture", architecture),
        )
        .order_by(AgentBuild.id)
    )
    return first(stmt)


@api(ADMIN)
def agent_build_get_all(context: Any, hypervisor: str | None = None) -> list[Any]:
    """Get all agent builds."""
    stmt = model_query(context, AgentBuild, read_deleted="no")
    if hypervisor:  # nova filtered only on a truthy hypervisor
        stmt = stmt.where(AgentBuild.hypervisor == key_value(AgentBuild, "hypervisor", hypervisor))
    return fetch_all(stmt.order_by(AgentBuild.id))


@api(ADMIN)
def agent_build_destroy(context: Any, agent_update_id: int) -> None:
    """Destroy agent build entry."""
    build_id = key_value(AgentBuild, "id", agent_update_id)
    if not soft_delete_where(AgentBuild, AgentBuild.id == build_id):
        raise exception.AgentBuildNotFound(id=agent_update_id)


@api(ADMIN)
def agent_build_update(context: Any, agent_build_id: int, values: dict[str, Any]) -> None:
    """Update agent build entry."""
    require_keys("agent_build_update", values)
    changes = clean_values(AgentBuild, values)
    build_id = key_value(AgentBuild, "id", agent_build_id)
    table = AgentBuild.__table__
    # Read (and lock) the build first: its triple names a duplicate the update would make.
    stmt = (
        model_query(context, AgentBuild, *table.c).where(table.c.id == build_id).with_for_update()
    )
    row = execute(stmt).mappings().first()
    if row is None:
        raise exception.AgentBuildNotFound(id=agent_build_id)
    try:
        execute(sa.update(table).where(table.c.id == build_id).values(changes))
    except DuplicateEntry:
        raise _exists({**row, **changes}) from None

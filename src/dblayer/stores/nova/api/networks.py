"""nova DB API: networks (notes §2.19, §3.13).

Handing out networks is exclusive on every backend. ``network_associate`` takes a free
network with core's claim (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB, so
concurrent callers take different networks instead of queueing; SQLite's writer holds
the database from BEGIN IMMEDIATE): no network ever goes to two projects. As in nova,
the "does the project have a network already?" check sees committed rows only, so two
concurrent first calls for one project may each associate a network with it.
``network_set_host`` locks the network (waiting for a concurrent caller) and sets the
host only while it is empty: every caller learns the one host in effect.

Deviations from nova, on purpose:
- ``network_create_safe`` returns None, instead of raising DuplicateVlan, when a live
  network already has the VLAN (the seed's documented contract); the failed INSERT runs
  in a savepoint, so the rest of the unit of work is unaffected.
- ``network_associate`` refuses ``project_id=None`` (InvalidValue): nova would have
  handed back a free network without associating it.
- ``project_get_networks`` checks that a user context asks about its own project
  (Forbidden otherwise), as nova's other per-project listings do.
- Lists come back ordered by id (nova: whatever order the database chose).
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from dblayer.core import DuplicateEntry, InvalidQuery, InvalidValue, RowObjects, claim, live
from dblayer.core.types import utcnow

from .. import exception
from ..context import authorize_project_context
from ..facade import get_database
from ..models import FixedIp, Instance, Network, VirtualInterface
from ._base import (
    ADMIN,
    USER,
    api,
    create,
    execute,
    fetch_all,
    first,
    model_query,
    savepoint,
    soft_delete_where,
    update,
)
from ._checks import clean_values, key_value

__all__ = [
    "network_associate",
    "network_count_reserved_ips",
    "network_create_safe",
    "network_delete_safe",
    "network_disassociate",
    "network_get",
    "network_get_all",
    "network_get_all_by_host",
    "network_get_all_by_uuids",
    "network_get_associated_fixed_ips",
    "network_get_by_cidr",
    "network_get_by_uuid",
    "network_in_use_on_host",
    "network_set_host",
    "network_update",
    "project_get_networks",
]

_NETWORK = RowObjects(Network)
_NETWORKS = Network.__table__
_FIXED_IPS = FixedIp.__table__


def _network_id(network_id: Any) -> int:
    """``network_id`` checked as an integer id (InvalidValue otherwise)."""
    if network_id is None:
        raise InvalidValue("networks.id takes an integer, not None")
    return key_value(Network, "id", network_id)


def _values(function: str, values: Any) -> dict[str, Any]:
    """A network's column values, checked (unknown keys InvalidQuery, bad values InvalidValue)."""
    if not isinstance(values, Mapping):
        raise InvalidQuery(f"{function}: values must be a dict, got {values!r}")
    return clean_values(Network, values)


def _live_network(context: Any, network_id: int, *, lock: bool = False) -> Any:
    """The live network ``network_id`` (NetworkNotFound), optionally locked FOR UPDATE."""
    stmt = model_query(context, Network, read_deleted="no").where(Network.id == network_id)
    if lock:
        stmt = stmt.with_for_update()
    row = first(stmt)
    if row is None:
        raise exception.NetworkNotFound(network_id=network_id)
    return row


@api(ADMIN)
def network_associate(
    context: Any, project_id: str, network_id: int | None = None, force: bool = False
) -> Any:
    """Associate a free network to a project."""
    if project_id is None:
        raise InvalidValue("network_associate needs a project_id, not None")
    project_id = key_value(Network, "project_id", project_id)
    if network_id is not None:
        network_id = _network_id(network_id)
    if not force:
        # The project's network, if it has one (locked: a concurrent disassociation waits).
        stmt = (
            sa.select(_NETWORKS.c.id)
            .where(_NETWORKS.c.project_id == project_id, live(_NETWORKS))
            .order_by(_NETWORKS.c.id)
            .limit(1)
            .with_for_update()
        )
        found = execute(stmt).first()
        if found is not None:
            return _live_network(context, found.id)
    free = [_NETWORKS.c.project_id.is_(None), live(_NETWORKS)]
    if network_id is not None:
        # One given network: wait for whoever holds it, then see whether it is still free.
        stmt = sa.select(_NETWORKS.c.id).where(_NETWORKS.c.id == network_id, *free)
        if execute(stmt.with_for_update()).first() is None:
            raise exception.NoMoreNetworks()
        execute(
            sa.update(_NETWORKS).where(_NETWORKS.c.id == network_id).values(project_id=project_id)
        )
        return _live_network(context, network_id)
    # Any free network: concurrent callers skip each other's (SKIP LOCKED), never share one.
    rows = claim(
        get_database(),
        _NETWORKS,
        {"project_id": project_id, "updated_at": utcnow()},
        where=free,
        order_by=[_NETWORKS.c.id],
        limit=1,
    )
    if not rows:
        raise exception.NoMoreNetworks()
    return _NETWORK.make(rows[0])


@api(ADMIN)
def network_count_reserved_ips(context: Any, network_id: int) -> int:
    """Return the number of reserved ips in the network."""
    network_id = _network_id(network_id)
    stmt = sa.select(sa.func.count()).where(
        _FIXED_IPS.c.network_id == network_id,
        _FIXED_IPS.c.reserved == sa.true(),
        live(_FIXED_IPS),
    )
    return int(execute(stmt).scalar_one())


@api(ADMIN)
def network_create_safe(context: Any, values: dict[str, Any]) -> Any:
    """Create a network from the values dict; None when a live network has its VLAN."""
    network = _values("network_create_safe", values)
    if network.get("uuid") is None:
        network["uuid"] = str(uuid_module.uuid4())
    try:
        # A savepoint: the failed INSERT must not poison the unit of work (PostgreSQL).
        with savepoint():
            return create(Network, network)
    except DuplicateEntry:
        return None


@api(ADMIN)
def network_delete_safe(context: Any, network_id: int) -> None:
    """Delete network with key network_id (NetworkInUse while it has allocated IPs)."""
    network_id = _network_id(network_id)
    allocated = (
        sa.select(_FIXED_IPS.c.id)
        .where(
            _FIXED_IPS.c.network_id == network_id,
            _FIXED_IPS.c.allocated == sa.true(),
            live(_FIXED_IPS),
        )
        .limit(1)
    )
    if execute(allocated).first() is not None:
        raise exception.NetworkInUse(network_id=network_id)
    found = execute(
        sa.select(_NETWORKS.c.id)
        .where(_NETWORKS.c.id == network_id, live(_NETWORKS))
        .with_for_update()
    ).first()
    if found is None:
        raise exception.NetworkNotFound(network_id=network_id)
    # The network's fixed IPs are soft-deleted; the network row itself is removed (as nova).
    soft_delete_where(FixedIp, FixedIp.network_id == network_id)
    execute(sa.delete(_NETWORKS).where(_NETWORKS.c.id == network_id))


@api(ADMIN)
def network_disassociate(
    context: Any, network_id: int, disassociate_host: bool = True, disassociate_project: bool = True
) -> None:
    """Disassociate the network from project or host."""
    values: dict[str, Any] = {}
    if disassociate_project:
        values["project_id"] = None
    if disassociate_host:
        values["host"] = None
    network_update(context, network_id, values)


@api(USER)
def network_get(context: Any, network_id: int, project_only: Any = "allow_none") -> Any:
    """Get a network or raise if it does not exist."""
    network_id = _network_id(network_id)
    stmt = model_query(context, Network, project_only=project_only).where(Network.id == network_id)
    row = first(stmt)
    if row is None:
        raise exception.NetworkNotFound(network_id=network_id)
    return row


@api(USER)
def network_get_all(context: Any, project_only: Any = "allow_none") -> list[Any]:
    """Return all defined networks."""
    stmt = model_query(context, Network, read_deleted="no", project_only=project_only)
    rows = fetch_all(stmt.order_by(Network.id))
    if not rows:
        raise exception.NoNetworksFound()
    return rows


@api(ADMIN)
def network_get_all_by_host(context: Any, host: str) -> list[Any]:
    """All networks for which the given host is the network host."""
    host = key_value(Network, "host", host)
    # Networks with a fixed IP on the host, or whose VIF's instance is on it.
    on_host = model_query(context, FixedIp, FixedIp.network_id, base_model=FixedIp)
    on_host = (
        on_host.outerjoin(VirtualInterface, VirtualInterface.id == FixedIp.virtual_interface_id)
        .outerjoin(Instance, Instance.uuid == VirtualInterface.instance_uuid)
        .where(sa.or_(FixedIp.host == host, Instance.host == host))
        .where(FixedIp.network_id.is_not(None))
    )
    stmt = (
        model_query(context, Network, read_deleted="no")
        .where(sa.or_(Network.host == host, Network.id.in_(on_host)))
        .order_by(Network.id)
    )
    return fetch_all(stmt)


def _uuid_list(network_uuids: Any) -> list[str]:
    if isinstance(network_uuids, str | bytes | Mapping) or not isinstance(network_uuids, Iterable):
        raise InvalidQuery(f"network_uuids must be a list of uuids, got {network_uuids!r}")
    return [key_value(Network, "uuid", u) for u in network_uuids]


@api(USER)
def network_get_all_by_uuids(
    context: Any, network_uuids: list[str], project_only: Any = "allow_none"
) -> list[Any]:
    """Return networks by ids."""
    uuids = _uuid_list(network_uuids)
    rows: list[Any] = []
    if uuids:
        stmt = model_query(context, Network, read_deleted="no", project_only=project_only)
        rows = fetch_all(stmt.where(Network.uuid.in_(sorted(set(uuids)))).order_by(Network.id))
    if not rows:
        raise exception.NoNetworksFound()
    found = {row.uuid for row in rows}
    for network_uuid in uuids:
        if network_uuid not in found:
            if project_only:
                raise exception.NetworkNotFoundForProject(
                    network_uuid=network_uuid, project_id=context.project_id
                )
            raise exception.NetworkNotFound(network_id=network_uuid)
    return rows


_ASSOCIATED_KEYS = (
    "address",
    "instance_uuid",
    "network_id",
    "vif_id",
    "vif_address",
    "instance_hostname",
    "instance_updated",
    "instance_created",
    "allocated",
    "leased",
)


@api(ADMIN)
def network_get_associated_fixed_ips(
    context: Any, network_id: int, host: str | None = None
) -> list[dict[str, Any]]:
    """Get all network's ips that have been associated."""
    network_id = _network_id(network_id)
    vifs, instances = VirtualInterface.__table__, Instance.__table__
    stmt = (
        sa.select(
            _FIXED_IPS.c.address,
            _FIXED_IPS.c.instance_uuid,
            _FIXED_IPS.c.network_id,
            _FIXED_IPS.c.virtual_interface_id,
            vifs.c.address,
            instances.c.hostname,
            instances.c.updated_at,
            instances.c.created_at,
            _FIXED_IPS.c.allocated,
            _FIXED_IPS.c.leased,
        )
        .select_from(
            _FIXED_IPS.join(
                vifs, sa.and_(vifs.c.id == _FIXED_IPS.c.virtual_interface_id, live(vifs))
            ).join(
                instances, sa.and_(instances.c.uuid == _FIXED_IPS.c.instance_uuid, live(instances))
            )
        )
        .where(_FIXED_IPS.c.network_id == network_id, live(_FIXED_IPS))
        .order_by(_FIXED_IPS.c.id)
    )
    if host is not None:
        stmt = stmt.where(instances.c.host == key_value(Instance, "host", host))
    return [dict(zip(_ASSOCIATED_KEYS, row, strict=True)) for row in execute(stmt)]


@api(ADMIN)
def network_get_by_cidr(context: Any, cidr: str) -> Any:
    """Get a network by cidr or raise if it does not exist."""
    cidr = key_value(Network, "cidr", cidr)
    stmt = (
        model_query(context, Network, read_deleted="no")
        .where(sa.or_(Network.cidr == cidr, Network.cidr_v6 == cidr))
        .order_by(Network.id)
    )
    row = first(stmt)
    if row is None:
        raise exception.NetworkNotFoundForCidr(cidr=cidr)
    return row


@api(ADMIN)
def network_get_by_uuid(context: Any, uuid: str) -> Any:
    """Get a network by uuid or raise if it does not exist."""
    uuid = key_value(Network, "uuid", uuid)
    stmt = model_query(context, Network, read_deleted="no").where(Network.uuid == uuid)
    row = first(stmt.order_by(Network.id))
    if row is None:
        raise exception.NetworkNotFoundForUUID(uuid=uuid)
    return row


@api()
def network_in_use_on_host(context: Any, network_id: int, host: str | None = None) -> bool:
    """Indicates if a network is currently in use on host."""
    # Through the admin-only call, as nova: a user context gets AdminRequired.
    return len(network_get_associated_fixed_ips(context, network_id, host)) > 0


@api(ADMIN)
def network_set_host(context: Any, network_id: int, host_id: str) -> Any:
    """Safely set the host for network; return the host in effect."""
    network_id = _network_id(network_id)
    host_id = key_value(Network, "host", host_id)
    # Locked and waited for: of racing callers the first sets its host, the rest see it.
    row = execute(
        sa.select(_NETWORKS.c.host)
        .where(_NETWORKS.c.id == network_id, live(_NETWORKS))
        .with_for_update()
    ).first()
    if row is None:
        raise exception.NetworkNotFound(network_id=network_id)
    if row.host:
        return row.host
    execute(
        sa.update(_NETWORKS)
        .where(_NETWORKS.c.id == network_id)
        .values(host=host_id, updated_at=utcnow())
    )
    return host_id


@api(USER)
def network_update(context: Any, network_id: int, values: dict[str, Any]) -> Any:
    """Set the given properties on a network and update it."""
    network_id = _network_id(network_id)
    changes = _values("network_update", values)
    stmt = model_query(context, Network, project_only="allow_none").where(Network.id == network_id)
    row = first(stmt)
    if row is None:
        raise exception.NetworkNotFound(network_id=network_id)
    try:
        return update(row, changes)
    except DuplicateEntry:
        raise exception.DuplicateVlan(vlan=changes.get("vlan")) from None


@api(USER)
def project_get_networks(context: Any, project_id: str, associate: bool = True) -> list[Any]:
    """Return the networks of the project; with ``associate``, associate one if it has none."""
    authorize_project_context(context, project_id)
    project_id = key_value(Network, "project_id", project_id)
    stmt = model_query(context, Network, read_deleted="no").where(Network.project_id == project_id)
    rows = fetch_all(stmt.order_by(Network.id))
    if rows or not associate:
        return rows
    # Admin-only, as in nova: a user context gets AdminRequired here.
    return [network_associate(context, project_id)]

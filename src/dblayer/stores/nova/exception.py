"""The exceptions nova's DB API raises, under dblayer's one error tree.

Every nova exception is a :class:`NovaException` (a
:class:`dblayer.core.errors.DBLayerError`) whose message is its class's
``msg_fmt`` filled from keyword arguments, and which carries an HTTP ``code``.
nova's families also sit under core's matching classes, so that
``except dblayer.core.errors.NotFound`` catches ``InstanceNotFound`` and
``except ValueError`` catches every nova ``Invalid``.

The ``DB*`` classes are the oslo.db names that nova's API lets escape
(``DBDuplicateEntry`` with its ``columns``, ``DBDeadlock``, ...); they sit under
core's ``DatabaseError`` / ``DuplicateEntry`` / ``DeadlockError`` /
``DBConnectionError``, so core's retry and callers' handlers see them as such.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dblayer.core import errors as core
from dblayer.core import pagination as core_pagination

LOG = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%%")


def _fill_leniently(fmt: str, kwargs: Mapping[str, Any]) -> str:
    """Fill what ``kwargs`` has (each value with ``str``); leave missing placeholders as written."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:  # "%%"
            return "%"
        return str(kwargs[name]) if name in kwargs else match.group(0)

    return _PLACEHOLDER.sub(one, fmt)


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Unpickle an exception without calling its ``__init__`` (whose signature is not ``*args``)."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class _Picklable(Exception):
    """Pickles by state, so keyword-built exceptions survive crossing a process boundary."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class NovaException(_Picklable, core.DBLayerError):
    """An unknown exception occurred."""

    msg_fmt = "An unknown exception occurred."
    code = 500

    def __init__(self, message: Any = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        kwargs.setdefault("code", self.code)
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError) as error:
                # Never let a bad call site turn an error report into a crash: keep the
                # format string, with what can be filled filled in.
                LOG.warning(
                    "cannot format %s message %r with %r: %r",
                    type(self).__name__,
                    self.msg_fmt,
                    kwargs,
                    error,
                )
                message = _fill_leniently(self.msg_fmt, kwargs)
        super().__init__(message)

    def format_message(self) -> str:
        """The message (the filled format string, or the positional message as given)."""
        return str(self.args[0])


# ---- the families -------------------------------------------------------------------------


class NotFound(NovaException, core.NotFound):
    """Resource could not be found."""

    msg_fmt = "Resource could not be found."
    code = 404


class Invalid(NovaException, core.InvalidValue):
    """Unacceptable parameters."""

    msg_fmt = "Unacceptable parameters."
    code = 400


class Forbidden(NovaException):
    """Forbidden."""

    msg_fmt = "Forbidden."
    code = 403


class AdminRequired(Forbidden):
    """The user does not have admin privileges."""

    msg_fmt = "The user does not have admin privileges."


class ConstraintNotMet(NovaException, core.ConstraintNotMet):
    """The constraint was not met."""

    msg_fmt = "The constraint was not met."
    code = 412


class MarkerNotFound(NotFound, core.MarkerNotFound):
    """Marker %(marker)s could not be found."""

    msg_fmt = "Marker %(marker)s could not be found."


# ---- invalid input ------------------------------------------------------------------------


class InvalidUUID(Invalid):
    """Expected a uuid but received %(uuid)s."""

    msg_fmt = "Expected a uuid but received %(uuid)s."


class InvalidID(Invalid):
    """Invalid ID received %(id)s."""

    msg_fmt = "Invalid ID received %(id)s."


class InvalidIpAddressError(Invalid):
    """%(address)s is not a valid IP v4/6 address."""

    msg_fmt = "%(address)s is not a valid IP v4/6 address."


class FixedIpInvalid(Invalid):
    """Fixed IP address %(address)s is invalid."""

    msg_fmt = "Fixed IP address %(address)s is invalid."


class InvalidParameterValue(Invalid):
    """%(err)s"""

    msg_fmt = "%(err)s"


class InvalidBDM(Invalid):
    """The block device mapping is invalid."""

    msg_fmt = "The block device mapping is invalid."


class InvalidBDMFormat(InvalidBDM):
    """The block device mapping is invalid: %(details)s"""

    msg_fmt = "The block device mapping is invalid: %(details)s"


# ---- instances ----------------------------------------------------------------------------


class InstanceNotFound(NotFound):
    """Instance %(instance_id)s could not be found."""

    msg_fmt = "Instance %(instance_id)s could not be found."


class InstanceExists(NovaException):
    """An instance with the name %(name)s already exists."""

    msg_fmt = "An instance with the name %(name)s already exists."


class InstanceInfoCacheNotFound(NotFound):
    """The info cache of instance %(instance_uuid)s could not be found."""

    msg_fmt = "The info cache of instance %(instance_uuid)s could not be found."


class UnexpectedTaskStateError(NovaException):
    """Unexpected task state: expected %(expected)s but the instance has %(actual)s."""

    msg_fmt = "Unexpected task state: expected %(expected)s but the instance has %(actual)s."


class UnexpectedDeletingTaskStateError(UnexpectedTaskStateError):
    """Unexpected task state (the instance is being deleted): expected %(expected)s, found %(actual)s."""

    msg_fmt = (
        "Unexpected task state (the instance is being deleted): "
        "expected %(expected)s, found %(actual)s."
    )


class UnexpectedVMStateError(NovaException):
    """Unexpected VM state: expected %(expected)s but the instance has %(actual)s."""

    msg_fmt = "Unexpected VM state: expected %(expected)s but the instance has %(actual)s."


class InstanceActionNotFound(NovaException):
    """Action %(request_id)s on instance %(instance_uuid)s could not be found."""

    msg_fmt = "Action %(request_id)s on instance %(instance_uuid)s could not be found."


class InstanceActionEventNotFound(NovaException):
    """Event %(event)s of action %(action_id)s could not be found."""

    msg_fmt = "Event %(event)s of action %(action_id)s could not be found."


# ---- instance groups ----------------------------------------------------------------------


class InstanceGroupNotFound(NotFound):
    """Instance group %(group_uuid)s could not be found."""

    msg_fmt = "Instance group %(group_uuid)s could not be found."


class InstanceGroupIdExists(NovaException):
    """Instance group %(group_uuid)s already exists."""

    msg_fmt = "Instance group %(group_uuid)s already exists."


class InstanceGroupMetadataNotFound(NotFound):
    """Instance group %(group_uuid)s has no metadata with key %(metadata_key)s."""

    msg_fmt = "Instance group %(group_uuid)s has no metadata with key %(metadata_key)s."


class InstanceGroupMemberNotFound(NotFound):
    """Instance group %(group_uuid)s has no member %(instance_id)s."""

    msg_fmt = "Instance group %(group_uuid)s has no member %(instance_id)s."


class InstanceGroupPolicyNotFound(NotFound):
    """Instance group %(group_uuid)s has no policy %(policy)s."""

    msg_fmt = "Instance group %(group_uuid)s has no policy %(policy)s."


# ---- services and hosts -------------------------------------------------------------------


class ServiceNotFound(NotFound):
    """Service %(service_id)s could not be found."""

    msg_fmt = "Service %(service_id)s could not be found."


class ServiceBinaryExists(NovaException):
    """A service with host %(host)s and binary %(binary)s already exists."""

    msg_fmt = "A service with host %(host)s and binary %(binary)s already exists."


class ServiceTopicExists(NovaException):
    """A service with host %(host)s and topic %(topic)s already exists."""

    msg_fmt = "A service with host %(host)s and topic %(topic)s already exists."


class HostNotFound(NotFound):
    """Host %(host)s could not be found."""

    msg_fmt = "Host %(host)s could not be found."


class ComputeHostNotFound(HostNotFound):
    """Compute host %(host)s could not be found."""

    msg_fmt = "Compute host %(host)s could not be found."


class HostBinaryNotFound(NotFound):
    """No binary %(binary)s could be found on host %(host)s."""

    msg_fmt = "No binary %(binary)s could be found on host %(host)s."


# ---- fixed IPs ----------------------------------------------------------------------------


class FixedIpNotFound(NotFound):
    """No fixed IP with id %(id)s could be found."""

    msg_fmt = "No fixed IP with id %(id)s could be found."


class FixedIpNotFoundForAddress(FixedIpNotFound):
    """Fixed IP address %(address)s could not be found."""

    msg_fmt = "Fixed IP address %(address)s could not be found."


class FixedIpNotFoundForInstance(FixedIpNotFound):
    """Instance %(instance_uuid)s has no fixed IP."""

    msg_fmt = "Instance %(instance_uuid)s has no fixed IP."


class FixedIpNotFoundForNetworkHost(FixedIpNotFound):
    """Network %(network_id)s has no fixed IP on host %(host)s."""

    msg_fmt = "Network %(network_id)s has no fixed IP on host %(host)s."


class FixedIpNotFoundForNetwork(FixedIpNotFound):
    """Fixed IP address %(address)s is not in network %(network_uuid)s."""

    msg_fmt = "Fixed IP address %(address)s is not in network %(network_uuid)s."


class FixedIpAlreadyInUse(NovaException):
    """Fixed IP address %(address)s is already in use, so instance %(instance_uuid)s cannot have it."""

    msg_fmt = (
        "Fixed IP address %(address)s is already in use, "
        "so instance %(instance_uuid)s cannot have it."
    )


class FixedIpExists(NovaException):
    """Fixed IP address %(address)s already exists."""

    msg_fmt = "Fixed IP address %(address)s already exists."


class NoMoreFixedIps(NovaException):
    """No fixed IP addresses are left."""

    msg_fmt = "No fixed IP addresses are left."


class NoFixedIpsDefined(NotFound):
    """No fixed IPs are defined."""

    msg_fmt = "No fixed IPs are defined."


# ---- floating IPs -------------------------------------------------------------------------


class FloatingIpNotFound(NotFound):
    """No floating IP with id %(id)s could be found."""

    msg_fmt = "No floating IP with id %(id)s could be found."


class FloatingIpNotFoundForAddress(FloatingIpNotFound):
    """Floating IP address %(address)s could not be found."""

    msg_fmt = "Floating IP address %(address)s could not be found."


class FloatingIpNotFoundForHost(FloatingIpNotFound):
    """Host %(host)s has no floating IP."""

    msg_fmt = "Host %(host)s has no floating IP."


class NoMoreFloatingIps(FloatingIpNotFound):
    """No floating IP addresses are left."""

    msg_fmt = "No floating IP addresses are left."


class NoFloatingIpsDefined(NotFound):
    """No floating IPs are defined."""

    msg_fmt = "No floating IPs are defined."


class FloatingIpExists(NovaException):
    """Floating IP address %(address)s already exists."""

    msg_fmt = "Floating IP address %(address)s already exists."


# ---- networks and virtual interfaces ------------------------------------------------------


class NetworkNotFound(NotFound):
    """Network %(network_id)s could not be found."""

    msg_fmt = "Network %(network_id)s could not be found."


class NetworkNotFoundForProject(NotFound):
    """Network %(network_uuid)s could not be found for project %(project_id)s."""

    msg_fmt = "Network %(network_uuid)s could not be found for project %(project_id)s."


class NetworkNotFoundForUUID(NetworkNotFound):
    """No network with uuid %(uuid)s could be found."""

    msg_fmt = "No network with uuid %(uuid)s could be found."


class NetworkNotFoundForCidr(NetworkNotFound):
    """No network with CIDR %(cidr)s could be found."""

    msg_fmt = "No network with CIDR %(cidr)s could be found."


class NoNetworksFound(NotFound):
    """No networks are defined."""

    msg_fmt = "No networks are defined."


class NoMoreNetworks(NovaException):
    """No networks are left to associate."""

    msg_fmt = "No networks are left to associate."


class NetworkInUse(NovaException):
    """Network %(network_id)s is still in use."""

    msg_fmt = "Network %(network_id)s is still in use."


class DuplicateVlan(NovaException):
    """A network with vlan %(vlan)d already exists."""

    msg_fmt = "A network with vlan %(vlan)d already exists."


class VirtualInterfaceCreateException(NovaException):
    """The virtual interface could not be created."""

    msg_fmt = "The virtual interface could not be created."


# ---- key pairs and security groups --------------------------------------------------------


class KeyPairExists(NovaException):
    """A key pair named %(key_name)s already exists."""

    msg_fmt = "A key pair named %(key_name)s already exists."


class KeypairNotFound(NotFound):
    """User %(user_id)s has no key pair named %(name)s."""

    msg_fmt = "User %(user_id)s has no key pair named %(name)s."


class SecurityGroupNotFound(NotFound):
    """Security group %(security_group_id)s could not be found."""

    msg_fmt = "Security group %(security_group_id)s could not be found."


class SecurityGroupNotFoundForProject(SecurityGroupNotFound):
    """Security group %(security_group_id)s could not be found in project %(project_id)s."""

    msg_fmt = "Security group %(security_group_id)s could not be found in project %(project_id)s."


class SecurityGroupNotFoundForRule(SecurityGroupNotFound):
    """No security group has rule %(rule_id)s."""

    msg_fmt = "No security group has rule %(rule_id)s."


class SecurityGroupExists(Invalid):
    """Project %(project_id)s already has a security group named %(security_group_name)s."""

    msg_fmt = "Project %(project_id)s already has a security group named %(security_group_name)s."


class SecurityGroupDefaultRuleNotFound(Invalid):
    """Security group default rule %(rule_id)s could not be found."""

    msg_fmt = "Security group default rule %(rule_id)s could not be found."


# ---- flavors ------------------------------------------------------------------------------


class FlavorNotFound(NotFound):
    """Flavor %(flavor_id)s could not be found."""

    msg_fmt = "Flavor %(flavor_id)s could not be found."


class FlavorNotFoundByName(FlavorNotFound):
    """No flavor named %(flavor_name)s could be found."""

    msg_fmt = "No flavor named %(flavor_name)s could be found."


class FlavorExists(NovaException):
    """A flavor named %(name)s already exists."""

    msg_fmt = "A flavor named %(name)s already exists."


class FlavorIdExists(NovaException):
    """A flavor with id %(flavor_id)s already exists."""

    msg_fmt = "A flavor with id %(flavor_id)s already exists."


class FlavorAccessExists(NovaException):
    """Project %(project_id)s already has access to flavor %(flavor_id)s."""

    msg_fmt = "Project %(project_id)s already has access to flavor %(flavor_id)s."


class FlavorAccessNotFound(NotFound):
    """Project %(project_id)s has no access entry for flavor %(flavor_id)s."""

    msg_fmt = "Project %(project_id)s has no access entry for flavor %(flavor_id)s."


class FlavorExtraSpecsNotFound(NotFound):
    """Flavor %(flavor_id)s has no extra spec with key %(extra_specs_key)s."""

    msg_fmt = "Flavor %(flavor_id)s has no extra spec with key %(extra_specs_key)s."


class FlavorExtraSpecUpdateCreateFailed(NovaException):
    """The extra specs of flavor %(id)s could not be updated or created after %(retries)s tries."""

    msg_fmt = (
        "The extra specs of flavor %(id)s could not be updated or created after %(retries)s tries."
    )


# ---- aggregates, agent builds, cells ------------------------------------------------------


class AggregateNotFound(NotFound):
    """Aggregate %(aggregate_id)s could not be found."""

    msg_fmt = "Aggregate %(aggregate_id)s could not be found."


class AggregateNameExists(NovaException):
    """An aggregate named %(aggregate_name)s already exists."""

    msg_fmt = "An aggregate named %(aggregate_name)s already exists."


class AggregateHostExists(NovaException):
    """Host %(host)s is already in aggregate %(aggregate_id)s."""

    msg_fmt = "Host %(host)s is already in aggregate %(aggregate_id)s."


class AggregateHostNotFound(NotFound):
    """Aggregate %(aggregate_id)s has no host %(host)s."""

    msg_fmt = "Aggregate %(aggregate_id)s has no host %(host)s."


class AggregateMetadataNotFound(NotFound):
    """Aggregate %(aggregate_id)s has no metadata with key %(metadata_key)s."""

    msg_fmt = "Aggregate %(aggregate_id)s has no metadata with key %(metadata_key)s."


class AgentBuildExists(NovaException):
    """An agent build for %(hypervisor)s, %(os)s, %(architecture)s already exists."""

    msg_fmt = "An agent build for %(hypervisor)s, %(os)s, %(architecture)s already exists."


class AgentBuildNotFound(NotFound):
    """Agent build %(id)s could not be found."""

    msg_fmt = "Agent build %(id)s could not be found."


class CellExists(NovaException):
    """A cell named %(name)s already exists."""

    msg_fmt = "A cell named %(name)s already exists."


class CellNotFound(NotFound):
    """Cell %(cell_name)s could not be found."""

    msg_fmt = "Cell %(cell_name)s could not be found."


# ---- consoles and migrations --------------------------------------------------------------


class ConsoleNotFound(NotFound):
    """Console %(console_id)s could not be found."""

    msg_fmt = "Console %(console_id)s could not be found."


class ConsoleNotFoundForInstance(ConsoleNotFound):
    """Instance %(instance_uuid)s has no such console."""

    msg_fmt = "Instance %(instance_uuid)s has no such console."


class ConsoleNotFoundInPoolForInstance(ConsoleNotFound):
    """Console pool %(pool_id)s has no console for instance %(instance_uuid)s."""

    msg_fmt = "Console pool %(pool_id)s has no console for instance %(instance_uuid)s."


class ConsolePoolExists(NovaException):
    """A %(console_type)s console pool for compute host %(compute_host)s already exists on host %(host)s."""

    msg_fmt = (
        "A %(console_type)s console pool for compute host %(compute_host)s "
        "already exists on host %(host)s."
    )


class ConsolePoolNotFoundForHostType(NotFound):
    """Host %(host)s has no %(console_type)s console pool for compute host %(compute_host)s."""

    msg_fmt = (
        "Host %(host)s has no %(console_type)s console pool for compute host %(compute_host)s."
    )


class MigrationNotFound(NotFound):
    """Migration %(migration_id)s could not be found."""

    msg_fmt = "Migration %(migration_id)s could not be found."


class MigrationNotFoundByStatus(MigrationNotFound):
    """Instance %(instance_id)s has no migration with status %(status)s."""

    msg_fmt = "Instance %(instance_id)s has no migration with status %(status)s."


# ---- quotas -------------------------------------------------------------------------------


class QuotaNotFound(NotFound):
    """The quota could not be found."""

    msg_fmt = "The quota could not be found."


class QuotaExists(NovaException):
    """Project %(project_id)s already has a quota for %(resource)s."""

    msg_fmt = "Project %(project_id)s already has a quota for %(resource)s."


class ProjectQuotaNotFound(QuotaNotFound):
    """Project %(project_id)s has no such quota."""

    msg_fmt = "Project %(project_id)s has no such quota."


class ProjectUserQuotaNotFound(QuotaNotFound):
    """User %(user_id)s in project %(project_id)s has no such quota."""

    msg_fmt = "User %(user_id)s in project %(project_id)s has no such quota."


class QuotaClassNotFound(QuotaNotFound):
    """Quota class %(class_name)s could not be found."""

    msg_fmt = "Quota class %(class_name)s could not be found."


class QuotaUsageNotFound(QuotaNotFound):
    """Project %(project_id)s has no such quota usage."""

    msg_fmt = "Project %(project_id)s has no such quota usage."


class OverQuota(NovaException):
    """Quota exceeded for resources: %(overs)s."""

    msg_fmt = "Quota exceeded for resources: %(overs)s."


# ---- PCI devices, task log, EC2/S3 id maps ------------------------------------------------


class PciDeviceNotFound(NovaException):
    """Node %(node_id)s has no PCI device at %(address)s."""

    msg_fmt = "Node %(node_id)s has no PCI device at %(address)s."


class PciDeviceNotFoundById(NotFound):
    """PCI device %(id)s could not be found."""

    msg_fmt = "PCI device %(id)s could not be found."


class TaskAlreadyRunning(NovaException):
    """Task %(task_name)s is already running on host %(host)s."""

    msg_fmt = "Task %(task_name)s is already running on host %(host)s."


class TaskNotRunning(NovaException):
    """Task %(task_name)s is not running on host %(host)s."""

    msg_fmt = "Task %(task_name)s is not running on host %(host)s."


class ImageNotFound(NotFound):
    """Image %(image_id)s could not be found."""

    msg_fmt = "Image %(image_id)s could not be found."


class VolumeNotFound(NotFound):
    """Volume %(volume_id)s could not be found."""

    msg_fmt = "Volume %(volume_id)s could not be found."


class SnapshotNotFound(NotFound):
    """Snapshot %(snapshot_id)s could not be found."""

    msg_fmt = "Snapshot %(snapshot_id)s could not be found."


# ---- pagination and oslo.db's names -------------------------------------------------------


class InvalidSortKey(_Picklable, core_pagination.InvalidSortKey):
    """Sort key supplied is invalid: %(key)s"""

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        text = "Sort key supplied is invalid" + (f": {key}" if key is not None else ".")
        super().__init__(text)


class DBError(_Picklable, core.DatabaseError):
    """A database error; ``inner_exception`` is what the backend raised."""

    default_message = "A database error occurred."

    def __init__(self, inner_exception: BaseException | str | None = None) -> None:
        self.inner_exception = inner_exception
        super().__init__(self.default_message if inner_exception is None else str(inner_exception))


class DBDuplicateEntry(DBError, core.DuplicateEntry):
    """A unique constraint already holds this value; ``columns`` names its columns."""

    def __init__(
        self,
        columns: Iterable[str] | None = None,
        inner_exception: BaseException | str | None = None,
        value: Any = None,
        *,
        constraint: str | None = None,
    ) -> None:
        if constraint is None and isinstance(inner_exception, core.ConflictError):
            constraint = inner_exception.constraint
        if columns is None and isinstance(inner_exception, core.ConflictError):
            columns = duplicate_columns(inner_exception)
        super().__init__(inner_exception)
        cols = list(columns or [])
        if inner_exception is None:
            self.args = ("Duplicate entry" + (f" for columns {', '.join(cols)}." if cols else "."),)
        # Set after the cooperative __init__ chain (core.ConflictError stores a tuple).
        self.columns = cols
        self.constraint = constraint
        self.value = value


class DBDeadlock(DBError, core.DeadlockError):
    """The database chose this transaction as a deadlock victim."""

    default_message = "Deadlock found when trying to get a lock."


class DBConnectionError(DBError, core.DBConnectionError):
    """The connection to the database failed or was lost."""

    default_message = "The connection to the database failed or was lost."


class DBInvalidUnicodeParameter(_Picklable, core.InvalidValue):
    """A parameter could not be encoded for the database."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "Invalid parameter: the value could not be encoded.")


# ---- duplicate-key columns ----------------------------------------------------------------


def duplicate_columns(error: core.ConflictError, *, table: str | None = None) -> list[str]:
    """The columns a duplicate-key error names.

    Its ``columns`` when the backend told them (SQLite, PostgreSQL's detail line);
    else parsed from the constraint name: nova's ``uniq_<table>0<col1>0<col2>...`` gives
    ``[col1, col2, ...]``; PostgreSQL's automatic ``<table>_<col>_key`` gives ``[col]``
    (pass ``table`` to split a table name holding ``_`` correctly; without it the
    table is taken to end at the first ``_``); any other name (a MariaDB key named
    after its first column, ``PRIMARY``) is returned as the one column.
    """
    if error.columns:
        return list(error.columns)
    name = error.constraint
    if not name:
        return []
    name = name.rsplit(".", 1)[-1]
    if name.startswith("uniq_"):
        return [col for col in name[len("uniq_") :].split("0")[1:] if col]
    if name.endswith("_key") and "_" in name[: -len("_key")]:
        body = name[: -len("_key")]
        if table and body.startswith(table + "_") and len(body) > len(table) + 1:
            return [body[len(table) + 1 :]]
        return [body.split("_", 1)[1]]
    return [name]

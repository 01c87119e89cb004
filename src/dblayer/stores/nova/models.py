"""nova's 53 models (``nova.db.sqlalchemy.models``) on dblayer's core, plus shadow tables.

Every table has nova's name, columns, unique constraint names (``uniq_<table>0<col>...``,
which error translation reads) and indexes, and a ``shadow_<table>`` twin for archiving.
Text compares byte for byte on every backend (``new_metadata``: binary collation on
MariaDB/MySQL). Index and constraint names are nova's, except two that nova used on two
tables and PostgreSQL (one namespace per schema) cannot hold twice:
``dns_domains_project_id_idx`` and ``virtual_interfaces_network_id_idx``.

Relationships are all ``viewonly`` (the API writes child rows by setting their foreign
key columns) and lazy-load on access ("select"); the API eager-loads what it returns
with loader options on the class attribute of the same name::

    selectinload(Instance.metadata), selectinload(Instance.system_metadata),
    joinedload(Instance.info_cache), selectinload(Instance.security_groups)
        .selectinload(SecurityGroup.rules),
    selectinload(Instance.block_device_mapping), selectinload(Instance.pci_devices)

``Instance.metadata`` is a real relationship named ``metadata``: declarative reserves
that name inside a class body, so it is attached right after the class. Only the
``Instance`` class attribute is the relationship; ``BASE.metadata`` (and
``Instance.__table__.metadata``) stay the MetaData. Use ``BASE.metadata`` for schema work.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Session, foreign, mapped_column, relationship

from dblayer.core.archive import create_shadow_tables
from dblayer.core.models import DictMixin, SoftDeleteMixin, TimestampMixin, new_metadata
from dblayer.core.types import UTCDateTime, utcnow

from .types import CIDR, IPAddress, MediumText

__all__ = [
    "BASE",
    "CIDR",
    "AgentBuild",
    "Aggregate",
    "AggregateHost",
    "AggregateMetadata",
    "BandwidthUsage",
    "BlockDeviceMapping",
    "Cell",
    "Certificate",
    "ComputeNode",
    "Console",
    "ConsolePool",
    "DNSDomain",
    "FixedIp",
    "FloatingIp",
    "IPAddress",
    "Instance",
    "InstanceAction",
    "InstanceActionEvent",
    "InstanceFault",
    "InstanceGroup",
    "InstanceGroupMember",
    "InstanceGroupMetadata",
    "InstanceGroupPolicy",
    "InstanceIdMapping",
    "InstanceInfoCache",
    "InstanceMetadata",
    "InstanceSystemMetadata",
    "InstanceTypeExtraSpecs",
    "InstanceTypeProjects",
    "InstanceTypes",
    "IscsiTarget",
    "KeyPair",
    "MediumText",
    "Migration",
    "Network",
    "NovaBase",
    "PciDevice",
    "ProjectUserQuota",
    "ProviderFirewallRule",
    "Quota",
    "QuotaClass",
    "QuotaUsage",
    "Reservation",
    "S3Image",
    "SecurityGroup",
    "SecurityGroupIngressDefaultRule",
    "SecurityGroupIngressRule",
    "SecurityGroupInstanceAssociation",
    "Service",
    "Snapshot",
    "SnapshotIdMapping",
    "TaskLog",
    "VirtualInterface",
    "Volume",
    "VolumeIdMapping",
    "VolumeUsage",
]


class BASE(DeclarativeBase):  # noqa: N801 - nova's name
    """Declarative base of nova's models: one MetaData for the store's tables and shadows."""

    metadata = new_metadata()


@functools.cache
def _column_keys(cls: type) -> tuple[str, ...]:
    # The mapper's column attributes never change once mapped: compute them once per class.
    return tuple(attr.key for attr in sa.inspect(cls).column_attrs)


class NovaBase(SoftDeleteMixin, TimestampMixin, DictMixin):
    """nova's model mixin: timestamps, soft delete and dict-style access to a row.

    ``row["col"]``, ``row.get("col", default)``, ``row["col"] = v`` and ``row.update(d)``
    read and write attributes; ``keys()`` is the mapped columns plus ``_extra_keys``;
    iterating a row yields ``(name, value)`` pairs over those keys, and ``dict(row)``
    maps them. ``items()``/``iteritems()`` add every loaded public attribute (loaded
    relationships). Rows hash and compare by identity.
    """

    _extra_keys: ClassVar[list[str]] = []

    def keys(self) -> list[str]:
        """The mapped column names, then the model's extra keys."""
        return [*_column_keys(type(self)), *self._extra_keys]

    def __iter__(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        # nova's rows iterate as (name, value) pairs; dict(row) goes through keys() instead.
        for key in self.keys():
            yield key, getattr(self, key)

    def items(self) -> list[tuple[str, Any]]:
        """(name, value) pairs over ``keys()`` and every loaded public attribute."""
        values = dict(self.__iter__())
        # Loaded relationships (eager or lazy) sit in __dict__; unloaded ones are absent.
        values.update((k, v) for k, v in self.__dict__.items() if not k.startswith("_"))
        return list(values.items())

    def iteritems(self) -> Iterator[tuple[str, Any]]:
        """An iterator over ``items()``."""
        return iter(self.items())

    def save(self, session: Session | None = None) -> None:
        """Add this row to ``session`` and flush; without one, in a unit of work of its own."""
        if session is not None:
            session.add(self)
            session.flush()
            return
        from .facade import get_database  # the facade imports the models

        with get_database().session() as own:
            own.add(self)
            own.flush()


def _live(column: Any) -> sa.ColumnElement[bool]:
    """``column == 0``: the ``deleted`` column of a live row."""
    return column == 0


# --- services and compute nodes -----------------------------------------------------------


class Service(BASE, NovaBase):
    """A nova service (compute, scheduler, network, ...) running on a host."""

    __tablename__ = "services"
    __table_args__ = (
        sa.UniqueConstraint("host", "topic", "deleted", name="uniq_services0host0topic0deleted"),
        sa.UniqueConstraint("host", "binary", "deleted", name="uniq_services0host0binary0deleted"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    host = mapped_column(sa.String(255))
    binary = mapped_column(sa.String(255))
    topic = mapped_column(sa.String(255))
    report_count = mapped_column(sa.Integer, nullable=False, default=0)
    disabled = mapped_column(sa.Boolean, default=False)
    disabled_reason = mapped_column(sa.String(255))

    # A list, as nova's backref was (only live compute nodes).
    compute_node = relationship(
        "ComputeNode",
        primaryjoin=lambda: sa.and_(
            ComputeNode.service_id == Service.id, _live(ComputeNode.deleted)
        ),
        viewonly=True,
    )


class ComputeNode(BASE, NovaBase):
    """A hypervisor's resources as its compute service reports them."""

    __tablename__ = "compute_nodes"
    # Not in nova's model (MySQL indexed the foreign key by itself): a service's nodes are
    # looked up by service_id on every backend.
    __table_args__ = (sa.Index("compute_nodes_service_id_idx", "service_id"),)

    id = mapped_column(sa.Integer, primary_key=True)
    service_id = mapped_column(sa.Integer, sa.ForeignKey("services.id"), nullable=False)
    vcpus = mapped_column(sa.Integer, nullable=False)
    memory_mb = mapped_column(sa.Integer, nullable=False)
    local_gb = mapped_column(sa.Integer, nullable=False)
    vcpus_used = mapped_column(sa.Integer, nullable=False)
    memory_mb_used = mapped_column(sa.Integer, nullable=False)
    local_gb_used = mapped_column(sa.Integer, nullable=False)
    hypervisor_type = mapped_column(MediumText(), nullable=False)
    hypervisor_version = mapped_column(sa.Integer, nullable=False)
    hypervisor_hostname = mapped_column(sa.String(255))
    free_ram_mb = mapped_column(sa.Integer)
    free_disk_gb = mapped_column(sa.Integer)
    current_workload = mapped_column(sa.Integer)
    running_vms = mapped_column(sa.Integer)
    cpu_info = mapped_column(MediumText(), nullable=False)
    disk_available_least = mapped_column(sa.Integer)
    host_ip = mapped_column(IPAddress())
    supported_instances = mapped_column(sa.Text)
    metrics = mapped_column(sa.Text)
    pci_stats = mapped_column(sa.Text)
    extra_resources = mapped_column(sa.Text)
    stats = mapped_column(sa.Text, default="{}")

    service = relationship(
        Service,
        primaryjoin=lambda: sa.and_(
            ComputeNode.service_id == Service.id, _live(ComputeNode.deleted)
        ),
        viewonly=True,
    )


class Certificate(BASE, NovaBase):
    """An x509 certificate issued to a user in a project."""

    __tablename__ = "certificates"
    __table_args__ = (
        sa.Index("certificates_project_id_deleted_idx", "project_id", "deleted"),
        sa.Index("certificates_user_id_deleted_idx", "user_id", "deleted"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    user_id = mapped_column(sa.String(255))
    project_id = mapped_column(sa.String(255))
    file_name = mapped_column(sa.String(255))


# --- instances ------------------------------------------------------------------------------


class Instance(BASE, NovaBase):
    """A guest VM."""

    __tablename__ = "instances"
    __table_args__ = (
        # Unique and without ``deleted``: many tables refer to instances.uuid.
        sa.Index("uuid", "uuid", unique=True),
        sa.Index("project_id", "project_id"),
        sa.Index("instances_host_deleted_idx", "host", "deleted"),
        sa.Index("instances_reservation_id_idx", "reservation_id"),
        sa.Index("instances_terminated_at_launched_at_idx", "terminated_at", "launched_at"),
        sa.Index("instances_uuid_deleted_idx", "uuid", "deleted"),
        sa.Index("instances_task_state_updated_at_idx", "task_state", "updated_at"),
        sa.Index("instances_host_node_deleted_idx", "host", "node", "deleted"),
        sa.Index("instances_host_deleted_cleaned_idx", "host", "deleted", "cleaned"),
    )

    _extra_keys: ClassVar[list[str]] = ["name"]
    # nova's config option instance_name_template; the API may replace it.
    name_template: ClassVar[str] = "instance-%08x"
    injected_files: ClassVar[list[Any]] = []

    id = mapped_column(sa.Integer, primary_key=True)
    user_id = mapped_column(sa.String(255))
    project_id = mapped_column(sa.String(255))
    image_ref = mapped_column(sa.String(255))
    kernel_id = mapped_column(sa.String(255))
    ramdisk_id = mapped_column(sa.String(255))
    hostname = mapped_column(sa.String(255))
    launch_index = mapped_column(sa.Integer)
    key_name = mapped_column(sa.String(255))
    key_data = mapped_column(MediumText())
    power_state = mapped_column(sa.Integer)
    vm_state = mapped_column(sa.String(255))
    task_state = mapped_column(sa.String(255))
    memory_mb = mapped_column(sa.Integer)
    vcpus = mapped_column(sa.Integer)
    root_gb = mapped_column(sa.Integer)
    ephemeral_gb = mapped_column(sa.Integer)
    ephemeral_key_uuid = mapped_column(sa.String(36))
    host = mapped_column(sa.String(255))
    node = mapped_column(sa.String(255))
    instance_type_id = mapped_column(sa.Integer)
    user_data = mapped_column(MediumText())
    reservation_id = mapped_column(sa.String(255))
    scheduled_at = mapped_column(UTCDateTime())
    launched_at = mapped_column(UTCDateTime())
    terminated_at = mapped_column(UTCDateTime())
    availability_zone = mapped_column(sa.String(255))
    display_name = mapped_column(sa.String(255))
    display_description = mapped_column(sa.String(255))
    launched_on = mapped_column(MediumText())
    locked = mapped_column(sa.Boolean)
    # VARCHAR(5) + CHECK, not a native ENUM: PostgreSQL cannot INSERT ... SELECT between
    # two ENUM types (instances0locked_by -> shadow_instances0locked_by) when archiving.
    locked_by = mapped_column(
        sa.Enum(
            "owner", "admin", name="instances0locked_by", native_enum=False, create_constraint=True
        )
    )
    os_type = mapped_column(sa.String(255))
    architecture = mapped_column(sa.String(255))
    vm_mode = mapped_column(sa.String(255))
    uuid = mapped_column(sa.String(36))
    root_device_name = mapped_column(sa.String(255))
    default_ephemeral_device = mapped_column(sa.String(255))
    default_swap_device = mapped_column(sa.String(255))
    config_drive = mapped_column(sa.String(255))
    access_ip_v4 = mapped_column(IPAddress())
    access_ip_v6 = mapped_column(IPAddress())
    auto_disk_config = mapped_column(sa.Boolean)
    progress = mapped_column(sa.Integer)
    shutdown_terminate = mapped_column(sa.Boolean, default=False)
    disable_terminate = mapped_column(sa.Boolean, default=False)
    cell_name = mapped_column(sa.String(255))
    internal_id = mapped_column(sa.Integer)
    cleaned = mapped_column(sa.Integer, default=0)

    info_cache = relationship(
        "InstanceInfoCache",
        primaryjoin=lambda: InstanceInfoCache.instance_uuid == Instance.uuid,
        uselist=False,
        viewonly=True,
    )
    security_groups = relationship(
        "SecurityGroup",
        secondary="security_group_instance_association",
        primaryjoin=lambda: sa.and_(
            _association.c.instance_uuid == Instance.uuid, _live(Instance.deleted)
        ),
        secondaryjoin=lambda: sa.and_(
            SecurityGroup.id == _association.c.security_group_id,
            _live(_association.c.deleted),
            _live(SecurityGroup.deleted),
        ),
        viewonly=True,
    )
    system_metadata = relationship(
        "InstanceSystemMetadata",
        primaryjoin=lambda: sa.and_(
            InstanceSystemMetadata.instance_uuid == Instance.uuid,
            _live(InstanceSystemMetadata.deleted),
        ),
        viewonly=True,
    )
    block_device_mapping = relationship(
        "BlockDeviceMapping",
        primaryjoin=lambda: sa.and_(
            BlockDeviceMapping.instance_uuid == Instance.uuid, _live(BlockDeviceMapping.deleted)
        ),
        viewonly=True,
    )
    pci_devices = relationship(
        "PciDevice",
        primaryjoin=lambda: sa.and_(
            foreign(PciDevice.instance_uuid) == Instance.uuid, _live(PciDevice.deleted)
        ),
        viewonly=True,
    )

    @property
    def name(self) -> str | None:
        """The instance's name from ``name_template`` (``instance-0000002a`` for id 42).

        A template with named fields (``%(uuid)s``) is filled from the columns; one that
        names an unknown field gives the uuid.
        """
        template = self.name_template
        try:
            return template % self.id
        except TypeError:
            pass
        values = {key: getattr(self, key) for key in _column_keys(type(self))}
        try:
            return template % values
        except (KeyError, TypeError, ValueError):
            return self.uuid


# Declarative refuses an attribute named ``metadata`` in a class body (it is the
# MetaData's name on the base); attached afterwards it is an ordinary relationship of
# Instance alone, and BASE.metadata stays the MetaData.
Instance.metadata = relationship(  # type: ignore[assignment]
    "InstanceMetadata",
    primaryjoin=lambda: sa.and_(
        InstanceMetadata.instance_uuid == Instance.uuid, _live(InstanceMetadata.deleted)
    ),
    viewonly=True,
)


class InstanceInfoCache(BASE, NovaBase):
    """An instance's cached network information (one row per instance)."""

    __tablename__ = "instance_info_caches"
    __table_args__ = (
        sa.UniqueConstraint("instance_uuid", name="uniq_instance_info_caches0instance_uuid"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    network_info = mapped_column(MediumText())
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"), nullable=False)

    instance = relationship(
        Instance,
        primaryjoin=lambda: InstanceInfoCache.instance_uuid == Instance.uuid,
        viewonly=True,
    )


class InstanceMetadata(BASE, NovaBase):
    """A user metadata key/value pair of an instance."""

    __tablename__ = "instance_metadata"
    __table_args__ = (sa.Index("instance_metadata_instance_uuid_idx", "instance_uuid"),)

    id = mapped_column(sa.Integer, primary_key=True)
    key = mapped_column(sa.String(255))
    value = mapped_column(sa.String(255))
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))

    instance = relationship(
        Instance,
        primaryjoin=lambda: sa.and_(
            InstanceMetadata.instance_uuid == Instance.uuid, _live(InstanceMetadata.deleted)
        ),
        viewonly=True,
    )


class InstanceSystemMetadata(BASE, NovaBase):
    """A system metadata key/value pair of an instance."""

    __tablename__ = "instance_system_metadata"
    # Not in nova's model (MySQL indexed the foreign key by itself): every instance read
    # looks rows up by instance_uuid, on PostgreSQL and SQLite too.
    __table_args__ = (sa.Index("instance_system_metadata_instance_uuid_idx", "instance_uuid"),)

    id = mapped_column(sa.Integer, primary_key=True)
    key = mapped_column(sa.String(255), nullable=False)
    value = mapped_column(sa.String(255))
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"), nullable=False)

    # The join as text, as nova exposed it (evaluated against the model registry).
    primary_join: ClassVar[str] = (
        "and_(InstanceSystemMetadata.instance_uuid == Instance.uuid, "
        "InstanceSystemMetadata.deleted == 0)"
    )
    instance = relationship(Instance, primaryjoin=primary_join, viewonly=True)


class InstanceFault(BASE, NovaBase):
    """An error recorded against an instance."""

    __tablename__ = "instance_faults"
    __table_args__ = (
        sa.Index("instance_faults_host_idx", "host"),
        sa.Index(
            "instance_faults_instance_uuid_deleted_created_at_idx",
            "instance_uuid",
            "deleted",
            "created_at",
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    code = mapped_column(sa.Integer, nullable=False)
    message = mapped_column(sa.String(255))
    details = mapped_column(MediumText())
    host = mapped_column(sa.String(255))


class InstanceAction(BASE, NovaBase):
    """A user action on an instance (reboot, resize, ...)."""

    __tablename__ = "instance_actions"
    __table_args__ = (
        sa.Index("instance_uuid_idx", "instance_uuid"),
        sa.Index("request_id_idx", "request_id"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    action = mapped_column(sa.String(255))
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    request_id = mapped_column(sa.String(255))
    user_id = mapped_column(sa.String(255))
    project_id = mapped_column(sa.String(255))
    start_time = mapped_column(UTCDateTime(), default=utcnow)
    finish_time = mapped_column(UTCDateTime())
    message = mapped_column(sa.String(255))


class InstanceActionEvent(BASE, NovaBase):
    """One step of an instance action, with its result."""

    __tablename__ = "instance_actions_events"

    id = mapped_column(sa.Integer, primary_key=True)
    event = mapped_column(sa.String(255))
    action_id = mapped_column(sa.Integer, sa.ForeignKey("instance_actions.id"))
    start_time = mapped_column(UTCDateTime(), default=utcnow)
    finish_time = mapped_column(UTCDateTime())
    result = mapped_column(sa.String(255))
    traceback = mapped_column(sa.Text)
    host = mapped_column(sa.String(255))
    details = mapped_column(sa.Text)


class InstanceIdMapping(BASE, NovaBase):
    """The EC2 integer id of an instance uuid."""

    __tablename__ = "instance_id_mappings"
    __table_args__ = (sa.Index("ix_instance_id_mappings_uuid", "uuid"),)

    id = mapped_column(sa.Integer, primary_key=True)
    uuid = mapped_column(sa.String(36), nullable=False)


# --- flavors --------------------------------------------------------------------------------


class InstanceTypes(BASE, NovaBase):
    """A flavor: the size of an instance (memory, vCPUs, disks)."""

    __tablename__ = "instance_types"
    __table_args__ = (
        sa.UniqueConstraint("flavorid", "deleted", name="uniq_instance_types0flavorid0deleted"),
        sa.UniqueConstraint("name", "deleted", name="uniq_instance_types0name0deleted"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    name = mapped_column(sa.String(255))
    memory_mb = mapped_column(sa.Integer, nullable=False)
    vcpus = mapped_column(sa.Integer, nullable=False)
    root_gb = mapped_column(sa.Integer)
    ephemeral_gb = mapped_column(sa.Integer)
    flavorid = mapped_column(sa.String(255))
    swap = mapped_column(sa.Integer, nullable=False, default=0)
    # DOUBLE on MariaDB: a single-precision FLOAT would read 1.1 back as 1.100000023841858.
    rxtx_factor = mapped_column(sa.Float(53), default=1)
    vcpu_weight = mapped_column(sa.Integer)
    disabled = mapped_column(sa.Boolean, default=False)
    is_public = mapped_column(sa.Boolean, default=True)

    projects = relationship(
        "InstanceTypeProjects",
        primaryjoin=lambda: sa.and_(
            InstanceTypeProjects.instance_type_id == InstanceTypes.id,
            _live(InstanceTypeProjects.deleted),
        ),
        viewonly=True,
    )
    extra_specs = relationship(
        "InstanceTypeExtraSpecs",
        primaryjoin=lambda: sa.and_(
            InstanceTypeExtraSpecs.instance_type_id == InstanceTypes.id,
            _live(InstanceTypeExtraSpecs.deleted),
        ),
        viewonly=True,
    )


class InstanceTypeProjects(BASE, NovaBase):
    """A project allowed to use a private flavor."""

    __tablename__ = "instance_type_projects"
    __table_args__ = (
        sa.UniqueConstraint(
            "instance_type_id",
            "project_id",
            "deleted",
            name="uniq_instance_type_projects0instance_type_id0project_id0deleted",
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    instance_type_id = mapped_column(sa.Integer, sa.ForeignKey("instance_types.id"), nullable=False)
    project_id = mapped_column(sa.String(255))

    instance_type = relationship(
        InstanceTypes,
        primaryjoin=lambda: sa.and_(
            InstanceTypeProjects.instance_type_id == InstanceTypes.id,
            _live(InstanceTypeProjects.deleted),
        ),
        viewonly=True,
    )


class InstanceTypeExtraSpecs(BASE, NovaBase):
    """An extra-spec key/value pair of a flavor."""

    __tablename__ = "instance_type_extra_specs"
    __table_args__ = (
        sa.Index("instance_type_extra_specs_instance_type_id_key_idx", "instance_type_id", "key"),
        sa.UniqueConstraint(
            "instance_type_id",
            "key",
            "deleted",
            name="uniq_instance_type_extra_specs0instance_type_id0key0deleted",
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    key = mapped_column(sa.String(255))
    value = mapped_column(sa.String(255))
    instance_type_id = mapped_column(sa.Integer, sa.ForeignKey("instance_types.id"), nullable=False)

    instance_type = relationship(
        InstanceTypes,
        primaryjoin=lambda: sa.and_(
            InstanceTypeExtraSpecs.instance_type_id == InstanceTypes.id,
            _live(InstanceTypeExtraSpecs.deleted),
        ),
        viewonly=True,
    )


# --- volumes (legacy tables no API function uses) -------------------------------------------


class Volume(BASE, NovaBase):
    """A block storage device that can be attached to a VM (legacy)."""

    __tablename__ = "volumes"
    __table_args__ = (sa.Index("volumes_instance_uuid_idx", "instance_uuid"),)

    id = mapped_column(sa.String(36), primary_key=True)
    # Soft-deleted rows hold their id here; live rows ''.
    deleted = mapped_column(sa.String(36), default="")
    ec2_id = mapped_column(sa.String(255))
    user_id = mapped_column(sa.String(255))
    project_id = mapped_column(sa.String(255))
    snapshot_id = mapped_column(sa.String(36))
    host = mapped_column(sa.String(255))
    size = mapped_column(sa.Integer)
    availability_zone = mapped_column(sa.String(255))
    instance_uuid = mapped_column(sa.String(36))
    mountpoint = mapped_column(sa.String(255))
    attach_time = mapped_column(UTCDateTime())
    status = mapped_column(sa.String(255))
    attach_status = mapped_column(sa.String(255))
    scheduled_at = mapped_column(UTCDateTime())
    launched_at = mapped_column(UTCDateTime())
    terminated_at = mapped_column(UTCDateTime())
    display_name = mapped_column(sa.String(255))
    display_description = mapped_column(sa.String(255))
    provider_location = mapped_column(sa.String(256))
    provider_auth = mapped_column(sa.String(256))
    volume_type_id = mapped_column(sa.Integer)

    iscsi_target = relationship(
        "IscsiTarget",
        primaryjoin=lambda: sa.and_(IscsiTarget.volume_id == Volume.id, _live(IscsiTarget.deleted)),
        uselist=False,
        viewonly=True,
    )

    @property
    def name(self) -> str:
        """The volume's name (``volume-<id>``; nova's option for it was never registered)."""
        return f"volume-{self.id}"


class Snapshot(BASE, NovaBase):
    """A snapshot of a volume (legacy)."""

    __tablename__ = "snapshots"

    id = mapped_column(sa.String(36), primary_key=True)
    deleted = mapped_column(sa.String(36), default="")
    user_id = mapped_column(sa.String(255))
    project_id = mapped_column(sa.String(255))
    volume_id = mapped_column(sa.String(36), nullable=False)
    status = mapped_column(sa.String(255))
    progress = mapped_column(sa.String(255))
    volume_size = mapped_column(sa.Integer)
    scheduled_at = mapped_column(UTCDateTime())
    display_name = mapped_column(sa.String(255))
    display_description = mapped_column(sa.String(255))

    @property
    def name(self) -> str:
        """The snapshot's name (``snapshot-<id>``)."""
        return f"snapshot-{self.id}"

    @property
    def volume_name(self) -> str:
        """The snapshotted volume's name (``volume-<volume_id>``)."""
        return f"volume-{self.volume_id}"


class IscsiTarget(BASE, NovaBase):
    """An iSCSI target number on a host, for a volume (legacy)."""

    __tablename__ = "iscsi_targets"
    __table_args__ = (
        sa.Index("iscsi_targets_volume_id_fkey", "volume_id"),
        sa.Index("iscsi_targets_host_idx", "host"),
        sa.Index("iscsi_targets_host_volume_id_deleted_idx", "host", "volume_id", "deleted"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    target_num = mapped_column(sa.Integer)
    host = mapped_column(sa.String(255))
    volume_id = mapped_column(sa.String(36), sa.ForeignKey("volumes.id"))

    volume = relationship(
        Volume,
        primaryjoin=lambda: sa.and_(IscsiTarget.volume_id == Volume.id, _live(IscsiTarget.deleted)),
        viewonly=True,
    )


class BlockDeviceMapping(BASE, NovaBase):
    """How a block device (volume, snapshot, image, blank) is attached to an instance."""

    __tablename__ = "block_device_mapping"
    __table_args__ = (
        sa.Index("snapshot_id", "snapshot_id"),
        sa.Index("volume_id", "volume_id"),
        sa.Index(
            "block_device_mapping_instance_uuid_device_name_idx", "instance_uuid", "device_name"
        ),
        sa.Index("block_device_mapping_instance_uuid_volume_id_idx", "instance_uuid", "volume_id"),
        sa.Index("block_device_mapping_instance_uuid_idx", "instance_uuid"),
        sa.Index(
            "block_device_mapping_instance_uuid_virtual_name_device_name_idx",
            "instance_uuid",
            "device_name",
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    source_type = mapped_column(sa.String(255))
    destination_type = mapped_column(sa.String(255))
    guest_format = mapped_column(sa.String(255))
    device_type = mapped_column(sa.String(255))
    disk_bus = mapped_column(sa.String(255))
    boot_index = mapped_column(sa.Integer)
    device_name = mapped_column(sa.String(255))
    delete_on_termination = mapped_column(sa.Boolean, default=False)
    snapshot_id = mapped_column(sa.String(36))
    volume_id = mapped_column(sa.String(36))
    volume_size = mapped_column(sa.Integer)
    image_id = mapped_column(sa.String(36))
    no_device = mapped_column(sa.Boolean)
    connection_info = mapped_column(MediumText())

    instance = relationship(
        Instance,
        primaryjoin=lambda: sa.and_(
            BlockDeviceMapping.instance_uuid == Instance.uuid, _live(BlockDeviceMapping.deleted)
        ),
        viewonly=True,
    )


# --- quotas ---------------------------------------------------------------------------------


class Quota(BASE, NovaBase):
    """A project's limit on one resource (NULL hard_limit: unlimited)."""

    __tablename__ = "quotas"
    __table_args__ = (
        sa.UniqueConstraint(
            "project_id", "resource", "deleted", name="uniq_quotas0project_id0resource0deleted"
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    project_id = mapped_column(sa.String(255))
    resource = mapped_column(sa.String(255), nullable=False)
    hard_limit = mapped_column(sa.Integer)


class ProjectUserQuota(BASE, NovaBase):
    """A user's limit on one resource within a project."""

    uniq_name: ClassVar[str] = "uniq_project_user_quotas0user_id0project_id0resource0deleted"

    __tablename__ = "project_user_quotas"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "project_id", "resource", "deleted", name=uniq_name),
        sa.Index("project_user_quotas_project_id_deleted_idx", "project_id", "deleted"),
        sa.Index("project_user_quotas_user_id_deleted_idx", "user_id", "deleted"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    project_id = mapped_column(sa.String(255), nullable=False)
    user_id = mapped_column(sa.String(255), nullable=False)
    resource = mapped_column(sa.String(255), nullable=False)
    hard_limit = mapped_column(sa.Integer)


class QuotaClass(BASE, NovaBase):
    """A quota class's limit on one resource (the defaults projects fall back to)."""

    __tablename__ = "quota_classes"
    __table_args__ = (sa.Index("ix_quota_classes_class_name", "class_name"),)

    id = mapped_column(sa.Integer, primary_key=True)
    class_name = mapped_column(sa.String(255))
    resource = mapped_column(sa.String(255))
    hard_limit = mapped_column(sa.Integer)


class QuotaUsage(BASE, NovaBase):
    """How much of a resource a project (and user) uses and has reserved."""

    __tablename__ = "quota_usages"
    __table_args__ = (sa.Index("ix_quota_usages_project_id", "project_id"),)

    id = mapped_column(sa.Integer, primary_key=True)
    project_id = mapped_column(sa.String(255))
    user_id = mapped_column(sa.String(255))
    resource = mapped_column(sa.String(255), nullable=False)
    in_use = mapped_column(sa.Integer, nullable=False)
    reserved = mapped_column(sa.Integer, nullable=False)
    until_refresh = mapped_column(sa.Integer)

    @property
    def total(self) -> int:
        """In use plus reserved."""
        return self.in_use + self.reserved


class Reservation(BASE, NovaBase):
    """A pending change to a quota usage, committed or rolled back later."""

    __tablename__ = "reservations"
    __table_args__ = (
        sa.Index("ix_reservations_project_id", "project_id"),
        sa.Index("reservations_uuid_idx", "uuid"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    uuid = mapped_column(sa.String(36), nullable=False)
    usage_id = mapped_column(sa.Integer, sa.ForeignKey("quota_usages.id"), nullable=False)
    project_id = mapped_column(sa.String(255))
    user_id = mapped_column(sa.String(255))
    resource = mapped_column(sa.String(255))
    delta = mapped_column(sa.Integer, nullable=False)
    expire = mapped_column(UTCDateTime())

    usage = relationship(
        QuotaUsage,
        primaryjoin=lambda: sa.and_(
            Reservation.usage_id == QuotaUsage.id, _live(QuotaUsage.deleted)
        ),
        viewonly=True,
    )


# --- security groups and firewall rules -----------------------------------------------------


class SecurityGroupInstanceAssociation(BASE, NovaBase):
    """An instance's membership of a security group."""

    __tablename__ = "security_group_instance_association"
    __table_args__ = (
        sa.Index("security_group_instance_association_instance_uuid_idx", "instance_uuid"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    security_group_id = mapped_column(sa.Integer, sa.ForeignKey("security_groups.id"))
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))


_association = SecurityGroupInstanceAssociation.__table__


class SecurityGroup(BASE, NovaBase):
    """A named set of firewall rules of a project."""

    __tablename__ = "security_groups"
    __table_args__ = (
        # nova's model had a plain index here; its migration (the real schema) is unique.
        sa.UniqueConstraint(
            "project_id", "name", "deleted", name="uniq_security_groups0project_id0name0deleted"
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    name = mapped_column(sa.String(255))
    description = mapped_column(sa.String(255))
    user_id = mapped_column(sa.String(255))
    project_id = mapped_column(sa.String(255))

    instances = relationship(
        Instance,
        secondary="security_group_instance_association",
        primaryjoin=lambda: sa.and_(
            SecurityGroup.id == _association.c.security_group_id,
            _live(_association.c.deleted),
            _live(SecurityGroup.deleted),
        ),
        secondaryjoin=lambda: sa.and_(
            _association.c.instance_uuid == Instance.uuid, _live(Instance.deleted)
        ),
        viewonly=True,
    )
    rules = relationship(
        "SecurityGroupIngressRule",
        primaryjoin=lambda: sa.and_(
            SecurityGroupIngressRule.parent_group_id == SecurityGroup.id,
            _live(SecurityGroupIngressRule.deleted),
        ),
        viewonly=True,
    )


class SecurityGroupIngressRule(BASE, NovaBase):
    """An ingress rule of a security group: a port range from a CIDR or another group."""

    __tablename__ = "security_group_rules"

    id = mapped_column(sa.Integer, primary_key=True)
    parent_group_id = mapped_column(sa.Integer, sa.ForeignKey("security_groups.id"))
    protocol = mapped_column(sa.String(255))
    from_port = mapped_column(sa.Integer)
    to_port = mapped_column(sa.Integer)
    cidr = mapped_column(CIDR())
    group_id = mapped_column(sa.Integer, sa.ForeignKey("security_groups.id"))

    parent_group = relationship(
        SecurityGroup,
        primaryjoin=lambda: sa.and_(
            SecurityGroupIngressRule.parent_group_id == SecurityGroup.id,
            _live(SecurityGroupIngressRule.deleted),
        ),
        viewonly=True,
    )
    grantee_group = relationship(
        SecurityGroup,
        primaryjoin=lambda: sa.and_(
            SecurityGroupIngressRule.group_id == SecurityGroup.id,
            _live(SecurityGroupIngressRule.deleted),
        ),
        viewonly=True,
    )


class SecurityGroupIngressDefaultRule(BASE, NovaBase):
    """A rule copied into every project's default security group."""

    __tablename__ = "security_group_default_rules"

    id = mapped_column(sa.Integer, primary_key=True)
    protocol = mapped_column(sa.String(5))
    from_port = mapped_column(sa.Integer)
    to_port = mapped_column(sa.Integer)
    cidr = mapped_column(CIDR())


class ProviderFirewallRule(BASE, NovaBase):
    """A firewall rule the provider applies to every instance."""

    __tablename__ = "provider_fw_rules"

    id = mapped_column(sa.Integer, primary_key=True)
    protocol = mapped_column(sa.String(5))
    from_port = mapped_column(sa.Integer)
    to_port = mapped_column(sa.Integer)
    cidr = mapped_column(CIDR())


class KeyPair(BASE, NovaBase):
    """A user's SSH public key, by name."""

    __tablename__ = "key_pairs"
    __table_args__ = (
        sa.UniqueConstraint(
            "user_id", "name", "deleted", name="uniq_key_pairs0user_id0name0deleted"
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    name = mapped_column(sa.String(255))
    user_id = mapped_column(sa.String(255))
    fingerprint = mapped_column(sa.String(255))
    public_key = mapped_column(MediumText())


_MIGRATION_PREFIXES = dict.fromkeys(
    ("source_compute", "dest_compute", "source_node", "dest_node", "status"), 100
)


class Migration(BASE, NovaBase):
    """A resize or live/cold migration of an instance between hosts."""

    __tablename__ = "migrations"
    __table_args__ = (
        sa.Index("migrations_instance_uuid_and_status_idx", "instance_uuid", "status"),
        # Five VARCHAR(255) in utf8mb4 exceed InnoDB's 3072-byte key: index 100-char
        # prefixes on MariaDB/MySQL, as nova's MySQL migration did.
        sa.Index(
            "migrations_by_host_nodes_and_status_idx",
            "deleted",
            "source_compute",
            "dest_compute",
            "source_node",
            "dest_node",
            "status",
            # A mariadb:// URL's dialect reads only mariadb_* options, mysql:// only mysql_*.
            mysql_length=_MIGRATION_PREFIXES,
            mariadb_length=_MIGRATION_PREFIXES,
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    source_compute = mapped_column(sa.String(255))
    dest_compute = mapped_column(sa.String(255))
    source_node = mapped_column(sa.String(255))
    dest_node = mapped_column(sa.String(255))
    dest_host = mapped_column(sa.String(255))
    old_instance_type_id = mapped_column(sa.Integer)
    new_instance_type_id = mapped_column(sa.Integer)
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    status = mapped_column(sa.String(255))

    instance = relationship(
        Instance,
        primaryjoin=lambda: sa.and_(
            Migration.instance_uuid == Instance.uuid, _live(Instance.deleted)
        ),
        viewonly=True,
    )


# --- networking -----------------------------------------------------------------------------


class Network(BASE, NovaBase):
    """A nova-network network: its CIDRs, VLAN, bridge, DHCP and DNS settings."""

    __tablename__ = "networks"
    __table_args__ = (
        sa.UniqueConstraint("vlan", "deleted", name="uniq_networks0vlan0deleted"),
        sa.Index("networks_bridge_deleted_idx", "bridge", "deleted"),
        sa.Index("networks_host_idx", "host"),
        sa.Index("networks_project_id_deleted_idx", "project_id", "deleted"),
        sa.Index("networks_uuid_project_id_deleted_idx", "uuid", "project_id", "deleted"),
        sa.Index("networks_vlan_deleted_idx", "vlan", "deleted"),
        sa.Index("networks_cidr_v6_idx", "cidr_v6"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    label = mapped_column(sa.String(255))
    injected = mapped_column(sa.Boolean, default=False)
    cidr = mapped_column(CIDR())
    cidr_v6 = mapped_column(CIDR())
    multi_host = mapped_column(sa.Boolean, default=False)
    gateway_v6 = mapped_column(IPAddress())
    netmask_v6 = mapped_column(IPAddress())
    netmask = mapped_column(IPAddress())
    bridge = mapped_column(sa.String(255))
    bridge_interface = mapped_column(sa.String(255))
    gateway = mapped_column(IPAddress())
    broadcast = mapped_column(IPAddress())
    dns1 = mapped_column(IPAddress())
    dns2 = mapped_column(IPAddress())
    vlan = mapped_column(sa.Integer)
    vpn_public_address = mapped_column(IPAddress())
    vpn_public_port = mapped_column(sa.Integer)
    vpn_private_address = mapped_column(IPAddress())
    dhcp_start = mapped_column(IPAddress())
    rxtx_base = mapped_column(sa.Integer)
    project_id = mapped_column(sa.String(255))
    priority = mapped_column(sa.Integer)
    host = mapped_column(sa.String(255))
    uuid = mapped_column(sa.String(36))
    mtu = mapped_column(sa.Integer)
    dhcp_server = mapped_column(IPAddress())
    enable_dhcp = mapped_column(sa.Boolean, default=True)
    share_address = mapped_column(sa.Boolean, default=False)

    fixed_ips = relationship(
        "FixedIp",
        primaryjoin=lambda: sa.and_(
            foreign(FixedIp.network_id) == Network.id,
            _live(FixedIp.deleted),
            _live(Network.deleted),
        ),
        viewonly=True,
    )


class VirtualInterface(BASE, NovaBase):
    """A virtual NIC of an instance on a network (its MAC address)."""

    __tablename__ = "virtual_interfaces"
    __table_args__ = (
        sa.UniqueConstraint("address", "deleted", name="uniq_virtual_interfaces0address0deleted"),
        # nova named this index "network_id", as on fixed_ips; PostgreSQL needs distinct names.
        sa.Index("virtual_interfaces_network_id_idx", "network_id"),
        sa.Index("virtual_interfaces_instance_uuid_fkey", "instance_uuid"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    address = mapped_column(sa.String(255))
    network_id = mapped_column(sa.Integer)
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    uuid = mapped_column(sa.String(36))


class FixedIp(BASE, NovaBase):
    """An address of a network, possibly allocated to an instance."""

    __tablename__ = "fixed_ips"
    __table_args__ = (
        sa.UniqueConstraint("address", "deleted", name="uniq_fixed_ips0address0deleted"),
        sa.Index("fixed_ips_virtual_interface_id_fkey", "virtual_interface_id"),
        sa.Index("network_id", "network_id"),
        sa.Index("address", "address"),
        sa.Index("fixed_ips_instance_uuid_fkey", "instance_uuid"),
        sa.Index("fixed_ips_host_idx", "host"),
        sa.Index("fixed_ips_network_id_host_deleted_idx", "network_id", "host", "deleted"),
        sa.Index(
            "fixed_ips_address_reserved_network_id_deleted_idx",
            "address",
            "reserved",
            "network_id",
            "deleted",
        ),
        sa.Index("fixed_ips_deleted_allocated_idx", "address", "deleted", "allocated"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    address = mapped_column(IPAddress())
    network_id = mapped_column(sa.Integer)
    virtual_interface_id = mapped_column(sa.Integer)
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    allocated = mapped_column(sa.Boolean, default=False)
    leased = mapped_column(sa.Boolean, default=False)
    reserved = mapped_column(sa.Boolean, default=False)
    host = mapped_column(sa.String(255))

    network = relationship(
        Network,
        primaryjoin=lambda: sa.and_(
            foreign(FixedIp.network_id) == Network.id,
            _live(FixedIp.deleted),
            _live(Network.deleted),
        ),
        viewonly=True,
    )
    instance = relationship(
        Instance,
        primaryjoin=lambda: sa.and_(
            FixedIp.instance_uuid == Instance.uuid,
            _live(FixedIp.deleted),
            _live(Instance.deleted),
        ),
        viewonly=True,
    )
    floating_ips = relationship(
        "FloatingIp",
        primaryjoin=lambda: sa.and_(
            foreign(FloatingIp.fixed_ip_id) == FixedIp.id,
            _live(FloatingIp.deleted),
            _live(FixedIp.deleted),
        ),
        viewonly=True,
    )


class FloatingIp(BASE, NovaBase):
    """A public address from a pool, possibly associated with a fixed IP."""

    __tablename__ = "floating_ips"
    __table_args__ = (
        sa.UniqueConstraint("address", "deleted", name="uniq_floating_ips0address0deleted"),
        sa.Index("fixed_ip_id", "fixed_ip_id"),
        sa.Index("floating_ips_host_idx", "host"),
        sa.Index("floating_ips_project_id_idx", "project_id"),
        sa.Index(
            "floating_ips_pool_deleted_fixed_ip_id_project_id_idx",
            "pool",
            "deleted",
            "fixed_ip_id",
            "project_id",
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    address = mapped_column(IPAddress())
    fixed_ip_id = mapped_column(sa.Integer)
    project_id = mapped_column(sa.String(255))
    host = mapped_column(sa.String(255))
    auto_assigned = mapped_column(sa.Boolean, default=False)
    pool = mapped_column(sa.String(255))
    interface = mapped_column(sa.String(255))

    fixed_ip = relationship(
        FixedIp,
        primaryjoin=lambda: sa.and_(
            foreign(FloatingIp.fixed_ip_id) == FixedIp.id,
            _live(FloatingIp.deleted),
            _live(FixedIp.deleted),
        ),
        viewonly=True,
    )


class DNSDomain(BASE, NovaBase):
    """A DNS domain with its scope (private: an availability zone; public: a project)."""

    __tablename__ = "dns_domains"
    __table_args__ = (
        # nova named this index "project_id", as on instances; PostgreSQL needs distinct names.
        sa.Index("dns_domains_project_id_idx", "project_id"),
        sa.Index("dns_domains_domain_deleted_idx", "domain", "deleted"),
    )

    # Keyed by name, with a boolean flag: there is no id to mark a deleted row with.
    deleted = mapped_column(sa.Boolean, default=False)
    domain = mapped_column(sa.String(255), primary_key=True)
    scope = mapped_column(sa.String(255))
    availability_zone = mapped_column(sa.String(255))
    project_id = mapped_column(sa.String(255))

    def soft_delete(self, session: Session) -> None:
        """Mark this domain deleted (``deleted = True``, ``deleted_at = now``) and flush."""
        self.deleted = True
        self.deleted_at = utcnow()
        session.add(self)
        session.flush()


# --- consoles -------------------------------------------------------------------------------


class ConsolePool(BASE, NovaBase):
    """A console proxy's pool of consoles for one compute host and console type."""

    __tablename__ = "console_pools"
    __table_args__ = (
        sa.UniqueConstraint(
            "host",
            "console_type",
            "compute_host",
            "deleted",
            name="uniq_console_pools0host0console_type0compute_host0deleted",
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    address = mapped_column(IPAddress())
    username = mapped_column(sa.String(255))
    password = mapped_column(sa.String(255))
    console_type = mapped_column(sa.String(255))
    public_hostname = mapped_column(sa.String(255))
    host = mapped_column(sa.String(255))
    compute_host = mapped_column(sa.String(255))

    consoles = relationship(
        "Console", primaryjoin=lambda: Console.pool_id == ConsolePool.id, viewonly=True
    )


class Console(BASE, NovaBase):
    """A console of an instance in a console pool."""

    __tablename__ = "consoles"
    __table_args__ = (sa.Index("consoles_instance_uuid_idx", "instance_uuid"),)

    id = mapped_column(sa.Integer, primary_key=True)
    instance_name = mapped_column(sa.String(255))
    instance_uuid = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    password = mapped_column(sa.String(255))
    port = mapped_column(sa.Integer)
    pool_id = mapped_column(sa.Integer, sa.ForeignKey("console_pools.id"))

    pool = relationship(
        ConsolePool, primaryjoin=lambda: Console.pool_id == ConsolePool.id, viewonly=True
    )


# --- cells, aggregates, agents --------------------------------------------------------------


class Cell(BASE, NovaBase):
    """A neighbouring cell (parent or child) of this one."""

    __tablename__ = "cells"
    __table_args__ = (sa.UniqueConstraint("name", "deleted", name="uniq_cells0name0deleted"),)

    id = mapped_column(sa.Integer, primary_key=True)
    name = mapped_column(sa.String(255))
    api_url = mapped_column(sa.String(255))
    transport_url = mapped_column(sa.String(255), nullable=False)
    weight_offset = mapped_column(sa.Float(53), default=0.0)
    weight_scale = mapped_column(sa.Float(53), default=1.0)
    is_parent = mapped_column(sa.Boolean)


class AggregateHost(BASE, NovaBase):
    """A host's membership of an aggregate."""

    __tablename__ = "aggregate_hosts"
    __table_args__ = (
        sa.UniqueConstraint(
            "host", "aggregate_id", "deleted", name="uniq_aggregate_hosts0host0aggregate_id0deleted"
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    host = mapped_column(sa.String(255))
    aggregate_id = mapped_column(sa.Integer, sa.ForeignKey("aggregates.id"), nullable=False)


class AggregateMetadata(BASE, NovaBase):
    """A metadata key/value pair of an aggregate."""

    __tablename__ = "aggregate_metadata"
    __table_args__ = (
        sa.UniqueConstraint(
            "aggregate_id",
            "key",
            "deleted",
            name="uniq_aggregate_metadata0aggregate_id0key0deleted",
        ),
        sa.Index("aggregate_metadata_key_idx", "key"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    key = mapped_column(sa.String(255), nullable=False)
    value = mapped_column(sa.String(255), nullable=False)
    aggregate_id = mapped_column(sa.Integer, sa.ForeignKey("aggregates.id"), nullable=False)


class Aggregate(BASE, NovaBase):
    """A named group of hosts with metadata (an availability zone, for one)."""

    __tablename__ = "aggregates"

    _extra_keys: ClassVar[list[str]] = ["hosts", "metadetails", "availability_zone"]

    id = mapped_column(sa.Integer, primary_key=True)
    name = mapped_column(sa.String(255))

    _hosts = relationship(
        AggregateHost,
        primaryjoin=lambda: sa.and_(
            Aggregate.id == AggregateHost.aggregate_id,
            _live(AggregateHost.deleted),
            _live(Aggregate.deleted),
        ),
        viewonly=True,
    )
    _metadata = relationship(
        AggregateMetadata,
        primaryjoin=lambda: sa.and_(
            Aggregate.id == AggregateMetadata.aggregate_id,
            _live(AggregateMetadata.deleted),
            _live(Aggregate.deleted),
        ),
        viewonly=True,
    )

    @property
    def hosts(self) -> list[str]:
        """The names of the aggregate's hosts."""
        return [row.host for row in self._hosts]

    @property
    def metadetails(self) -> dict[str, str]:
        """The aggregate's metadata as a dict."""
        return {row.key: row.value for row in self._metadata}

    @property
    def availability_zone(self) -> str | None:
        """The ``availability_zone`` metadata value, or None."""
        return self.metadetails.get("availability_zone")


class AgentBuild(BASE, NovaBase):
    """A guest agent build for a hypervisor, OS and architecture."""

    __tablename__ = "agent_builds"
    __table_args__ = (
        sa.Index("agent_builds_hypervisor_os_arch_idx", "hypervisor", "os", "architecture"),
        sa.UniqueConstraint(
            "hypervisor",
            "os",
            "architecture",
            "deleted",
            name="uniq_agent_builds0hypervisor0os0architecture0deleted",
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    hypervisor = mapped_column(sa.String(255))
    os = mapped_column(sa.String(255))
    architecture = mapped_column(sa.String(255))
    version = mapped_column(sa.String(255))
    url = mapped_column(sa.String(255))
    md5hash = mapped_column(sa.String(255))


# --- usage caches, id mappings, task log ----------------------------------------------------


class BandwidthUsage(BASE, NovaBase):
    """Bandwidth counters of an instance's NIC for one period, from the hypervisor."""

    __tablename__ = "bw_usage_cache"
    __table_args__ = (sa.Index("bw_usage_cache_uuid_start_period_idx", "uuid", "start_period"),)

    id = mapped_column(sa.Integer, primary_key=True)
    uuid = mapped_column(sa.String(36))
    mac = mapped_column(sa.String(255))
    start_period = mapped_column(UTCDateTime(), nullable=False)
    last_refreshed = mapped_column(UTCDateTime())
    bw_in = mapped_column(sa.BigInteger)
    bw_out = mapped_column(sa.BigInteger)
    last_ctr_in = mapped_column(sa.BigInteger)
    last_ctr_out = mapped_column(sa.BigInteger)


class VolumeUsage(BASE, NovaBase):
    """I/O counters of a volume, totals and the current period."""

    __tablename__ = "volume_usage_cache"
    # Not in nova's model: vol_usage_update finds (and locks) a volume's row by volume_id.
    __table_args__ = (sa.Index("volume_usage_cache_volume_id_idx", "volume_id"),)

    id = mapped_column(sa.Integer, primary_key=True)
    volume_id = mapped_column(sa.String(36), nullable=False)
    instance_uuid = mapped_column(sa.String(36))
    project_id = mapped_column(sa.String(36))
    user_id = mapped_column(sa.String(64))
    availability_zone = mapped_column(sa.String(255))
    tot_last_refreshed = mapped_column(UTCDateTime())
    tot_reads = mapped_column(sa.BigInteger, default=0)
    tot_read_bytes = mapped_column(sa.BigInteger, default=0)
    tot_writes = mapped_column(sa.BigInteger, default=0)
    tot_write_bytes = mapped_column(sa.BigInteger, default=0)
    curr_last_refreshed = mapped_column(UTCDateTime())
    curr_reads = mapped_column(sa.BigInteger, default=0)
    curr_read_bytes = mapped_column(sa.BigInteger, default=0)
    curr_writes = mapped_column(sa.BigInteger, default=0)
    curr_write_bytes = mapped_column(sa.BigInteger, default=0)


class S3Image(BASE, NovaBase):
    """The EC2 integer id of an S3 image uuid."""

    __tablename__ = "s3_images"

    id = mapped_column(sa.Integer, primary_key=True)
    uuid = mapped_column(sa.String(36), nullable=False)


class VolumeIdMapping(BASE, NovaBase):
    """The EC2 integer id of a volume uuid."""

    __tablename__ = "volume_id_mappings"

    id = mapped_column(sa.Integer, primary_key=True)
    uuid = mapped_column(sa.String(36), nullable=False)


class SnapshotIdMapping(BASE, NovaBase):
    """The EC2 integer id of a snapshot uuid."""

    __tablename__ = "snapshot_id_mappings"

    id = mapped_column(sa.Integer, primary_key=True)
    uuid = mapped_column(sa.String(36), nullable=False)


class TaskLog(BASE, NovaBase):
    """A periodic task's run on a host for one audit period."""

    __tablename__ = "task_log"
    __table_args__ = (
        sa.UniqueConstraint(
            "task_name",
            "host",
            "period_beginning",
            "period_ending",
            name="uniq_task_log0task_name0host0period_beginning0period_ending",
        ),
        sa.Index("ix_task_log_period_beginning", "period_beginning"),
        sa.Index("ix_task_log_host", "host"),
        sa.Index("ix_task_log_period_ending", "period_ending"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    task_name = mapped_column(sa.String(255), nullable=False)
    state = mapped_column(sa.String(255), nullable=False)
    host = mapped_column(sa.String(255), nullable=False)
    period_beginning = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    period_ending = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    message = mapped_column(sa.String(255), nullable=False)
    task_items = mapped_column(sa.Integer, default=0)
    errors = mapped_column(sa.Integer, default=0)


# --- instance groups ------------------------------------------------------------------------


class InstanceGroupMember(BASE, NovaBase):
    """An instance's membership of an instance group."""

    __tablename__ = "instance_group_member"
    __table_args__ = (sa.Index("instance_group_member_instance_idx", "instance_id"),)

    id = mapped_column(sa.Integer, primary_key=True)
    instance_id = mapped_column(sa.String(255))
    group_id = mapped_column(sa.Integer, sa.ForeignKey("instance_groups.id"), nullable=False)


class InstanceGroupPolicy(BASE, NovaBase):
    """A scheduling policy of an instance group (affinity, anti-affinity)."""

    __tablename__ = "instance_group_policy"
    __table_args__ = (sa.Index("instance_group_policy_policy_idx", "policy"),)

    id = mapped_column(sa.Integer, primary_key=True)
    policy = mapped_column(sa.String(255))
    group_id = mapped_column(sa.Integer, sa.ForeignKey("instance_groups.id"), nullable=False)


class InstanceGroupMetadata(BASE, NovaBase):
    """A metadata key/value pair of an instance group."""

    __tablename__ = "instance_group_metadata"
    __table_args__ = (sa.Index("instance_group_metadata_key_idx", "key"),)

    id = mapped_column(sa.Integer, primary_key=True)
    key = mapped_column(sa.String(255))
    value = mapped_column(sa.String(255))
    group_id = mapped_column(sa.Integer, sa.ForeignKey("instance_groups.id"), nullable=False)


class InstanceGroup(BASE, NovaBase):
    """A group of instances scheduled together under policies."""

    __tablename__ = "instance_groups"
    __table_args__ = (
        sa.UniqueConstraint("uuid", "deleted", name="uniq_instance_groups0uuid0deleted"),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    user_id = mapped_column(sa.String(255))
    project_id = mapped_column(sa.String(255))
    uuid = mapped_column(sa.String(36), nullable=False)
    name = mapped_column(sa.String(255))

    _policies = relationship(
        InstanceGroupPolicy,
        primaryjoin=lambda: sa.and_(
            InstanceGroup.id == InstanceGroupPolicy.group_id,
            _live(InstanceGroupPolicy.deleted),
            _live(InstanceGroup.deleted),
        ),
        viewonly=True,
    )
    _metadata = relationship(
        InstanceGroupMetadata,
        primaryjoin=lambda: sa.and_(
            InstanceGroup.id == InstanceGroupMetadata.group_id,
            _live(InstanceGroupMetadata.deleted),
            _live(InstanceGroup.deleted),
        ),
        viewonly=True,
    )
    _members = relationship(
        InstanceGroupMember,
        primaryjoin=lambda: sa.and_(
            InstanceGroup.id == InstanceGroupMember.group_id,
            _live(InstanceGroupMember.deleted),
            _live(InstanceGroup.deleted),
        ),
        viewonly=True,
    )

    @property
    def policies(self) -> list[str]:
        """The group's policy names."""
        return [row.policy for row in self._policies]

    @property
    def metadetails(self) -> dict[str, str]:
        """The group's metadata as a dict."""
        return {row.key: row.value for row in self._metadata}

    @property
    def members(self) -> list[str]:
        """The ids (uuids) of the group's member instances."""
        return [row.instance_id for row in self._members]


# --- PCI devices ----------------------------------------------------------------------------


class PciDevice(BASE, NovaBase):
    """A PCI device of a compute node that can be passed through to an instance."""

    __tablename__ = "pci_devices"
    __table_args__ = (
        sa.Index("ix_pci_devices_compute_node_id_deleted", "compute_node_id", "deleted"),
        sa.Index("ix_pci_devices_instance_uuid_deleted", "instance_uuid", "deleted"),
        sa.UniqueConstraint(
            "compute_node_id",
            "address",
            "deleted",
            name="uniq_pci_devices0compute_node_id0address0deleted",
        ),
    )

    id = mapped_column(sa.Integer, primary_key=True)
    compute_node_id = mapped_column(sa.Integer, sa.ForeignKey("compute_nodes.id"), nullable=False)
    address = mapped_column(sa.String(12), nullable=False)
    vendor_id = mapped_column(sa.String(4), nullable=False)
    product_id = mapped_column(sa.String(4), nullable=False)
    dev_type = mapped_column(sa.String(8), nullable=False)
    dev_id = mapped_column(sa.String(255))
    label = mapped_column(sa.String(255), nullable=False)
    status = mapped_column(sa.String(36), nullable=False)
    extra_info = mapped_column(sa.Text)
    # No foreign key here in nova's schema either.
    instance_uuid = mapped_column(sa.String(36))

    instance = relationship(
        Instance,
        primaryjoin=lambda: sa.and_(
            foreign(PciDevice.instance_uuid) == Instance.uuid, _live(PciDevice.deleted)
        ),
        viewonly=True,
    )


# Every table gets its shadow_<table> twin for archive_deleted_rows.
SHADOW_TABLES = create_shadow_tables(BASE.metadata)

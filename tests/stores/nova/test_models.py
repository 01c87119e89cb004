"""nova's models on every backend: schema, dict-style rows, soft-delete uniqueness, column
types, relationships with their ``deleted`` conditions, and the models' properties."""

from __future__ import annotations

import inspect as pyinspect

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload

from dblayer.core import (
    Database,
    DuplicateEntry,
    InvalidValue,
    archive_deleted_rows,
    live,
)
from dblayer.stores.nova import models
from dblayer.stores.nova.models import (
    BASE,
    Aggregate,
    AggregateHost,
    AggregateMetadata,
    BlockDeviceMapping,
    ComputeNode,
    Console,
    ConsolePool,
    DNSDomain,
    FixedIp,
    FloatingIp,
    Instance,
    InstanceGroup,
    InstanceGroupMember,
    InstanceGroupMetadata,
    InstanceGroupPolicy,
    InstanceInfoCache,
    InstanceMetadata,
    InstanceSystemMetadata,
    InstanceTypeExtraSpecs,
    InstanceTypeProjects,
    InstanceTypes,
    IscsiTarget,
    KeyPair,
    Migration,
    Network,
    NovaBase,
    PciDevice,
    ProjectUserQuota,
    QuotaUsage,
    Reservation,
    SecurityGroup,
    SecurityGroupIngressRule,
    SecurityGroupInstanceAssociation,
    Service,
    Snapshot,
    Volume,
)
from dblayer.stores.nova.types import CIDR, IPAddress, network_form, shorten_cidr, shorten_ip

MODEL_NAMES = [
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
    "Migration",
    "Network",
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


def model_classes() -> list[type]:
    return [getattr(models, name) for name in MODEL_NAMES]


def add(db: Database, *rows: NovaBase) -> None:
    """Insert ``rows`` in one committed unit of work."""
    with db.session() as session:
        for row in rows:
            row.save(session)


def make_instance(db: Database, uuid: str = "inst-1", **values: object) -> Instance:
    instance = Instance(uuid=uuid, project_id="p1", host="host1", **values)
    add(db, instance)
    return instance


# --- schema -----------------------------------------------------------------------------------


def test_all_53_models_are_mapped_with_their_tables() -> None:
    classes = model_classes()
    assert len(classes) == 53
    mapped = {mapper.class_ for mapper in BASE.registry.mappers}
    assert mapped == set(classes)
    for cls in classes:
        assert issubclass(cls, NovaBase)
        assert pyinspect.getdoc(cls)
    names = {cls.__tablename__ for cls in classes}
    assert set(BASE.metadata.tables) == names | {f"shadow_{name}" for name in names}


def test_schema_exists_on_the_backend(nova_db: Database) -> None:
    assert set(BASE.metadata.tables) <= set(nova_db.table_names())
    with nova_db.transaction(readonly=True) as conn:
        inspector = sa.inspect(conn)
        uniques = {u["name"] for u in inspector.get_unique_constraints("security_groups")}
        indexes = {i["name"]: i for i in inspector.get_indexes("instances")}
        shadow = {c["name"] for c in inspector.get_columns("shadow_instances")}
    assert "uniq_security_groups0project_id0name0deleted" in uniques
    assert indexes["uuid"]["unique"]
    assert shadow == {c.name for c in Instance.__table__.columns}


def test_names_and_lengths_fit_every_backend() -> None:
    # PostgreSQL keeps index and constraint names in one namespace per schema.
    names: list[str] = []
    for table in BASE.metadata.tables.values():
        names += [index.name for index in table.indexes]
        names += [c.name for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    assert len(names) == len(set(names))
    assert all(len(name) <= 63 for name in names)


def test_unique_constraints_carry_novas_names() -> None:
    expected = {
        "services": {"uniq_services0host0topic0deleted", "uniq_services0host0binary0deleted"},
        "key_pairs": {"uniq_key_pairs0user_id0name0deleted"},
        "instance_info_caches": {"uniq_instance_info_caches0instance_uuid"},
        "task_log": {"uniq_task_log0task_name0host0period_beginning0period_ending"},
        "project_user_quotas": {ProjectUserQuota.uniq_name},
        "pci_devices": {"uniq_pci_devices0compute_node_id0address0deleted"},
    }
    for table, names in expected.items():
        constraints = BASE.metadata.tables[table].constraints
        assert {c.name for c in constraints if isinstance(c, sa.UniqueConstraint)} == names


def test_relationships_are_viewonly_and_lazy() -> None:
    for cls in model_classes():
        for rel in sa.inspect(cls).relationships:
            assert rel.viewonly, (cls.__name__, rel.key)
            assert rel.lazy == "select", (cls.__name__, rel.key)
    instance_rels = set(sa.inspect(Instance).relationships.keys())
    assert instance_rels == {
        "metadata",
        "system_metadata",
        "info_cache",
        "security_groups",
        "block_device_mapping",
        "pci_devices",
    }


def test_base_metadata_stays_the_metadata() -> None:
    assert isinstance(BASE.metadata, sa.MetaData)
    assert Instance.__table__.metadata is BASE.metadata
    assert sa.inspect(Instance).attrs["metadata"].mapper.class_ is InstanceMetadata


# --- dict-style rows --------------------------------------------------------------------------


def test_rows_read_and_write_like_dicts(nova_db: Database) -> None:
    instance = make_instance(nova_db, display_name="vm")
    assert instance["display_name"] == "vm"
    assert instance.get("display_name") == "vm"
    assert instance.get("no_such_key", "fallback") == "fallback"
    with pytest.raises(KeyError):
        instance["no_such_key"]
    instance["host"] = "host2"
    instance.update({"node": "n1", "vcpus": 2})
    assert (instance.host, instance.node, instance.vcpus) == ("host2", "n1", 2)
    assert "host" in instance

    keys = instance.keys()
    assert keys[-1] == "name"
    assert {"id", "uuid", "deleted", "created_at", "updated_at", "deleted_at"} <= set(keys)
    assert "metadata" not in keys
    pairs = list(instance)
    assert pairs == [(key, getattr(instance, key)) for key in keys]
    as_dict = dict(instance)
    assert list(as_dict) == keys
    assert as_dict["name"] == instance.name


def test_items_add_loaded_relationships_only(nova_db: Database) -> None:
    make_instance(nova_db)
    add(nova_db, InstanceMetadata(instance_uuid="inst-1", key="k", value="v"))
    with nova_db.session() as session:
        bare = session.scalars(sa.select(Instance)).one()
        assert "metadata" not in dict(bare.items())
    with nova_db.session() as session:
        loaded = session.scalars(sa.select(Instance).options(selectinload(Instance.metadata))).one()
    items = dict(loaded.iteritems())
    assert [row.key for row in items["metadata"]] == ["k"]
    assert "system_metadata" not in items
    assert items["name"] == loaded.name
    assert not any(key.startswith("_") for key in items)


def test_rows_hash_and_compare_by_identity(nova_db: Database) -> None:
    add(nova_db, KeyPair(name="a", user_id="u"), KeyPair(name="b", user_id="u"))
    with nova_db.session() as session:
        first = session.scalars(sa.select(KeyPair).order_by(KeyPair.id)).all()
    with nova_db.session() as session:
        second = session.scalars(sa.select(KeyPair).order_by(KeyPair.id)).all()
    assert first[0] != second[0]
    assert first[0] == first[0]
    assert len({*first, *second}) == 4
    assert {first[0]: 1}[first[0]] == 1


def test_save_in_a_session_and_in_its_own_unit_of_work(nova_db: Database) -> None:
    with nova_db.session() as session:
        keypair = KeyPair(name="in-session", user_id="u")
        keypair.save(session)
        assert keypair.id is not None
        assert keypair.deleted == 0
        assert keypair.created_at is not None
    alone = KeyPair(name="alone", user_id="u")
    alone.save()  # the nova_db fixture points the store's facade at this database
    assert alone.id is not None
    with nova_db.session(readonly=True) as session:
        names = set(session.scalars(sa.select(KeyPair.name)))
    assert names == {"in-session", "alone"}


# --- soft delete and uniqueness ---------------------------------------------------------------


def test_unique_constraint_admits_a_new_row_after_soft_delete(nova_db: Database) -> None:
    add(nova_db, KeyPair(name="k", user_id="u", public_key="old"))
    with pytest.raises(DuplicateEntry) as caught:
        add(nova_db, KeyPair(name="k", user_id="u"))
    error = caught.value
    assert error.constraint == "uniq_key_pairs0user_id0name0deleted" or {"user_id", "name"} <= set(
        error.columns
    )
    with nova_db.session() as session:
        old = session.scalars(sa.select(KeyPair)).one()
        old.soft_delete(session)
        assert old.deleted == old.id and old.deleted_at is not None
    add(nova_db, KeyPair(name="k", user_id="u", public_key="new"))
    with nova_db.session() as session:
        old = session.scalars(sa.select(KeyPair).where(KeyPair.public_key == "old")).one()
        new = session.scalars(sa.select(KeyPair).where(live(KeyPair))).one()
        new.soft_delete(session)
    assert new.public_key == "new"
    assert old.deleted != new.deleted


def test_security_group_names_are_unique_per_project(nova_db: Database) -> None:
    add(nova_db, SecurityGroup(name="default", project_id="p1"))
    add(nova_db, SecurityGroup(name="default", project_id="p2"))
    with pytest.raises(DuplicateEntry):
        add(nova_db, SecurityGroup(name="default", project_id="p1"))


def test_text_compares_exactly(nova_db: Database) -> None:
    # Binary collation on MariaDB: names differing in case or trailing space are distinct.
    add(nova_db, KeyPair(name="key", user_id="u"))
    add(nova_db, KeyPair(name="KEY", user_id="u"), KeyPair(name="key ", user_id="u"))
    with nova_db.session(readonly=True) as session:
        found = session.scalars(sa.select(KeyPair.name).where(KeyPair.name == "key")).all()
    assert found == ["key"]


def test_models_with_other_deleted_columns(nova_db: Database) -> None:
    add(
        nova_db,
        DNSDomain(domain="example.org", scope="public", project_id="p1"),
        Volume(id="vol-1", size=1),
        Snapshot(id="snap-1", volume_id="vol-1"),
    )
    with nova_db.session() as session:
        domain = session.get(DNSDomain, "example.org")
        volume = session.get(Volume, "vol-1")
        snapshot = session.get(Snapshot, "snap-1")
        assert domain.deleted is False
        assert volume.deleted == "" and snapshot.deleted == ""
        assert session.scalar(sa.select(sa.func.count()).where(live(Volume))) == 1
        volume.soft_delete(session)
        domain.soft_delete(session)
        assert session.scalar(sa.select(sa.func.count()).where(live(Volume))) == 0
    assert volume.deleted == "vol-1"
    assert domain.deleted is True
    assert (volume.name, snapshot.name, snapshot.volume_name) == (
        "volume-vol-1",
        "snapshot-snap-1",
        "volume-vol-1",
    )


def test_archiving_moves_deleted_rows_to_the_shadow_tables(nova_db: Database) -> None:
    make_instance(nova_db, locked_by="owner")
    add(nova_db, KeyPair(name="k", user_id="u"))
    with nova_db.session() as session:
        session.scalars(sa.select(Instance)).one().soft_delete(session)
        session.scalars(sa.select(KeyPair)).one().soft_delete(session)
    moved = archive_deleted_rows(nova_db, BASE.metadata)
    assert moved == {"instances": 1, "key_pairs": 1}
    shadow = BASE.metadata.tables["shadow_instances"]
    with nova_db.transaction(readonly=True) as conn:
        row = conn.execute(sa.select(shadow.c.uuid, shadow.c.locked_by)).one()
    assert tuple(row) == ("inst-1", "owner")


# --- column types -----------------------------------------------------------------------------


def test_medium_text_holds_more_than_64_kb(nova_db: Database) -> None:
    key = "ssh-rsa " + "A" * 200_000
    add(nova_db, KeyPair(name="big", user_id="u", public_key=key))
    with nova_db.session(readonly=True) as session:
        assert session.scalar(sa.select(KeyPair.public_key)) == key


def test_floats_round_trip_exactly(nova_db: Database) -> None:
    add(nova_db, InstanceTypes(name="f", flavorid="1", memory_mb=1, vcpus=1, rxtx_factor=1.1))
    with nova_db.session(readonly=True) as session:
        flavor = session.scalars(sa.select(InstanceTypes)).one()
    assert flavor.rxtx_factor == 1.1
    assert (flavor.swap, flavor.disabled, flavor.is_public) == (0, False, True)


def test_ip_addresses_are_stored_in_short_form(nova_db: Database) -> None:
    add(
        nova_db,
        FixedIp(address="2001:0DB8:0000:0000:0000:0000:0000:0001"),
        FixedIp(address="10.0.0.1"),
        FixedIp(address="not-an-ip"),
        FixedIp(address=None),
    )
    with nova_db.session(readonly=True) as session:
        stored = set(session.scalars(sa.select(FixedIp.address)))
        # A query's value is shortened the same way.
        found = session.scalars(
            sa.select(FixedIp.address).where(FixedIp.address == "2001:db8:0::0:1")
        ).all()
    assert stored == {"2001:db8::1", "10.0.0.1", "not-an-ip", None}
    assert found == ["2001:db8::1"]


def test_cidrs_read_back_in_network_form(nova_db: Database) -> None:
    add(
        nova_db,
        Network(label="a", cidr="10.0.0.5/24", cidr_v6="2001:DB8:0:0::1/64"),
        Network(label="b", cidr="10.0.0.1", cidr_v6=None),
        Network(label="c", cidr="bogus"),
    )
    with nova_db.session(readonly=True) as session:
        rows = session.execute(
            sa.select(Network.label, Network.cidr, Network.cidr_v6).order_by(Network.label)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("a", "10.0.0.0/24", "2001:db8::/64"),
        ("b", "10.0.0.1/32", None),
        ("c", "bogus", None),
    ]


def test_ip_helpers() -> None:
    assert shorten_ip("0:0:0:0:0:0:0:1") == "::1"
    assert shorten_ip("010.0.0.1") == "010.0.0.1"  # not parseable: kept as given
    assert shorten_ip(None) is None
    assert shorten_cidr("2001:db8::1/64") == "2001:db8::/64"
    assert shorten_cidr("10.0.0.5/24") == "10.0.0.5/24"
    assert network_form("10.0.0.5/24") == "10.0.0.0/24"
    assert network_form(None) is None
    assert IPAddress().impl.length == 39 and CIDR().impl.length == 43


# --- relationships ----------------------------------------------------------------------------


def test_instance_relationships_skip_deleted_children(nova_db: Database) -> None:
    make_instance(nova_db)
    compute = ComputeNode(
        service_id=None,
        vcpus=1,
        memory_mb=1,
        local_gb=1,
        vcpus_used=0,
        memory_mb_used=0,
        local_gb_used=0,
        hypervisor_type="kvm",
        hypervisor_version=1,
        cpu_info="{}",
    )
    service = Service(host="host1", binary="nova-compute", topic="compute")
    add(nova_db, service)
    compute.service_id = service.id
    group = SecurityGroup(name="g", project_id="p1")
    add(nova_db, compute, group)
    add(
        nova_db,
        InstanceMetadata(instance_uuid="inst-1", key="live", value="1"),
        InstanceMetadata(instance_uuid="inst-1", key="gone", value="2"),
        InstanceSystemMetadata(instance_uuid="inst-1", key="sys", value="3"),
        InstanceInfoCache(instance_uuid="inst-1", network_info="[]"),
        BlockDeviceMapping(instance_uuid="inst-1", device_name="/dev/vda"),
        PciDevice(
            compute_node_id=compute.id,
            address="0000:00:01.0",
            vendor_id="8086",
            product_id="1520",
            dev_type="type-VF",
            label="l",
            status="allocated",
            instance_uuid="inst-1",
        ),
        SecurityGroupInstanceAssociation(security_group_id=group.id, instance_uuid="inst-1"),
        SecurityGroupIngressRule(parent_group_id=group.id, protocol="tcp", cidr="0.0.0.0/0"),
        SecurityGroupIngressRule(parent_group_id=group.id, protocol="udp", group_id=group.id),
    )
    with nova_db.session() as session:
        gone = session.scalars(
            sa.select(InstanceMetadata).where(InstanceMetadata.key == "gone")
        ).one()
        gone.soft_delete(session)
        udp = session.scalars(
            sa.select(SecurityGroupIngressRule).where(SecurityGroupIngressRule.protocol == "udp")
        ).one()
        assert udp.grantee_group is not None and udp.grantee_group.id == group.id
        udp.soft_delete(session)

    for loader in (selectinload, joinedload):
        options = [
            loader(Instance.metadata),
            loader(Instance.system_metadata),
            loader(Instance.info_cache),
            loader(Instance.block_device_mapping),
            loader(Instance.pci_devices),
            loader(Instance.security_groups).selectinload(SecurityGroup.rules),
        ]
        with nova_db.session(readonly=True) as session:
            instance = session.scalars(sa.select(Instance).options(*options)).unique().one()
        assert [row.key for row in instance.metadata] == ["live"]
        assert [row.key for row in instance["metadata"]] == ["live"]
        assert [row.key for row in instance.system_metadata] == ["sys"]
        assert instance.info_cache.network_info == "[]"
        assert [row.device_name for row in instance.block_device_mapping] == ["/dev/vda"]
        assert [row.address for row in instance.pci_devices] == ["0000:00:01.0"]
        assert [g.name for g in instance.security_groups] == ["g"]
        assert [r.protocol for r in instance.security_groups[0].rules] == ["tcp"]
        assert [r.cidr for r in instance.security_groups[0].rules] == ["0.0.0.0/0"]

    with nova_db.session() as session:
        association = session.scalars(sa.select(SecurityGroupInstanceAssociation)).one()
        association.soft_delete(session)
        instance = session.scalars(sa.select(Instance)).one()
        # Lazy loads inside the unit of work see the same conditions.
        assert instance.security_groups == []
        assert [row.key for row in instance.metadata] == ["live"]
        child = session.scalars(sa.select(InstanceSystemMetadata)).one()
        assert child.instance is instance
        assert session.scalars(sa.select(PciDevice)).one().instance is instance
        assert session.scalars(sa.select(InstanceInfoCache)).one().instance is instance
        assert session.scalars(sa.select(BlockDeviceMapping)).one().instance is instance
        node = session.scalars(sa.select(ComputeNode)).one()
        assert node.service.host == "host1"
        assert [n.id for n in node.service.compute_node] == [node.id]
    assert InstanceSystemMetadata.primary_join.startswith("and_(")


def test_network_relationships(nova_db: Database) -> None:
    make_instance(nova_db)
    network = Network(label="net", cidr="10.0.0.0/24")
    add(nova_db, network)
    fixed = FixedIp(address="10.0.0.2", network_id=network.id, instance_uuid="inst-1")
    add(nova_db, fixed)
    floating = FloatingIp(address="172.16.0.1", fixed_ip_id=fixed.id, pool="nova")
    add(nova_db, floating)
    with nova_db.session(readonly=True) as session:
        fixed = session.scalars(
            sa.select(FixedIp).options(
                joinedload(FixedIp.network),
                joinedload(FixedIp.instance),
                selectinload(FixedIp.floating_ips),
            )
        ).one()
        network = session.scalars(sa.select(Network).options(selectinload(Network.fixed_ips))).one()
        floating = session.scalars(
            sa.select(FloatingIp).options(joinedload(FloatingIp.fixed_ip))
        ).one()
    assert fixed.network.label == "net"
    assert fixed.instance.uuid == "inst-1"
    assert [f.address for f in fixed.floating_ips] == ["172.16.0.1"]
    assert [f.address for f in network.fixed_ips] == ["10.0.0.2"]
    assert floating.fixed_ip.address == "10.0.0.2"

    with nova_db.session() as session:
        session.scalars(sa.select(Instance)).one().soft_delete(session)
        fixed = session.scalars(sa.select(FixedIp)).one()
        assert fixed.instance is None  # the join requires a live instance
        fixed.soft_delete(session)
        assert session.scalars(sa.select(FloatingIp)).one().fixed_ip is None
        assert session.scalars(sa.select(Network)).one().fixed_ips == []


def test_other_relationships(nova_db: Database) -> None:
    make_instance(nova_db)
    pool = ConsolePool(host="proxy", console_type="vnc", compute_host="host1")
    usage = QuotaUsage(project_id="p1", resource="cores", in_use=2, reserved=3)
    flavor = InstanceTypes(name="f", flavorid="1", memory_mb=1, vcpus=1)
    volume = Volume(id="vol-1")
    add(nova_db, pool, usage, flavor, volume)
    add(
        nova_db,
        Console(instance_uuid="inst-1", pool_id=pool.id, port=5900),
        Reservation(uuid="r-1", usage_id=usage.id, resource="cores", delta=1),
        Migration(instance_uuid="inst-1", status="migrating"),
        InstanceTypeProjects(instance_type_id=flavor.id, project_id="p1"),
        InstanceTypeExtraSpecs(instance_type_id=flavor.id, key="k", value="v"),
        IscsiTarget(volume_id="vol-1", host="host1", target_num=1),
    )
    with nova_db.session() as session:
        pool = session.scalars(sa.select(ConsolePool)).one()
        assert [c.port for c in pool.consoles] == [5900]
        assert session.scalars(sa.select(Console)).one().pool is pool
        reservation = session.scalars(sa.select(Reservation)).one()
        assert reservation.usage.total == 5
        assert session.scalars(sa.select(Migration)).one().instance.uuid == "inst-1"
        flavor = session.scalars(sa.select(InstanceTypes)).one()
        assert [p.project_id for p in flavor.projects] == ["p1"]
        assert [(s.key, s.value) for s in flavor.extra_specs] == [("k", "v")]
        assert flavor.projects[0].instance_type is flavor
        assert flavor.extra_specs[0].instance_type is flavor
        target = session.scalars(sa.select(IscsiTarget)).one()
        assert target.volume.id == "vol-1"
        assert session.get(Volume, "vol-1").iscsi_target is target
        reservation.usage.soft_delete(session)
        session.expire(reservation)
        assert reservation.usage is None


# --- properties -------------------------------------------------------------------------------


def test_aggregate_hosts_and_metadata(nova_db: Database) -> None:
    aggregate = Aggregate(name="agg")
    add(nova_db, aggregate)
    add(
        nova_db,
        AggregateHost(host="h1", aggregate_id=aggregate.id),
        AggregateHost(host="h2", aggregate_id=aggregate.id),
        AggregateMetadata(aggregate_id=aggregate.id, key="availability_zone", value="az1"),
        AggregateMetadata(aggregate_id=aggregate.id, key="ssd", value="true"),
    )
    with nova_db.session() as session:
        session.scalars(
            sa.select(AggregateHost).where(AggregateHost.host == "h2")
        ).one().soft_delete(session)
    with nova_db.session(readonly=True) as session:
        aggregate = session.scalars(
            sa.select(Aggregate).options(
                selectinload(Aggregate._hosts), selectinload(Aggregate._metadata)
            )
        ).one()
    assert aggregate.hosts == ["h1"]
    assert aggregate.metadetails == {"availability_zone": "az1", "ssd": "true"}
    assert aggregate.availability_zone == "az1"
    row = dict(aggregate)
    assert row["hosts"] == ["h1"] and row["availability_zone"] == "az1"
    assert row["metadetails"] == {"availability_zone": "az1", "ssd": "true"}
    # The private relationships stay out of items().
    assert "_hosts" not in dict(aggregate.items())


def test_aggregate_without_zone(nova_db: Database) -> None:
    add(nova_db, Aggregate(name="plain"))
    with nova_db.session(readonly=True) as session:
        aggregate = session.scalars(sa.select(Aggregate)).one()
        assert (aggregate.hosts, aggregate.metadetails, aggregate.availability_zone) == (
            [],
            {},
            None,
        )


def test_instance_group_properties(nova_db: Database) -> None:
    group = InstanceGroup(uuid="g-1", name="grp", project_id="p1")
    add(nova_db, group)
    add(
        nova_db,
        InstanceGroupPolicy(group_id=group.id, policy="anti-affinity"),
        InstanceGroupMember(group_id=group.id, instance_id="inst-1"),
        InstanceGroupMember(group_id=group.id, instance_id="inst-2"),
        InstanceGroupMetadata(group_id=group.id, key="k", value="v"),
    )
    with nova_db.session() as session:
        member = session.scalars(
            sa.select(InstanceGroupMember).where(InstanceGroupMember.instance_id == "inst-2")
        ).one()
        member.soft_delete(session)
        group = session.scalars(sa.select(InstanceGroup)).one()
        assert group.policies == ["anti-affinity"]
        assert group.members == ["inst-1"]
        assert group.metadetails == {"k": "v"}
        # Attributes only: not part of dict(row).
        assert not {"policies", "members", "metadetails"} & set(dict(group))


def test_instance_name_and_extras(nova_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = make_instance(nova_db)
    assert instance.name == f"instance-{instance.id:08x}"
    monkeypatch.setattr(Instance, "name_template", "%(host)s-%(uuid)s")
    assert instance.name == "host1-inst-1"
    monkeypatch.setattr(Instance, "name_template", "%(no_such_column)s")
    assert instance.name == "inst-1"
    assert Instance.injected_files == []
    assert Instance._extra_keys == ["name"]


def test_other_model_extras() -> None:
    assert QuotaUsage(in_use=4, reserved=1).total == 5
    assert ProjectUserQuota.uniq_name == (
        "uniq_project_user_quotas0user_id0project_id0resource0deleted"
    )
    assert NovaBase._extra_keys == []


def test_locked_by_admits_owner_and_admin_only(nova_db: Database) -> None:
    make_instance(nova_db, uuid="a", locked_by="admin")
    make_instance(nova_db, uuid="b", locked_by=None)
    with pytest.raises(InvalidValue):
        make_instance(nova_db, uuid="c", locked_by="guest")
    with nova_db.session(readonly=True) as session:
        rows = session.execute(sa.select(Instance.uuid, Instance.locked_by).order_by(Instance.uuid))
        assert [tuple(r) for r in rows] == [("a", "admin"), ("b", None)]

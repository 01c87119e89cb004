"""The nova store's foundation: every documented name and signature, configure, NovaDBAPI,
one unit of work per call (nested calls join), access checks and use_slave readers."""

from __future__ import annotations

import inspect
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, DBLayerError
from dblayer.stores.nova import api, exception, facade, models
from dblayer.stores.nova.api._base import api as api_call
from dblayer.stores.nova.api._base import fetch_all, model_query, require_uuid, settle
from tests.stores.nova.conftest import make_instance

# Seed 004's signatures of the functions part 1 (issue 7) delivers, as the seed prints them.
PART1_SIGNATURES = """
action_event_finish(context, values)
action_event_get_by_id(context, action_id, event_id)
action_event_start(context, values)
action_events_get(context, action_id)
action_finish(context, values)
action_get_by_request_id(context, uuid, request_id)
action_start(context, values)
actions_get(context, uuid)
archive_deleted_rows(context, max_rows=None)
archive_deleted_rows_for_table(context, tablename, max_rows=None)
block_device_mapping_create(context, values, legacy=True)
block_device_mapping_destroy(context, bdm_id)
block_device_mapping_destroy_by_instance_and_device(context, instance_uuid, device_name)
block_device_mapping_destroy_by_instance_and_volume(context, instance_uuid, volume_id)
block_device_mapping_get_all_by_instance(context, instance_uuid, use_slave=False)
block_device_mapping_get_by_volume_id(context, volume_id, columns_to_join=None)
block_device_mapping_update(context, bdm_id, values, legacy=True)
block_device_mapping_update_or_create(context, values, legacy=True)
constraint(**conditions)
ec2_instance_create(context, instance_uuid, id=None)
ec2_instance_get_by_id(context, instance_id)
ec2_instance_get_by_uuid(context, instance_uuid)
ec2_snapshot_create(context, snapshot_id, forced_id=None)
ec2_volume_create(context, volume_id, forced_id=None)
ec2_volume_get_by_id(context, volume_id)
ec2_volume_get_by_uuid(context, volume_uuid)
equal_any(*values)
get_ec2_instance_id_by_uuid(context, instance_id)
get_ec2_snapshot_id_by_uuid(context, snapshot_id)
get_instance_uuid_by_ec2_id(context, ec2_id)
get_snapshot_uuid_by_ec2_id(context, ec2_id)
instance_create(context, values)
instance_destroy(context, instance_uuid, constraint=None, update_cells=True)
instance_fault_create(context, values)
instance_fault_get_by_instance_uuids(context, instance_uuids)
instance_get(context, instance_id, columns_to_join=None)
instance_get_active_by_window_joined(context, begin, end=None, project_id=None, host=None)
instance_get_all(context, columns_to_join=None)
instance_get_all_by_filters(context, filters, sort_key='created_at', sort_dir='desc', limit=None, marker=None, columns_to_join=None, use_slave=False)
instance_get_all_by_host(context, host, columns_to_join=None, use_slave=False)
instance_get_all_by_host_and_node(context, host, node)
instance_get_all_by_host_and_not_type(context, host, type_id=None)
instance_get_all_hung_in_rebooting(context, reboot_window)
instance_get_by_uuid(context, uuid, columns_to_join=None, use_slave=False)
instance_info_cache_delete(context, instance_uuid)
instance_info_cache_get(context, instance_uuid)
instance_info_cache_update(context, instance_uuid, values)
instance_metadata_delete(context, instance_uuid, key)
instance_metadata_get(context, instance_uuid)
instance_metadata_update(context, instance_uuid, metadata, delete)
instance_system_metadata_get(context, instance_uuid)
instance_system_metadata_update(context, instance_uuid, metadata, delete)
instance_update(context, instance_uuid, values, update_cells=True)
instance_update_and_get_original(context, instance_uuid, values, update_cells=True, columns_to_join=None)
migration_create(context, values)
migration_get(context, migration_id)
migration_get_all_by_filters(context, filters)
migration_get_by_instance_and_status(context, instance_uuid, status)
migration_get_in_progress_by_host_and_node(context, host, node)
migration_get_unconfirmed_by_dest_compute(context, confirm_window, dest_compute, use_slave=False)
migration_update(context, id, values)
not_equal(*values)
s3_image_create(context, image_uuid)
s3_image_get(context, image_id)
s3_image_get_by_uuid(context, image_uuid)
security_group_ensure_default(context)
""".strip().splitlines()


def _rendered(function) -> str:
    target = getattr(function, "__wrapped__", function)
    params = []
    for p in inspect.signature(target).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            params.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            params.append(f"**{p.name}")
        elif p.default is inspect.Parameter.empty:
            params.append(p.name)
        else:
            params.append(f"{p.name}={p.default!r}")
    return f"{function.__name__}({', '.join(params)})"


@pytest.mark.parametrize("signature", PART1_SIGNATURES, ids=lambda s: s.split("(")[0])
def test_every_part1_function_exists_with_the_seeds_signature(signature):
    name = signature.split("(")[0]
    function = getattr(nova, name)
    assert _rendered(function) == signature
    assert function.__doc__ and function.__doc__.strip()
    assert name in nova.FUNCTIONS
    assert callable(getattr(nova.NovaDBAPI, name))


def test_api_names_are_the_packages():
    for name in nova.FUNCTIONS:
        assert getattr(nova, name) is getattr(api, name)
    assert nova.MAX_INT == 0x7FFFFFFF


def test_configure_without_a_url_uses_the_environment_or_memory(monkeypatch, nova_db):
    monkeypatch.delenv("DBLAYER_URL", raising=False)
    try:
        db = nova.configure()
        assert db.url == "sqlite://"
        assert "instances" in db.table_names() and "shadow_instances" in db.table_names()
        assert nova.get_database() is db
    finally:
        nova.configure(database=nova_db, create_tables=False)


def test_configure_takes_a_url_and_creates_the_schema(tmp_path: Path, nova_db):
    url = f"sqlite:///{tmp_path / 'nova.db'}"
    try:
        db = nova.configure(url)
        assert db.url == url
        assert "instance_metadata" in db.table_names()
    finally:
        nova.configure(database=nova_db, create_tables=False)


def test_nova_db_api_bound_to_its_own_database(tmp_path: Path, nova_db, admin):
    mine = nova.NovaDBAPI(f"sqlite:///{tmp_path / 'own.db'}")
    shared = nova.NovaDBAPI()
    created = mine.s3_image_create(admin, str(uuid.uuid4()))
    assert mine.s3_image_get(admin, created.id).uuid == created.uuid
    # The configured database (the backend under test) never saw it.
    with nova_db.session() as session:
        assert session.scalars(sa.select(models.S3Image)).all() == []
    assert shared.database is None
    with pytest.raises(exception.ImageNotFound):
        shared.s3_image_get(admin, 10**6)


def test_access_checks_come_before_any_work(nova_db, ctx):
    with pytest.raises(exception.AdminRequired):
        nova.migration_create(ctx, {"status": "x"})
    with pytest.raises(exception.Forbidden):
        nova.instance_get_by_uuid(nova.RequestContext(None, None), str(uuid.uuid4()))
    with nova_db.session() as session:
        assert session.scalars(sa.select(models.Migration)).all() == []


def test_a_call_inside_a_unit_of_work_joins_it(nova_db, admin):
    with pytest.raises(RuntimeError), nova_db.transaction():
        nova.s3_image_create(admin, str(uuid.uuid4()))
        nova.ec2_volume_create(admin, str(uuid.uuid4()))
        raise RuntimeError("the caller's transaction fails")
    with nova_db.session() as session:
        assert session.scalars(sa.select(models.S3Image)).all() == []
        assert session.scalars(sa.select(models.VolumeIdMapping)).all() == []


def test_each_call_commits_on_its_own(nova_db, admin):
    image = nova.s3_image_create(admin, str(uuid.uuid4()))
    with nova_db.session() as session:
        assert [i.uuid for i in session.scalars(sa.select(models.S3Image))] == [image.uuid]


def test_model_query_honours_read_deleted_and_project_only(nova_db, ctx, other_ctx, admin):
    live_uuid = make_instance(nova_db)
    gone_uuid = make_instance(nova_db)
    other_uuid = make_instance(nova_db, project_id="project2")
    with nova_db.session() as session:
        gone = session.scalars(sa.select(models.Instance).filter_by(uuid=gone_uuid)).one()
        gone.soft_delete(session)

    @api_call()
    def uuids(context, read_deleted=None, project_only=False):
        stmt = model_query(
            context, models.Instance, read_deleted=read_deleted, project_only=project_only
        )
        return sorted(i.uuid for i in fetch_all(stmt))

    assert uuids(admin) == sorted([live_uuid, other_uuid])
    assert uuids(admin, read_deleted="yes") == sorted([live_uuid, gone_uuid, other_uuid])
    assert uuids(admin, read_deleted="only") == [gone_uuid]
    assert uuids(ctx, project_only=True) == [live_uuid]
    assert uuids(other_ctx, project_only=True) == [other_uuid]
    assert uuids(admin, project_only=True) == sorted([live_uuid, other_uuid])
    deleted_ctx = ctx.elevated(read_deleted="yes")
    deleted_ctx.is_admin = False
    assert uuids(deleted_ctx, project_only=True) == sorted([live_uuid, gone_uuid])
    with pytest.raises(DBLayerError, match="read_deleted"):
        uuids(admin, read_deleted="sometimes")


def test_settled_objects_never_lazy_load_after_the_call(nova_db, admin):
    instance_uuid = make_instance(nova_db)

    @api_call()
    def plain(context):
        return fetch_all(model_query(context, models.Instance))[0]

    row = plain(admin)
    assert row.uuid == instance_uuid
    assert row.metadata == [] and row.system_metadata == [] and row.info_cache is None
    assert settle(None) is None


def test_require_uuid_wants_the_canonical_form():
    value = str(uuid.uuid4())
    assert require_uuid(value) == value
    for bad in (value.upper(), value.replace("-", ""), "x", None, 5):
        with pytest.raises(exception.InvalidUUID):
            require_uuid(bad)


def test_use_slave_reads_go_to_the_reader(tmp_path: Path, nova_db, admin):
    writer, reader = tmp_path / "writer.db", tmp_path / "reader.db"
    reader_db = Database(f"sqlite:///{reader}")
    facade.create_schema(reader_db)
    instance_uuid = str(uuid.uuid4())
    with reader_db.session() as session:
        session.add(models.Instance(uuid=instance_uuid, project_id="p", host="h1"))
    reader_db.dispose()
    try:
        nova.configure(f"sqlite:///{writer}", reader_url=f"sqlite:///{reader}")
        found = nova.instance_get_all_by_host(admin, "h1", use_slave=True)
        assert [i["uuid"] for i in found] == [instance_uuid]
        assert nova.instance_get_all_by_host(admin, "h1") == []
        assert nova.instance_get_by_uuid(admin, instance_uuid, use_slave=True).uuid == instance_uuid
        with pytest.raises(exception.InstanceNotFound):
            nova.instance_get_by_uuid(admin, instance_uuid)
    finally:
        nova.configure(database=nova_db, create_tables=False)

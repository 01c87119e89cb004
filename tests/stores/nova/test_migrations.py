"""Migrations (nova notes §3.18): admin-only, lookups incl. deleted rows, on every backend."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.core.types import utcnow
from dblayer.stores.nova import exception, models
from tests.stores.nova.conftest import make_instance, table_rows

M = models.Migration


def rows(db: Database) -> list[dict]:
    """Every row (deleted ones too), as dicts, by id."""
    return table_rows(db, M)


def soft_delete(db: Database, model, row_id: int) -> None:
    with db.transaction() as conn:
        table = model.__table__
        # As nova's soft delete: updated_at kept.
        stmt = sa.update(table).where(table.c.id == row_id)
        conn.execute(stmt.values(deleted=row_id, updated_at=table.c.updated_at))


def migrate(admin, inst: str | None, **values):
    values = {"source_compute": "src", "dest_compute": "dst", "status": "migrating", **values}
    if inst is not None:
        values["instance_uuid"] = inst
    return nova.migration_create(admin, values)


def test_create_and_get(nova_db, admin):
    inst = make_instance(nova_db)
    m = migrate(admin, inst, old_instance_type_id=1, new_instance_type_id=2, dest_host="10.0.0.2")
    assert m.id and m.status == "migrating" and m.instance_uuid == inst
    [stored] = rows(nova_db)
    assert stored["id"] == m.id and stored["new_instance_type_id"] == 2
    got = nova.migration_get(admin, m.id)
    assert got.id == m.id and got["dest_host"] == "10.0.0.2"


def test_get_includes_deleted_rows(nova_db, admin):
    m = migrate(admin, make_instance(nova_db))
    soft_delete(nova_db, M, m.id)
    assert nova.migration_get(admin, m.id).deleted == m.id
    with pytest.raises(exception.MigrationNotFound) as err:
        nova.migration_get(admin, m.id + 1)
    assert str(m.id + 1) in str(err.value)


def test_every_call_is_admin_only_and_changes_nothing(nova_db, admin, ctx):
    inst = make_instance(nova_db)
    m = migrate(admin, inst)
    before = rows(nova_db)
    calls = [
        lambda: nova.migration_create(ctx, {"instance_uuid": inst, "status": "x"}),
        lambda: nova.migration_update(ctx, m.id, {"status": "x"}),
        lambda: nova.migration_get(ctx, m.id),
        lambda: nova.migration_get_by_instance_and_status(ctx, inst, "migrating"),
        lambda: nova.migration_get_all_by_filters(ctx, {}),
        lambda: nova.migration_get_in_progress_by_host_and_node(ctx, "src", None),
        lambda: nova.migration_get_unconfirmed_by_dest_compute(ctx, 10, "dst"),
    ]
    for call in calls:
        with pytest.raises(exception.AdminRequired):
            call()
    assert rows(nova_db) == before


def test_create_rejects_bad_values_and_stores_nothing(nova_db, admin):
    inst = make_instance(nova_db)
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.migration_create(admin, {"instance_uuid": inst, "bogus": 1})
    with pytest.raises(InvalidValue):
        nova.migration_create(admin, {"instance_uuid": inst, "old_instance_type_id": "one"})
    with pytest.raises(InvalidValue):
        nova.migration_create(admin, {"instance_uuid": inst, "status": "s" * 256})
    with pytest.raises(exception.InstanceNotFound):
        nova.migration_create(admin, {"instance_uuid": str(uuid.uuid4())})
    with pytest.raises(InvalidQuery):
        nova.migration_create(admin, None)
    assert rows(nova_db) == []


def test_update_sets_values_also_on_deleted_rows(nova_db, admin):
    m = migrate(admin, make_instance(nova_db))
    updated = nova.migration_update(admin, m.id, {"status": "finished", "dest_node": "n2"})
    assert updated.id == m.id and updated.status == "finished"
    [stored] = rows(nova_db)
    assert stored["status"] == "finished" and stored["dest_node"] == "n2"
    assert stored["updated_at"] is not None
    soft_delete(nova_db, M, m.id)
    assert nova.migration_update(admin, m.id, {"status": "confirmed"}).status == "confirmed"


def test_update_rejected_changes_nothing(nova_db, admin):
    m = migrate(admin, make_instance(nova_db))
    before = rows(nova_db)
    with pytest.raises(exception.MigrationNotFound):
        nova.migration_update(admin, m.id + 1, {"status": "finished"})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.migration_update(admin, m.id, {"status": "finished", "bogus": 1})
    with pytest.raises(exception.InstanceNotFound):
        nova.migration_update(admin, m.id, {"instance_uuid": str(uuid.uuid4())})
    with pytest.raises(InvalidValue):
        nova.migration_update(admin, str(m.id), {"status": "finished"})
    assert rows(nova_db) == before


def test_get_by_instance_and_status_includes_deleted_rows(nova_db, admin):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    m = migrate(admin, inst, status="finished")
    migrate(admin, other, status="finished")
    assert nova.migration_get_by_instance_and_status(admin, inst, "finished").id == m.id
    soft_delete(nova_db, M, m.id)
    assert nova.migration_get_by_instance_and_status(admin, inst, "finished").id == m.id
    with pytest.raises(exception.MigrationNotFoundByStatus) as err:
        nova.migration_get_by_instance_and_status(admin, inst, "error")
    assert isinstance(err.value, exception.MigrationNotFound)
    assert inst in str(err.value) and "error" in str(err.value)


def test_get_all_by_filters(nova_db, admin):
    inst = make_instance(nova_db)
    a = migrate(admin, inst, source_compute="h1", dest_compute="h2", status="migrating")
    b = migrate(admin, inst, source_compute="h2", dest_compute="h3", status="finished")
    c = migrate(admin, inst, source_compute="h3", dest_compute="h1", status="error")

    def ids(filters):
        return [m.id for m in nova.migration_get_all_by_filters(admin, filters)]

    assert ids({}) == [a.id, b.id, c.id]
    assert ids({"status": "finished"}) == [b.id]
    assert ids({"status": ["error", "migrating"]}) == [a.id, c.id]
    assert ids({"host": "h1"}) == [a.id, c.id]
    assert ids({"host": "h2", "status": "finished"}) == [b.id]
    assert ids({"host": "h9", "ignored": 1}) == []
    soft_delete(nova_db, M, a.id)
    assert ids({"host": "h1"}) == [c.id]
    with_deleted = admin.elevated(read_deleted="yes")
    assert [m.id for m in nova.migration_get_all_by_filters(with_deleted, {"host": "h1"})] == [
        a.id,
        c.id,
    ]
    with pytest.raises(InvalidQuery):
        nova.migration_get_all_by_filters(admin, ["status"])
    with pytest.raises(InvalidValue):
        nova.migration_get_all_by_filters(admin, {"status": 3})


def test_in_progress_by_host_and_node(nova_db, admin):
    inst = make_instance(nova_db)
    gone = make_instance(nova_db, deleted=1)
    with nova_db.session() as session:
        session.add(models.InstanceSystemMetadata(instance_uuid=inst, key="k1", value="v1"))
        dropped = models.InstanceSystemMetadata(instance_uuid=inst, key="k2", value="v2")
        session.add(dropped)
    soft_delete(nova_db, models.InstanceSystemMetadata, dropped.id)

    out = migrate(admin, inst, source_compute="h1", source_node="n1", dest_compute="h2")
    into = migrate(admin, gone, source_compute="h3", dest_compute="h1", dest_node="n1")
    migrate(admin, inst, source_compute="h1", source_node="n2")  # another node
    migrate(admin, inst, source_compute="h1", source_node="n1", status="confirmed")
    migrate(admin, inst, source_compute="h1", source_node="n1", status="reverted")
    migrate(admin, inst, dest_compute="h1", dest_node="n1", status="error")
    deleted = migrate(admin, inst, source_compute="h1", source_node="n1")
    soft_delete(nova_db, M, deleted.id)

    got = nova.migration_get_in_progress_by_host_and_node(admin, "h1", "n1")
    assert [m.id for m in got] == [out.id, into.id]
    # The instance comes with its live system metadata; a deleted instance is not joined.
    assert got[0].instance.uuid == inst
    assert [(md.key, md.value) for md in got[0].instance.system_metadata] == [("k1", "v1")]
    assert got[1].instance is None
    assert nova.migration_get_in_progress_by_host_and_node(admin, "h9", "n1") == []


def test_unconfirmed_by_dest_compute(nova_db, admin):
    inst = make_instance(nova_db)
    now = utcnow()
    old, recent = now - dt.timedelta(seconds=600), now - dt.timedelta(seconds=5)
    due = migrate(admin, inst, status="finished", dest_compute="d1", updated_at=old)
    migrate(admin, inst, status="finished", dest_compute="d1", updated_at=recent)
    migrate(admin, inst, status="finished", dest_compute="d2", updated_at=old)
    migrate(admin, inst, status="confirmed", dest_compute="d1", updated_at=old)
    migrate(admin, inst, status="finished", dest_compute="d1")  # never updated: NULL
    deleted = migrate(admin, inst, status="finished", dest_compute="d1", updated_at=old)
    soft_delete(nova_db, M, deleted.id)

    got = nova.migration_get_unconfirmed_by_dest_compute(admin, 60, "d1")
    assert [m.id for m in got] == [due.id, deleted.id]  # deleted rows included, as in nova
    assert len(nova.migration_get_unconfirmed_by_dest_compute(admin, 1, "d1", use_slave=True)) == 3
    assert nova.migration_get_unconfirmed_by_dest_compute(admin, 3600, "d1") == []
    with pytest.raises(InvalidQuery):
        nova.migration_get_unconfirmed_by_dest_compute(admin, "60", "d1")
    with pytest.raises(InvalidQuery):
        nova.migration_get_unconfirmed_by_dest_compute(admin, 10**30, "d1")

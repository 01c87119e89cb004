"""Certificates (nova notes §3.27): admin-only inserts and live lookups, on every backend."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, models
from tests.stores.nova.conftest import table_rows

C = models.Certificate


def cert(admin, user, project, name="cert.pem", **more):
    return nova.certificate_create(
        admin, {"user_id": user, "project_id": project, "file_name": name, **more}
    )


def test_create_and_lookups(nova_db, admin):
    a = cert(admin, "u1", "p1", "a.pem")
    b = cert(admin, "u1", "p2", "b.pem")
    c = cert(admin, "u2", "p1", "c.pem")
    assert a.id and a.file_name == "a.pem" and a["user_id"] == "u1" and a.deleted == 0
    assert [x.id for x in nova.certificate_get_all_by_project(admin, "p1")] == [a.id, c.id]
    assert [x.id for x in nova.certificate_get_all_by_user(admin, "u1")] == [a.id, b.id]
    got = nova.certificate_get_all_by_user_and_project(admin, "u1", "p2")
    assert [x.id for x in got] == [b.id] and got[0].file_name == "b.pem"
    assert nova.certificate_get_all_by_user_and_project(admin, "u2", "p2") == []

    # Lookups see live rows only, whatever the context's read_deleted.
    with nova_db.transaction() as conn:
        conn.execute(sa.update(C.__table__).where(C.id == a.id).values(deleted=a.id))
    with_deleted = admin.elevated(read_deleted="yes")
    assert [x.id for x in nova.certificate_get_all_by_project(with_deleted, "p1")] == [c.id]
    assert [x.id for x in nova.certificate_get_all_by_user(with_deleted, "u1")] == [b.id]
    assert nova.certificate_get_all_by_user_and_project(with_deleted, "u1", "p1") == []


def test_create_drops_keys_that_are_not_columns_and_refuses_bad_values(nova_db, admin):
    a = cert(admin, "u1", "p1", extra="ignored")  # nova never stored such keys
    assert [r["id"] for r in table_rows(nova_db, C)] == [a.id]
    with pytest.raises(InvalidValue):
        cert(admin, "u1", 7)
    with pytest.raises(InvalidValue):
        cert(admin, "u" * 256, "p1")
    with pytest.raises(InvalidQuery):
        nova.certificate_create(admin, None)
    with pytest.raises(InvalidValue):
        nova.certificate_get_all_by_user(admin, 7)
    assert len(table_rows(nova_db, C)) == 1


def test_every_call_is_admin_only_and_changes_nothing(nova_db, admin, ctx):
    cert(admin, "user1", "project1")
    calls = [
        lambda: cert(ctx, "user1", "project1"),
        lambda: nova.certificate_get_all_by_project(ctx, "project1"),
        lambda: nova.certificate_get_all_by_user(ctx, "user1"),
        lambda: nova.certificate_get_all_by_user_and_project(ctx, "user1", "project1"),
    ]
    for call in calls:
        with pytest.raises(exception.AdminRequired):
            call()
    assert len(table_rows(nova_db, C)) == 1

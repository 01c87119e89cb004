"""Consoles and console pools (nova notes §3.24): no access checks, console getters
including deleted rows, live pools with their consoles, hard console deletes, on every
backend."""

from __future__ import annotations

import ipaddress
import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, ForeignKeyViolation, InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, models
from dblayer.stores.nova.context import RequestContext
from tests.stores.nova.conftest import make_instance, table_rows

# The console calls check no rights: a context with neither user nor project will do.
ANYONE = RequestContext(None, None)


def soft_delete(db: Database, model, row_id: int) -> None:
    table = model.__table__
    with db.transaction() as conn:
        conn.execute(sa.update(table).where(table.c.id == row_id).values(deleted=row_id))


def pool(host="proxy", console_type="vnc", compute_host="compute1", **more):
    values = {"host": host, "console_type": console_type, "compute_host": compute_host}
    return nova.console_pool_create(ANYONE, {**values, **more})


def console(inst, pool_id, **more):
    values = {"instance_uuid": inst, "pool_id": pool_id, "instance_name": "vm", **more}
    return nova.console_create(ANYONE, values)


# -- pools -----------------------------------------------------------------------------------


def test_pool_create_and_getters(nova_db):
    a = pool(address="10.0.0.1", username="u", password="pw", public_hostname="pub")
    b = pool(compute_host="compute2", address=ipaddress.ip_address("10.0.0.2"))
    pool(console_type="spice")
    pool(host="other-proxy")
    assert a.id and a.address == "10.0.0.1" and a["public_hostname"] == "pub"
    assert b.address == "10.0.0.2"
    inst = make_instance(nova_db)
    c1 = console(inst, a.id)
    c2 = console(inst, a.id, port=5901)
    soft_delete(nova_db, models.Console, c2.id)

    got = nova.console_pool_get_by_host_type(ANYONE, "compute1", "proxy", "vnc")
    assert got.id == a.id
    # Every console of the pool (nova's relationship did not filter deleted ones).
    assert [c.id for c in got.consoles] == [c1.id, c2.id]
    assert got.consoles[0].pool is None  # not loaded, never lazy-loads
    all_vnc = nova.console_pool_get_all_by_host_type(ANYONE, "proxy", "vnc")
    assert [p.id for p in all_vnc] == [a.id, b.id]
    assert [len(p.consoles) for p in all_vnc] == [2, 0]
    assert nova.console_pool_get_all_by_host_type(ANYONE, "proxy", "rdp") == []

    with pytest.raises(exception.ConsolePoolNotFoundForHostType, match="compute9"):
        nova.console_pool_get_by_host_type(ANYONE, "compute9", "proxy", "vnc")
    # Pools are found live only.
    soft_delete(nova_db, models.ConsolePool, b.id)
    with_deleted = RequestContext(None, None, read_deleted="yes")
    with pytest.raises(exception.ConsolePoolNotFoundForHostType):
        nova.console_pool_get_by_host_type(with_deleted, "compute2", "proxy", "vnc")
    assert [p.id for p in nova.console_pool_get_all_by_host_type(with_deleted, "proxy", "vnc")] == [
        a.id
    ]


def test_pool_create_refuses_a_duplicate_and_bad_values(nova_db):
    a = pool()
    before = table_rows(nova_db, models.ConsolePool)
    with pytest.raises(exception.ConsolePoolExists, match="compute1"):
        pool(address="10.0.0.9")
    with pytest.raises(InvalidQuery, match="bogus"):
        pool(compute_host="c", bogus=1)
    with pytest.raises(InvalidValue):
        pool(compute_host="c", username=5)
    with pytest.raises(InvalidQuery):
        nova.console_pool_create(ANYONE, None)
    assert table_rows(nova_db, models.ConsolePool) == before
    # Unique among live pools only.
    soft_delete(nova_db, models.ConsolePool, a.id)
    assert pool().id != a.id


# -- consoles --------------------------------------------------------------------------------


def test_console_create_and_get(nova_db):
    p = pool()
    inst = make_instance(nova_db)
    c = console(inst, p.id, password="secret", port=5900)
    assert c.id and c.instance_uuid == inst and c["port"] == 5900
    got = nova.console_get(ANYONE, c.id)
    assert got.id == c.id and got.pool.id == p.id and got.pool.host == "proxy"
    assert got.pool.consoles == []  # not loaded
    assert nova.console_get(ANYONE, c.id, inst).id == c.id
    with pytest.raises(exception.ConsoleNotFoundForInstance) as err:
        nova.console_get(ANYONE, c.id, str(uuid.uuid4()))
    assert err.value.kwargs["console_id"] == c.id
    with pytest.raises(exception.ConsoleNotFound, match="4242") as err:
        nova.console_get(ANYONE, 4242)
    assert type(err.value) is exception.ConsoleNotFound
    # An empty instance uuid still filters, but the error is the plain one (as nova).
    with pytest.raises(exception.ConsoleNotFound) as err:
        nova.console_get(ANYONE, c.id, "")
    assert type(err.value) is exception.ConsoleNotFound
    # Deleted consoles are found too.
    soft_delete(nova_db, models.Console, c.id)
    assert nova.console_get(ANYONE, c.id).deleted == c.id


def test_console_create_checks_its_instance_and_pool(nova_db):
    p = pool()
    inst = make_instance(nova_db)
    with pytest.raises(exception.InstanceNotFound):
        console(str(uuid.uuid4()), p.id)
    with pytest.raises(ForeignKeyViolation, match="4242"):
        console(inst, 4242)
    with pytest.raises(InvalidQuery, match="bogus"):
        console(inst, p.id, bogus=1)
    with pytest.raises(InvalidValue):
        console(inst, p.id, port="5900")
    with pytest.raises(InvalidQuery):
        nova.console_create(ANYONE, "values")
    assert table_rows(nova_db, models.Console) == []
    # Neither is required.
    assert nova.console_create(ANYONE, {"instance_name": "vm"}).pool_id is None


def test_console_get_all_by_instance(nova_db):
    p = pool()
    inst, other = make_instance(nova_db), make_instance(nova_db)
    a = console(inst, p.id)
    b = console(inst, p.id, port=1)
    console(other, p.id)
    soft_delete(nova_db, models.Console, b.id)
    got = nova.console_get_all_by_instance(ANYONE, inst)
    assert [c.id for c in got] == [a.id, b.id] and got[0].pool is None
    joined = nova.console_get_all_by_instance(ANYONE, inst, columns_to_join=["pool"])
    assert [c.pool.id for c in joined] == [p.id, p.id]
    assert nova.console_get_all_by_instance(ANYONE, inst, []) != []
    assert nova.console_get_all_by_instance(ANYONE, str(uuid.uuid4())) == []
    with pytest.raises(InvalidQuery, match="allowed: pool"):
        nova.console_get_all_by_instance(ANYONE, inst, ["instance"])
    with pytest.raises(InvalidQuery):
        nova.console_get_all_by_instance(ANYONE, inst, "pool")


def test_console_get_by_pool_instance(nova_db):
    p, q = pool(), pool(compute_host="compute2")
    inst = make_instance(nova_db)
    c = console(inst, p.id)
    got = nova.console_get_by_pool_instance(ANYONE, p.id, inst)
    assert got.id == c.id and got.pool.id == p.id
    with pytest.raises(exception.ConsoleNotFoundInPoolForInstance, match=str(q.id)):
        nova.console_get_by_pool_instance(ANYONE, q.id, inst)
    soft_delete(nova_db, models.Console, c.id)
    assert nova.console_get_by_pool_instance(ANYONE, p.id, inst).id == c.id


def test_console_delete_is_a_hard_delete(nova_db):
    p = pool()
    inst = make_instance(nova_db)
    a, b = console(inst, p.id), console(inst, p.id)
    assert nova.console_delete(ANYONE, a.id) is None
    assert [r["id"] for r in table_rows(nova_db, models.Console)] == [b.id]
    nova.console_delete(ANYONE, a.id)  # no error for a missing console
    nova.console_delete(ANYONE, 4242)
    with pytest.raises(exception.ConsoleNotFound):
        nova.console_get(ANYONE, a.id)
    with pytest.raises(InvalidValue):
        nova.console_delete(ANYONE, "1")
    assert [r["id"] for r in table_rows(nova_db, models.Console)] == [b.id]

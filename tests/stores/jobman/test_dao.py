"""SqliteDAO itself: where it connects, its tables, generic record types ('ents') and the ORM."""

from __future__ import annotations

import os
import threading
import types
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from dblayer.core import DatabaseError, DBConnectionError, InvalidQuery, InvalidValue
from dblayer.stores.jobman import (
    ORM,
    EngineSqliteDAO,
    JobmanSqliteDAO,
    SqliteDAO,
    WorkerSqliteDAO,
    generate_key,
)
from tests.conftest import backend_url

from .conftest import drop_tables

THING_FIELDS = {
    "key": {"type": "TEXT", "primary_key": True, "default": generate_key},
    "name": {"type": "TEXT"},
    "size": {"type": "INTEGER"},
    "payload": {"type": "JSON", "unfilterable": True},
}


# -- where a DAO connects ---------------------------------------------------------------------


def test_db_uri_defaults_to_an_in_memory_database():
    dao = EngineSqliteDAO()
    assert dao.db_uri == ":memory:"
    assert dao.db.url == "sqlite://"
    dao.create_job({"key": "k"})
    assert EngineSqliteDAO().get_job("k") is None  # each in-memory DAO has its own database
    assert SqliteDAO(db_uri="sqlite://").db.url == "sqlite://"


def test_db_uri_as_a_path_or_a_sqlite_url_names_the_same_file(tmp_path):
    path = tmp_path / "jobs.db"
    by_path = EngineSqliteDAO(db_uri=str(path))
    by_path.create_job({"key": "k", "status": "PENDING"})
    assert path.exists()
    by_url = EngineSqliteDAO(db_uri=f"sqlite:///{path}")
    by_object = EngineSqliteDAO(db_uri=sa.engine.URL.create("sqlite", database=str(path)))
    assert by_url.get_job("k")["status"] == "PENDING"
    assert by_object.get_job("k")["status"] == "PENDING"
    for dao in (by_path, by_url, by_object):
        dao.close()


@pytest.mark.parametrize("db_uri", [5, None, b"sqlite://"])
def test_a_bad_db_uri_raises_invalid_value(db_uri):
    with pytest.raises(InvalidValue):
        SqliteDAO(db_uri=db_uri)


def test_a_server_url_reaches_that_server(fresh_dao, backend):
    dao = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_url_")
    assert dao.db.backend == {"postgresql": "postgresql", "mariadb": "mysql"}.get(backend, "sqlite")
    dao.create_job({"key": "k"})
    assert dao.get_job("k")["key"] == "k"


def test_lock_timeout_is_the_databases():
    assert JobmanSqliteDAO(lock_timeout=5).db.lock_timeout == 5
    assert JobmanSqliteDAO().db.lock_timeout == 30
    assert WorkerSqliteDAO().db.lock_timeout == 30
    with pytest.raises(InvalidValue):
        JobmanSqliteDAO(lock_timeout=0)


def test_sqlite_and_orm_arguments_are_accepted():
    built = []

    class RecordingORM(ORM):
        def __init__(self, **kwargs):
            built.append(kwargs["name"])
            super().__init__(**kwargs)

    dao = WorkerSqliteDAO(sqlite=object(), orm=types.SimpleNamespace(ORM=RecordingORM), debug=True)
    assert built == ["job", "kvp"]
    assert dao.debug is True
    dao.create_job({"key": "k"})
    assert dao.get_job("k")["key"] == "k"


# -- tables ------------------------------------------------------------------------------------


def test_tables_are_named_by_prefix(fresh_dao):
    dao = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_px_")
    assert {"jmt_px_job", "jmt_px_kvp"} <= set(dao.db.table_names())
    assert [str(orm.table) for orm in dao.orms.values()] == ["jmt_px_job", "jmt_px_kvp"]


def test_without_a_prefix_tables_are_job_and_kvp():
    dao = EngineSqliteDAO()
    assert dao.db.table_names() == ["job", "kvp"]
    assert JobmanSqliteDAO().db.table_names() == ["jobman_job", "jobman_kvp"]


def test_initialize_false_creates_no_table_and_initialize_creates_them(fresh_dao):
    dao = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_init_", initialize=False)
    assert not {"jmt_init_job", "jmt_init_kvp"} & set(dao.db.table_names())
    dao.initialize()
    assert {"jmt_init_job", "jmt_init_kvp"} <= set(dao.db.table_names())


def test_ensure_tables_keeps_existing_tables_and_rows(fresh_dao, backend, tmp_path):
    uri = {"db_uri": str(tmp_path / "keep.db")} if backend == "sqlite_memory" else {}
    dao = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_keep_", **uri)
    dao.create_job({"key": "k"})
    dao.ensure_tables()
    dao.initialize()
    again = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_keep_", reuse_tables=True, **uri)
    assert again.get_job("k")["key"] == dao.get_job("k")["key"] == "k"


def test_job_tables_index_status_and_an_existing_table_gains_the_index(fresh_dao):
    dao = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_ix_")

    def status_indexes():
        indexes = sa.inspect(dao.db.engine).get_indexes("jmt_ix_job")
        return [i["name"] for i in indexes if i["column_names"] == ["status"]]

    assert status_indexes() == ["ix_jmt_ix_job_status"]
    assert not sa.inspect(dao.db.engine).get_indexes("jmt_ix_kvp")
    index = dao.orms["job"].table.indexes.pop()
    dao.db.run(lambda conn: index.drop(conn))
    assert status_indexes() == []
    dao.orms["job"].table.indexes.add(index)
    dao.create_job({"key": "k", "status": "PENDING"})
    dao.initialize()  # the table exists: only the index is created
    assert status_indexes() == ["ix_jmt_ix_job_status"]
    assert dao.get_jobs_for_status("PENDING")[0]["key"] == "k"


def test_a_long_table_name_gets_a_short_index_name(fresh_dao):
    dao = fresh_dao(EngineSqliteDAO, table_prefix="jmt_" + "x" * 50 + "_")
    (index,) = dao.orms["job"].table.indexes
    assert len(index.name) <= 60 and index.name.endswith("_status")
    names = [i["name"] for i in sa.inspect(dao.db.engine).get_indexes(dao.orms["job"].table.name)]
    assert names == [index.name]


def drop_lease_columns(dao):
    """Make the DAO's job table an older one: no lease columns yet (as migration 0001 or
    jobman itself made it)."""
    table = dao.orms["job"].table.name
    for column in ("claimed_by", "claim_expires", "claimed_from"):
        dao.db.run(
            lambda conn, c=column: conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {c}"))
        )


def test_an_existing_table_gains_new_fields_and_the_lease_columns(fresh_dao, backend, tmp_path):
    uri = {"db_uri": str(tmp_path / "alter.db")} if backend == "sqlite_memory" else {}
    old = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_alter_", **uri)
    old.create_job({"key": "k", "status": "PENDING", "batch_meta": {"n": 1}})
    drop_lease_columns(old)
    extra = {"extra": {"type": "TEXT"}}
    new = fresh_dao(
        WorkerSqliteDAO, table_prefix="jmt_alter_", extra_job_fields=extra, reuse_tables=True, **uri
    )
    columns = {c["name"] for c in sa.inspect(new.db.engine).get_columns("jmt_alter_job")}
    assert {"extra", "claimed_by", "claim_expires", "claimed_from"} <= columns
    assert new.get_job("k") == {**old.get_job("k"), "extra": None}
    new.create_job({"key": "k2", "status": "PENDING", "extra": "x"})
    assert new.get_job("k2")["extra"] == "x"
    assert sorted(job["key"] for job in new.claim_jobs()) == ["k", "k2"]


def test_a_table_with_a_field_the_dao_dropped_is_left_as_it_is(fresh_dao, backend, tmp_path):
    uri = {"db_uri": str(tmp_path / "drop.db")} if backend == "sqlite_memory" else {}
    extra = {"extra": {"type": "TEXT"}}
    old = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_drop_", extra_job_fields=extra, **uri)
    old.create_job({"key": "k", "status": "PENDING", "extra": "x"})
    new = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_drop_", reuse_tables=True, **uri)
    columns = {c["name"] for c in sa.inspect(new.db.engine).get_columns("jmt_drop_job")}
    assert "extra" in columns
    assert "extra" not in new.get_job("k")
    assert [job["key"] for job in new.claim_jobs()] == ["k"]
    assert old.get_job("k")["extra"] == "x"


def test_a_table_that_differs_otherwise_still_gains_the_missing_columns(
    fresh_dao, backend, tmp_path
):
    uri = {"db_uri": str(tmp_path / "mixed.db")} if backend == "sqlite_memory" else {}
    gone = {"gone": {"type": "TEXT"}}
    old = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_mixed_", extra_job_fields=gone, **uri)
    old.create_job({"key": "k", "status": "PENDING", "gone": "x"})
    drop_lease_columns(old)
    # A field dropped (left as it is) and one added, with the lease columns (added).
    extra = {"extra": {"type": "TEXT"}}
    new = fresh_dao(
        WorkerSqliteDAO, table_prefix="jmt_mixed_", extra_job_fields=extra, reuse_tables=True, **uri
    )
    columns = {c["name"] for c in sa.inspect(new.db.engine).get_columns("jmt_mixed_job")}
    assert {"gone", "extra", "claimed_by", "claim_expires", "claimed_from"} <= columns
    new.create_job({"key": "k2", "status": "PENDING", "extra": "y"})
    claimed = new.claim_jobs({"order_by": {"field": "key"}})
    assert [(job["key"], job["extra"]) for job in claimed] == [("k", None), ("k2", "y")]
    assert "gone" not in claimed[0]
    assert old.get_job("k")["gone"] == "x"
    assert sorted(new.extend_claims()) == ["k", "k2"]


def test_flush_removes_the_database_contents(fresh_dao, backend, run_dir):
    if backend == "sqlite_file":  # not the run's shared file: flush removes the whole file
        path = run_dir / f"jmt-flush-{uuid.uuid4().hex}.db"
        dao = fresh_dao(WorkerSqliteDAO, db_uri=str(path), table_prefix="jmt_flush_")
        dao.create_job({"key": "k"})
        assert path.exists()
        dao.flush()
        assert not any(os.path.exists(f"{path}{s}") for s in ("", "-wal", "-shm"))
    else:
        dao = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_flush_")
        dao.create_job({"key": "k"})
        dao.flush()
        assert not {"jmt_flush_job", "jmt_flush_kvp"} & set(dao.db.table_names())
    dao.initialize()
    assert dao.query_jobs() == []
    dao.create_job({"key": "again"})
    assert dao.get_job("again")["key"] == "again"


def test_connection_and_create_connection(fresh_dao):
    dao = fresh_dao(WorkerSqliteDAO, table_prefix="jmt_conn_")
    dao.create_job({"key": "k"})
    held = dao.connection
    assert dao.connection is held
    assert held.execute(sa.select(sa.func.count()).select_from(dao.orms["job"].table)).scalar() == 1
    held.rollback()
    other = dao.create_connection()
    try:
        assert other is not held
        assert other.execute(sa.select(dao.orms["job"].table.c.key)).scalars().all() == ["k"]
    finally:
        other.close()
    dao.close()
    assert dao.connection is not held


def test_generate_key_gives_new_uuid_strings():
    dao = SqliteDAO(initialize=False)
    first, second = dao.generate_key(), dao.generate_key()
    assert first != second
    assert str(uuid.UUID(first)) == first


# -- generic record types ----------------------------------------------------------------------


@pytest.fixture
def things(make_dao):
    return make_dao(
        SqliteDAO, table_prefix="jmt_s_", orm_specs=[{"name": "thing", "fields": THING_FIELDS}]
    )


def test_ent_methods(things):
    created = things.create_ent("thing", {"name": "a", "size": 1, "payload": {"x": 1}})
    assert list(created) == ["key", "name", "size", "payload"]
    saved = things.save_ents(ent_type="thing", ents=[{"key": "b", "name": "b", "size": 2}])
    assert saved == [{"key": "b", "name": "b", "size": 2, "payload": None}]
    assert things.get_ent("thing", created["key"]) == created
    assert things.get_ent("thing", "nope") is None
    query = {"filters": [{"field": "size", "op": ">=", "arg": 1}], "order_by": {"field": "size"}}
    assert things.query_ents("thing", query) == [created, saved[0]]
    assert things.update_ents(
        "thing", {"payload": [1]}, {"filters": [{"field": "name", "op": "=", "arg": "b"}]}
    ) == {"rowcount": 1}
    assert things.get_ent("thing", "b")["payload"] == [1]
    with pytest.raises(SqliteDAO.IntegrityError):
        things.save_ents("thing", [{"key": "b"}], replace=False)


def test_hooks_run_in_field_name_order_and_see_the_record(make_dao):
    seen = []

    def stamp(record):
        seen.append(dict(record))
        return f"{record['a']}-{record['b']}"

    fields = {
        "key": {"type": "TEXT", "primary_key": True, "default": lambda: "generated"},
        "c": {"type": "TEXT", "auto_update": stamp},
        "b": {"type": "INTEGER", "default": lambda: 2},
        "a": {"type": "INTEGER", "auto_update": lambda record: (record["a"] or 0) + 1},
    }
    dao = make_dao(SqliteDAO, table_prefix="jmt_h_", orm_specs=[{"name": "t", "fields": fields}])
    saved = dao.save_ents("t", [{}, {"key": "k", "a": 5, "b": None}])
    assert saved == [
        {"key": "generated", "c": "1-2", "b": 2, "a": 1},
        {"key": "k", "c": "6-2", "b": 2, "a": 6},
    ]
    assert seen[0] == {"key": None, "c": None, "b": 2, "a": 1}
    assert dao.get_ent("t", "k") == saved[1]


def test_a_record_without_its_key_is_refused(make_dao):
    fields = {"key": {"type": "TEXT", "primary_key": True}, "name": {"type": "TEXT"}}
    dao = make_dao(SqliteDAO, table_prefix="jmt_n_", orm_specs=[{"name": "t", "fields": fields}])
    with pytest.raises(InvalidValue, match="'key' is the primary key: it needs a value"):
        dao.save_ents("t", [{"key": "a"}, {"name": "no key"}])
    assert dao.query_ents("t") == []


def test_an_unfilterable_field_cannot_be_filtered_or_ordered_on(things):
    things.create_ent("thing", {"key": "a", "payload": {"x": 1}})
    with pytest.raises(InvalidQuery):
        things.query_ents("thing", {"filters": [{"field": "payload", "op": "IS", "arg": None}]})
    with pytest.raises(InvalidQuery):
        things.query_ents("thing", {"order_by": {"field": "payload"}})
    assert things.get_ent("thing", "a")["payload"] == {"x": 1}


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.create_ent("nope", {}),
        lambda d: d.save_ents("nope", []),
        lambda d: d.save_ents(None, []),
        lambda d: d.get_ent("nope", "k"),
        lambda d: d.query_ents("nope"),
        lambda d: d.update_ents("nope", {"x": 1}, {}),
        lambda d: d.query_ents("job"),
    ],
)
def test_an_unknown_ent_type_raises_invalid_query(things, call):
    with pytest.raises(InvalidQuery):
        call(things)


# -- the ORM on its own ---------------------------------------------------------------------------


@pytest.fixture
def orm_on(fresh_dao):
    """An ORM with its table created on a fresh DAO's database; dropped afterwards."""
    dao = fresh_dao(SqliteDAO, table_prefix="jmt_orm_", include_kvp_orm=False)
    orm = ORM(name="thing", fields=THING_FIELDS, table_prefix="jmt_orm_")
    with dao.db.transaction() as conn:
        orm.create_table(connection=conn)
        orm.create_table(connection=conn)  # exists: nothing happens
    yield dao.db, orm
    dao.db.run(lambda conn: orm.table.drop(conn, checkfirst=True))


def test_orm_table_and_fields(orm_on):
    _, orm = orm_on
    assert orm.table.name == str(orm.table) == "jmt_orm_thing"
    assert list(orm.fields) == list(THING_FIELDS)


def test_orm_save_query_and_update_objects(orm_on):
    db, orm = orm_on
    with db.transaction() as conn:
        saved = orm.save_object(obj={"key": "a", "name": "A", "payload": {"n": 1}}, connection=conn)
        orm.execute_insert_or_replace(
            fields=["key", "name", "size"], values=["b", "B", 2], replace=False, connection=conn
        )
    assert saved == {"key": "a", "name": "A", "size": None, "payload": {"n": 1}}
    with db.transaction() as conn:
        result = orm.update_objects(
            updates={"size": 5},
            query={"filters": [{"field": "key", "op": "=", "arg": "a"}]},
            connection=conn,
        )
        assert result == {"rowcount": 1}
        rows = orm.query_objects(query={"order_by": {"field": "key"}}, connection=conn)
    assert rows == [
        {"key": "a", "name": "A", "size": 5, "payload": {"n": 1}},
        {"key": "b", "name": "B", "size": 2, "payload": None},
    ]
    with db.transaction() as conn:
        orm.execute_insert_or_replace(
            fields=["key", "name"], values=["b", "B2"], replace=True, connection=conn
        )
        assert (
            orm.query_objects(
                query={"filters": [{"field": "key", "op": "=", "arg": "b"}]}, connection=conn
            )[0]["name"]
            == "B2"
        )


def test_orm_errors(orm_on):
    db, orm = orm_on
    with db.transaction() as conn:
        orm.save_object(obj={"key": "a"}, connection=conn)
    with pytest.raises(ORM.IntegrityError), db.transaction() as conn:
        orm.execute_insert_or_replace(fields=["key"], values=["a"], replace=False, connection=conn)
    with pytest.raises(ORM.IntegrityError), db.transaction() as conn:
        orm.save_object(obj={"key": "a"}, connection=conn, replace=False)
    with pytest.raises(InvalidValue), db.transaction() as conn:
        orm.execute_insert_or_replace(fields=["key", "name"], values=["x"], connection=conn)
    with pytest.raises(InvalidQuery), db.transaction() as conn:
        orm.execute_insert_or_replace(fields=["nope"], values=[1], connection=conn)
    missing = ORM(name="missing", fields=THING_FIELDS, table_prefix="jmt_orm_")
    with pytest.raises(ORM.UpdateError) as info, db.transaction() as conn:
        missing.update_objects(updates={"size": 1}, query={}, connection=conn)
    assert isinstance(info.value, DatabaseError)
    with pytest.raises(ORM.InsertError), db.transaction() as conn:
        missing.save_object(obj={"key": "a"}, connection=conn)
    with pytest.raises(DatabaseError), db.transaction() as conn:
        missing.query_objects(query=None, connection=conn)
    with db.transaction(readonly=True) as conn:
        assert orm.query_objects(connection=conn) == [
            {"key": "a", "name": None, "size": None, "payload": None}
        ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": None, "fields": THING_FIELDS},
        {"name": "", "fields": THING_FIELDS},
        {"name": "t", "fields": None},
        {"name": "t", "fields": {}},
        {"name": "t", "fields": {"k": {"type": "VARCHAR2"}}},
        {"name": "t", "fields": {"k": {}}},
        {"name": "t", "fields": {"k": "TEXT"}},
        {"name": "t", "fields": {"k": {"type": "TEXT", "primary": True}}},
        {"name": "t", "fields": {"k": {"type": "TEXT", "default": "now"}}},
        {"name": "t", "fields": {"": {"type": "TEXT"}}},
        {"name": "t", "fields": THING_FIELDS, "table_prefix": 5},
    ],
    ids=lambda kw: repr(kw)[:50],
)
def test_a_bad_orm_spec_raises_invalid_value(kwargs):
    with pytest.raises(InvalidValue):
        ORM(**kwargs)


def test_field_types_any_case():
    orm = ORM(
        name="t",
        fields={
            "k": {"type": "text", "primary_key": True},
            "i": {"type": "Integer"},
            "f": {"type": "REAL"},
            "j": {"type": "json"},
            "b": {"type": "BLOB"},
            "t": {"type": "Text"},
        },
    )
    assert orm.table.c.k.primary_key
    assert [c.name for c in orm.table.c] == ["k", "i", "f", "j", "b", "t"]


def test_blob_fields_round_trip(fresh_dao):
    dao = fresh_dao(
        SqliteDAO,
        table_prefix="jmt_blob_",
        include_kvp_orm=False,
        orm_specs=[
            {
                "name": "file",
                "fields": {"key": {"type": "TEXT", "primary_key": True}, "data": {"type": "BLOB"}},
            },
        ],
    )
    dao.save_ents(
        "file", [{"key": "a", "data": b"\x00\xffbytes"}, {"key": "b", "data": bytearray(b"x")}]
    )
    assert dao.get_ent("file", "a")["data"] == b"\x00\xffbytes"
    assert dao.get_ent("file", "b")["data"] == b"x"
    with pytest.raises(InvalidValue):
        dao.save_ents("file", [{"key": "c", "data": "text"}])
    drop_tables(dao)


def test_a_dao_on_an_unreachable_server_fails_with_a_typed_error():
    with pytest.raises(DBConnectionError) as info:
        WorkerSqliteDAO(db_uri="postgresql+psycopg://nobody:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(info.value)


def test_daos_starting_at_once_create_each_table_once(fresh_dao, backend, run_dir):
    url = backend_url(backend, run_dir)
    for _ in range(3):
        fresh_dao(WorkerSqliteDAO, table_prefix="jmt_start_", initialize=False)  # drops leftovers
        start = threading.Barrier(4)

        def start_dao(_: int, start: threading.Barrier = start) -> list[str]:
            start.wait(60)
            dao = WorkerSqliteDAO(db_uri=url, table_prefix="jmt_start_")
            try:
                dao.create_kvp({"key": dao.generate_key(), "value": 1})
                return [orm.table.name for orm in dao.orms.values()]
            finally:
                dao.close()

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert list(pool.map(start_dao, range(4))) == [["jmt_start_job", "jmt_start_kvp"]] * 4

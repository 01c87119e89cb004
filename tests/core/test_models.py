"""models: Base, DictMixin, TimestampMixin, SoftDeleteMixin, live() and soft_delete()."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from dblayer.core import (
    Base,
    Database,
    DuplicateEntry,
    InvalidQuery,
    live,
    new_metadata,
    soft_delete,
    soft_deleted,
    utcnow,
)
from dblayer.core.models import NAMING_CONVENTION
from tests.conftest import backend_url
from tests.core.orm_schema import MdWidget, OrmBase, md_keyed, md_plain, orm_metadata

widgets = MdWidget.__table__
T0 = dt.datetime(2020, 1, 2, 3, 4, 5, 600000)
T1 = dt.datetime(2021, 6, 7, 8, 9, 10, 110000)


def load(db: Database) -> dict[str, dict]:
    """Every widget as a dict, by name (several deleted rows may share a name: last wins)."""
    with db.session(readonly=True) as session:
        return {w.name: dict(w) for w in session.scalars(sa.select(MdWidget).order_by(MdWidget.id))}


def all_rows(db: Database) -> list[tuple]:
    with db.transaction(readonly=True) as conn:
        return [tuple(r) for r in conn.execute(sa.select(widgets).order_by(widgets.c.id))]


# -- Base ---------------------------------------------------------------------------------


def test_models_declare_on_dblayer_s_base_with_its_naming_convention():
    assert issubclass(MdWidget, Base)
    assert MdWidget.__table__.metadata is orm_metadata is OrmBase.metadata
    assert "md_widgets" not in Base.metadata.tables
    assert orm_metadata.naming_convention == NAMING_CONVENTION
    assert Base.metadata.naming_convention == NAMING_CONVENTION
    names = {c.name for c in widgets.constraints}
    assert {"pk_md_widgets", "uq_md_widgets_name_deleted"} <= names


# -- DictMixin ----------------------------------------------------------------------------

COLUMNS = {"id", "name", "size", "created_at", "updated_at", "deleted", "deleted_at"}


def test_dict_access_on_a_new_object():
    w = MdWidget(name="a", size=2)
    assert w["name"] == "a"
    assert w["size"] == 2
    assert w["label"] == "a:2"  # computed attributes read like columns (nova's instance['name'])
    assert w.get("size") == 2
    assert w.get("missing") is None
    assert w.get("missing", 5) == 5
    with pytest.raises(KeyError):
        w["missing"]
    with pytest.raises(KeyError):
        w[3]
    w["size"] = 7
    assert w.size == 7
    w.update({"size": 8, "name": "b"})
    assert (w.name, w.size) == ("b", 8)
    w.update(size=9)
    w.update({"name": "c"}, size=10)
    assert (w.name, w.size) == ("c", 10)
    assert "name" in w
    assert "missing" not in w
    assert 3 not in w
    assert set(w.keys()) == COLUMNS
    assert w.keys()[0] == "id"
    assert list(w) == w.keys()
    assert dict(w) == w.to_dict() == dict(w.items())
    assert dict(w)["name"] == "c"
    assert dict(w)["id"] is None


def test_dict_access_on_loaded_rows(db, tables_of):
    tables_of(db, orm_metadata)
    with db.session() as session:
        session.add(MdWidget(name="a", size=1))
    with db.session() as session:
        w = session.scalars(sa.select(MdWidget)).one()
        w.update({"size": 5})
    row = load(db)["a"]
    assert set(row) == COLUMNS
    assert (row["name"], row["size"], row["deleted"], row["deleted_at"]) == ("a", 5, 0, None)
    assert row["id"] == w["id"] == w.get("id")
    assert dict(w) == row


# -- TimestampMixin ----------------------------------------------------------------------


def test_created_at_on_insert_and_updated_at_on_update(db, tables_of):
    tables_of(db, orm_metadata)
    before = utcnow()
    with db.session() as session:
        w = MdWidget(name="a", size=1)
        session.add(w)
    after = utcnow()
    created = load(db)["a"]["created_at"]
    assert created == w.created_at
    assert created.tzinfo is None
    assert before <= created <= after
    assert load(db)["a"]["updated_at"] is None
    with db.session() as session:
        session.scalars(sa.select(MdWidget)).one().size = 2
    row = load(db)["a"]
    assert row["created_at"] == created
    assert row["updated_at"] is not None
    assert row["updated_at"] >= created
    assert row["size"] == 2


def test_core_inserts_get_created_at_too(db, tables_of):
    tables_of(db, orm_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(widgets), [{"name": "a"}, {"name": "b"}])
    rows = load(db)
    assert rows["a"]["created_at"] is not None
    assert rows["a"]["updated_at"] is None
    assert rows["b"]["deleted"] == 0


# -- SoftDeleteMixin.soft_delete (row form) -------------------------------------------------


def test_row_soft_delete(db, tables_of):
    tables_of(db, orm_metadata)
    with db.session() as session:
        session.add_all([MdWidget(name="a"), MdWidget(name="b")])
    with db.session() as session:
        w = session.scalars(sa.select(MdWidget).where(MdWidget.name == "a")).one()
        w.soft_delete(session)
        assert w.deleted == w.id
        assert session.scalar(sa.select(MdWidget.deleted).where(MdWidget.id == w.id)) == w.id
    rows = load(db)
    assert rows["a"]["deleted"] == rows["a"]["id"]
    assert rows["a"]["deleted_at"] is not None
    assert rows["a"]["updated_at"] is not None  # the row form bumps updated_at
    assert rows["b"]["deleted"] == 0
    assert rows["b"]["deleted_at"] is None


def test_row_soft_delete_of_an_unsaved_object(db, tables_of):
    tables_of(db, orm_metadata)
    with db.session() as session:
        w = MdWidget(name="new")
        w.soft_delete(session)
    assert w.id is not None
    assert load(db)["new"]["deleted"] == w.id


# -- soft_delete (query form) and live ----------------------------------------------------


def seed(db: Database) -> dict[str, int]:
    """a, b, d live (a with updated_at T1), c deleted at T0; return name -> id."""
    with db.transaction() as conn:
        conn.execute(
            sa.insert(widgets),
            [
                {"id": 1, "name": "a", "deleted": 0, "deleted_at": None, "updated_at": T1},
                {"id": 2, "name": "b", "deleted": 0, "deleted_at": None, "updated_at": None},
                {"id": 3, "name": "c", "deleted": 3, "deleted_at": T0, "updated_at": T1},
                {"id": 4, "name": "d", "deleted": 0, "deleted_at": None, "updated_at": None},
            ],
        )
    return {"a": 1, "b": 2, "c": 3, "d": 4}


@pytest.mark.parametrize("target", [MdWidget, widgets], ids=["model", "table"])
def test_query_soft_delete(db, tables_of, target):
    tables_of(db, orm_metadata)
    seed(db)
    before = utcnow()
    with db.transaction() as conn:
        assert soft_delete(conn, target, widgets.c.name.in_(["a", "b", "c"])) == 2
    rows = load(db)
    for name, row_id in (("a", 1), ("b", 2)):
        assert rows[name]["deleted"] == row_id
        assert rows[name]["deleted_at"] >= before.replace(microsecond=0)
    assert rows["a"]["updated_at"] == T1  # left as it was
    assert rows["b"]["updated_at"] is None
    assert (rows["c"]["deleted"], rows["c"]["deleted_at"]) == (3, T0)  # untouched
    assert (rows["d"]["deleted"], rows["d"]["deleted_at"]) == (0, None)


def test_query_soft_delete_without_criteria_takes_every_live_row(db, tables_of):
    tables_of(db, orm_metadata)
    seed(db)
    with db.transaction() as conn:
        assert soft_delete(conn, widgets) == 3
        assert soft_delete(conn, widgets) == 0
    assert all(row["deleted"] == row["id"] for row in load(db).values())


def test_query_soft_delete_in_a_session_sees_pending_rows(db, tables_of):
    tables_of(db, orm_metadata)
    with db.session() as session:
        session.add(MdWidget(name="pending"))
        assert soft_delete(session, MdWidget, MdWidget.name == "pending") == 1
    row = load(db)["pending"]
    assert row["deleted"] == row["id"]


def test_live(db, tables_of):
    tables_of(db, orm_metadata)
    seed(db)
    with db.session(readonly=True) as session:
        names = session.scalars(sa.select(MdWidget.name).where(live(MdWidget)).order_by("name"))
        assert list(names) == ["a", "b", "d"]
    with db.transaction(readonly=True) as conn:
        gone = conn.execute(sa.select(widgets.c.name).where(~live(widgets))).scalars().all()
        assert gone == ["c"]


def test_live_reads_the_not_deleted_value_off_the_column():
    meta = sa.MetaData()
    flags = sa.Table("f", meta, sa.Column("id", sa.Integer), sa.Column("deleted", sa.Boolean))
    texts = sa.Table(
        "t", meta, sa.Column("id", sa.Integer), sa.Column("deleted", sa.String(36), default="")
    )
    ints = sa.Table("i", meta, sa.Column("id", sa.Integer), sa.Column("deleted", sa.Integer))

    def sql(criterion: sa.ColumnElement[bool]) -> str:
        # No literal_binds: the marker is written into the SQL itself, never bound.
        return str(criterion.compile(dialect=postgresql.dialect()))

    assert sql(live(flags)) == "f.deleted = false"
    assert sql(live(texts)) == "t.deleted = ''"
    assert sql(live(ints)) == "i.deleted = 0"
    assert sql(soft_deleted(flags)) == "f.deleted != false"
    assert sql(soft_deleted(texts)) == "t.deleted != ''"
    assert sql(soft_deleted(ints)) == "i.deleted != 0"


def test_soft_delete_and_live_reject_what_they_cannot_handle(db, tables_of):
    tables_of(db, orm_metadata)
    seed(db)
    before = all_rows(db)
    for bad in (md_plain, "md_widgets", 42, None):
        with pytest.raises(InvalidQuery):
            live(bad)
    with db.transaction() as conn:
        for bad in (md_plain, md_keyed, "md_widgets", object()):
            with pytest.raises(InvalidQuery):
                soft_delete(conn, bad)
    assert all_rows(db) == before


# -- unique constraints that include ``deleted`` -------------------------------------------


def test_unique_with_deleted_admits_one_live_row_and_many_deleted(db, backend, tables_of):
    tables_of(db, orm_metadata)
    with db.session() as session:
        session.add(MdWidget(name="same"))
    with pytest.raises(DuplicateEntry) as info, db.session() as session:
        session.add(MdWidget(name="same"))
    if backend in ("postgresql", "mariadb"):
        assert info.value.constraint == "uq_md_widgets_name_deleted"
    for _ in range(2):
        with db.transaction() as conn:
            assert soft_delete(conn, MdWidget, MdWidget.name == "same") == 1
        with db.session() as session:
            session.add(MdWidget(name="same"))
    with db.session(readonly=True) as session:
        rows = session.scalars(sa.select(MdWidget).where(MdWidget.name == "same")).all()
    assert len(rows) == 3
    assert sorted(r.deleted == 0 for r in rows) == [False, False, True]
    assert all(r.deleted in (0, r.id) for r in rows)


def _equal_to_abc(db, metadata: sa.MetaData) -> list[str]:
    table = sa.Table(
        "md_collation",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.String(10)),
    )
    db.drop_all(metadata)
    db.create_all(metadata)
    try:
        with db.transaction() as conn:
            rows = [{"id": i, "v": v} for i, v in enumerate(["abc", "ABC", "abc "], 1)]
            conn.execute(sa.insert(table), rows)
            rows = conn.execute(sa.select(table.c.v).where(table.c.v == "abc")).scalars()
            return sorted(rows)
    finally:
        db.drop_all(metadata)


def test_new_metadata_compares_text_exactly_on_every_backend(db):
    assert _equal_to_abc(db, new_metadata()) == ["abc"]


def test_new_metadata_compares_text_exactly_under_a_mariadb_url(run_dir):
    # A mariadb:// URL has a dialect of its own, reading mariadb_* table options only.
    url = sa.make_url(backend_url("mariadb", run_dir))
    db = Database(url.set(drivername=url.drivername.replace("mysql", "mariadb", 1)))
    try:
        assert db.engine.dialect.name == "mariadb"
        assert _equal_to_abc(db, new_metadata()) == ["abc"]
    finally:
        db.dispose()


def test_exact_text_off_keeps_the_servers_collation(db):
    # MariaDB's default collation folds case and trailing spaces; the others compare exactly.
    rows = _equal_to_abc(db, new_metadata(exact_text=False))
    assert rows == (["ABC", "abc", "abc "] if db.backend == "mysql" else ["abc"])

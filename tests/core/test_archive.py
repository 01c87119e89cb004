"""archive: shadow tables, archiving soft-deleted rows into them, purging them."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from dblayer.core import (
    Database,
    InvalidQuery,
    archive_deleted_rows,
    archive_table,
    create_shadow_tables,
    new_metadata,
    purge_shadow_tables,
)
from tests.core.orm_schema import (
    ar_children,
    ar_domains,
    ar_metadata,
    ar_nodes,
    ar_parents,
    ar_plain,
    ar_shadows,
    ar_unshadowed,
)

T0 = dt.datetime(2020, 1, 1, 10, 0, 0, 123456)
T1 = dt.datetime(2020, 6, 1, 10, 0, 0, 654321)
T2 = dt.datetime(2021, 1, 1, 10, 0, 0, 1)
shadow = ar_shadows


def rows(db: Database, table: sa.Table) -> list[dict]:
    with db.transaction(readonly=True) as conn:
        query = sa.select(table).order_by(*table.primary_key.columns)
        return [dict(r) for r in conn.execute(query).mappings()]


def ids(db: Database, table: sa.Table) -> list:
    return [r[next(iter(table.primary_key.columns)).name] for r in rows(db, table)]


def everything(db: Database) -> dict[str, list[dict]]:
    return {t.name: rows(db, t) for t in ar_metadata.sorted_tables}


def parent(pid: int, deleted: bool, deleted_at: dt.datetime | None = T1) -> dict:
    return {
        "id": pid,
        "name": f"p{pid}",
        "data": {"n": pid, "tags": ["ü", None, 1.5], "nested": {"ok": True}},
        "uid": uuid.UUID(int=pid * 7919),
        "created_at": dt.datetime(2019, 1, 1, 0, 0, pid, 100 + pid),
        "updated_at": None if pid % 2 else T0,
        "deleted_at": deleted_at if deleted else None,
        "deleted": pid if deleted else 0,
    }


def child(cid: int, parent_id: int, deleted: bool, deleted_at: dt.datetime | None = T1) -> dict:
    return {
        "id": cid,
        "parent_id": parent_id,
        "note": f"c{cid}",
        "deleted_at": deleted_at if deleted else None,
        "deleted": cid if deleted else 0,
    }


def insert(db: Database, table: sa.Table, *values: dict) -> None:
    with db.transaction() as conn:
        conn.execute(sa.insert(table), list(values))


def family(db: Database) -> None:
    """Parents 1 and 5 live; 2 deleted alone; 3 deleted with live child 31; 4 deleted with
    deleted child 41; live 5 with deleted child 51; live 1 with live child 52."""
    insert(db, ar_parents, *(parent(p, deleted=p in (2, 3, 4)) for p in (1, 2, 3, 4, 5)))
    insert(
        db,
        ar_children,
        child(31, 3, False),
        child(41, 4, True),
        child(51, 5, True),
        child(52, 1, False),
    )


@pytest.fixture
def tables(db, tables_of):
    tables_of(db, ar_metadata)
    yield db
    # InnoDB checks a self-reference row by row: cut the links before the fixture's DELETE.
    with db.transaction() as conn:
        conn.execute(sa.update(ar_nodes).values(parent_id=None))


# -- shadow tables ------------------------------------------------------------------------


def test_shadow_tables_have_the_same_columns_and_no_constraints(tables):
    db = tables
    assert set(ar_shadows) == {
        t.name for t in (ar_parents, ar_children, ar_nodes, ar_domains, ar_plain)
    }
    with db.transaction(readonly=True) as conn:
        inspector = sa.inspect(conn)
        for name, twin in ar_shadows.items():
            assert twin.name == "shadow_" + name
            original = inspector.get_columns(name)
            copied = inspector.get_columns(twin.name)
            assert [c["name"] for c in copied] == [c["name"] for c in original]
            for a, b in zip(original, copied, strict=True):
                assert str(b["type"]) == str(a["type"]), (name, a["name"])
                assert b["nullable"] == a["nullable"], (name, a["name"])
            pk = inspector.get_pk_constraint(twin.name)["constrained_columns"]
            assert pk == inspector.get_pk_constraint(name)["constrained_columns"]
            assert inspector.get_foreign_keys(twin.name) == []
            assert inspector.get_unique_constraints(twin.name) == []
            assert inspector.get_indexes(twin.name) == []
    assert ar_parents.indexes and ar_children.foreign_keys  # the originals do have them


def test_create_shadow_tables_in_a_fresh_metadata():
    meta = new_metadata()
    things = sa.Table(
        "things",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mood", sa.Enum("happy", "sad", name="mood")),
        sa.Column("code", sa.String(10), nullable=False, unique=True, index=True),
    )
    made = create_shadow_tables(meta)
    twin = made["things"]
    assert twin is meta.tables["shadow_things"]
    assert [c.name for c in twin.columns] == [c.name for c in things.columns]
    assert twin.c.id.primary_key and twin.c.id.autoincrement is False
    assert twin.c.code.nullable is False
    assert twin.c.mood.type.name == "shadow_mood"  # a PostgreSQL ENUM name may not be shared
    assert things.c.mood.type.name == "mood"
    assert not twin.foreign_keys and not twin.indexes
    assert [type(c) for c in twin.constraints] == [sa.PrimaryKeyConstraint]
    again = create_shadow_tables(meta)
    assert again == made
    assert sorted(meta.tables) == ["shadow_things", "things"]
    custom = create_shadow_tables(meta, prefix="arch_")
    assert custom["things"].name == "arch_things"
    for bad in ("", None, 3):
        with pytest.raises(InvalidQuery):
            create_shadow_tables(meta, prefix=bad)


# -- archiving ------------------------------------------------------------------------------


def test_archive_moves_deleted_rows_with_identical_values(tables):
    db = tables
    family(db)
    before = everything(db)
    assert archive_deleted_rows(db, ar_metadata) == {"ar_children": 2, "ar_parents": 2}
    after = everything(db)
    by_id = {r["id"]: r for r in before["ar_parents"]}
    kids = {r["id"]: r for r in before["ar_children"]}
    # Parent 3 is deleted but its child 31 lives: it stays (no foreign key is broken).
    assert ids(db, ar_parents) == [1, 3, 5]
    assert after["shadow_ar_parents"] == [by_id[2], by_id[4]]
    assert after["shadow_ar_children"] == [kids[41], kids[51]]
    assert after["ar_parents"] == [by_id[1], by_id[3], by_id[5]]  # untouched
    assert after["ar_children"] == [kids[31], kids[52]]
    assert archive_deleted_rows(db, ar_metadata) == {}
    assert everything(db) == after


def test_a_parent_goes_once_its_last_child_has_gone(tables):
    db = tables
    family(db)
    archive_deleted_rows(db, ar_metadata)
    with db.transaction() as conn:
        conn.execute(
            sa.update(ar_children).where(ar_children.c.id == 31).values(deleted=31, deleted_at=T2)
        )
    assert archive_deleted_rows(db, ar_metadata) == {"ar_children": 1, "ar_parents": 1}
    assert ids(db, shadow["ar_parents"]) == [2, 3, 4]
    assert ids(db, shadow["ar_children"]) == [31, 41, 51]
    assert ids(db, ar_parents) == [1, 5]


def test_max_rows_is_a_budget_across_tables_children_first(tables):
    db = tables
    family(db)
    assert archive_deleted_rows(db, ar_metadata, max_rows=3) == {"ar_children": 2, "ar_parents": 1}
    assert ids(db, shadow["ar_parents"]) == [2]
    assert archive_deleted_rows(db, ar_metadata, max_rows=0) == {}
    assert archive_deleted_rows(db, ar_metadata, max_rows=3) == {"ar_parents": 1}
    assert ids(db, shadow["ar_parents"]) == [2, 4]
    assert archive_deleted_rows(db, ar_metadata, max_rows=3) == {}


@pytest.mark.parametrize(
    ("batch_size", "max_rows", "moved"),
    [(2, None, 7), (2, 5, 5), (3, 6, 6), (1, None, 7), (100, 4, 4)],
)
def test_batches_smaller_than_the_work(tables, batch_size, max_rows, moved):
    db = tables
    insert(db, ar_parents, *(parent(p, deleted=p != 4) for p in range(1, 9)))
    counts = archive_deleted_rows(db, ar_metadata, max_rows=max_rows, batch_size=batch_size)
    assert counts == {"ar_parents": moved}
    assert ids(db, shadow["ar_parents"]) == [p for p in range(1, 9) if p != 4][:moved]
    assert 4 in ids(db, ar_parents)
    assert len(ids(db, ar_parents)) == 8 - moved


def test_archive_table(tables):
    db = tables
    family(db)
    assert archive_table(db, ar_metadata, "ar_children", max_rows=1) == 1
    assert ids(db, shadow["ar_children"]) == [41]
    assert archive_table(db, ar_metadata, "ar_parents") == 2  # 2 and 4 are free; 3 is not
    assert ids(db, shadow["ar_parents"]) == [2, 4]
    assert archive_table(db, ar_metadata, "ar_children", batch_size=1) == 1
    assert archive_table(db, ar_metadata, "ar_children") == 0


def test_tables_without_a_shadow_or_deleted_column_give_zero(tables):
    db = tables
    insert(db, ar_unshadowed, {"id": 1, "deleted": 1, "deleted_at": T0})
    insert(db, ar_plain, {"id": 1})
    assert archive_table(db, ar_metadata, "ar_unshadowed") == 0
    assert archive_table(db, ar_metadata, "ar_plain") == 0
    assert archive_deleted_rows(db, ar_metadata) == {}
    assert ids(db, ar_unshadowed) == [1]
    assert ids(db, ar_plain) == [1]


def test_a_tree_is_archived_leaves_first(tables):
    db = tables
    # 1 <- 2 <- 3, all deleted; 4 deleted but its child 5 lives; 6 deleted refers to itself.
    insert(
        db,
        ar_nodes,
        *[
            {"id": i, "parent_id": p, "deleted": d, "deleted_at": T0}
            for i, p, d in [(1, None, 1), (2, 1, 2), (3, 2, 3), (4, None, 4), (5, 4, 0)]
        ],
    )
    insert(db, ar_nodes, {"id": 6, "parent_id": 6, "deleted": 6, "deleted_at": T0})
    assert archive_table(db, ar_metadata, "ar_nodes", batch_size=1) == 4
    assert ids(db, shadow["ar_nodes"]) == [1, 2, 3, 6]
    assert [r["parent_id"] for r in rows(db, shadow["ar_nodes"])] == [None, 1, 2, 6]
    assert ids(db, ar_nodes) == [4, 5]


def test_a_tree_within_max_rows(tables):
    db = tables
    insert(
        db,
        ar_nodes,
        *[{"id": i, "parent_id": i - 1 or None, "deleted": i, "deleted_at": T0} for i in (1, 2, 3)],
    )
    assert archive_deleted_rows(db, ar_metadata, max_rows=2) == {"ar_nodes": 2}
    assert ids(db, ar_nodes) == [1]
    assert archive_deleted_rows(db, ar_metadata) == {"ar_nodes": 1}


def test_boolean_deleted_and_a_string_key(tables):
    db = tables
    insert(
        db,
        ar_domains,
        {"domain": "gone.example", "scope": "private", "deleted": True, "deleted_at": None},
        {"domain": "kept.example", "scope": "public", "deleted": False, "deleted_at": None},
    )
    assert archive_deleted_rows(db, ar_metadata) == {"ar_domains": 1}
    assert rows(db, shadow["ar_domains"]) == [
        {"domain": "gone.example", "scope": "private", "deleted": True, "deleted_at": None}
    ]
    assert ids(db, ar_domains) == ["kept.example"]


def test_before_archives_only_rows_deleted_earlier(tables):
    db = tables
    later = T1 + dt.timedelta(seconds=1)
    insert(
        db,
        ar_parents,
        parent(1, False),
        parent(2, True, T0),
        parent(3, True, T1),
        parent(4, True, T2),
    )
    # 41 went before its parent; 31 after the cut-off, so its parent 3 must wait.
    insert(db, ar_children, child(31, 3, True, T2), child(41, 4, True, T0))
    # A deleted row without a time is not "deleted before" anything.
    insert(db, ar_domains, {"domain": "gone.example", "deleted": True, "deleted_at": None})
    counts = archive_deleted_rows(db, ar_metadata, before=later, batch_size=1)
    assert counts == {"ar_children": 1, "ar_parents": 1}
    assert ids(db, shadow["ar_children"]) == [41]
    assert ids(db, shadow["ar_parents"]) == [2]
    assert ids(db, ar_domains) == ["gone.example"]
    # An aware datetime means the same instant: T2 + 1 s at +02:00.
    aware = (T2 + dt.timedelta(hours=2, seconds=1)).replace(
        tzinfo=dt.timezone(dt.timedelta(hours=2))
    )
    assert archive_table(db, ar_metadata, "ar_parents", before=aware) == 1  # 4; 3 waits for 31
    assert ids(db, ar_parents) == [1, 3]
    assert archive_table(db, ar_metadata, "ar_domains", before=aware) == 0
    assert archive_deleted_rows(db, ar_metadata, before=T0) == {}
    assert archive_deleted_rows(db, ar_metadata) == {
        "ar_children": 1,
        "ar_parents": 1,
        "ar_domains": 1,
    }
    assert ids(db, ar_parents) == [1]


def test_a_reference_from_outside_the_metadata_stops_the_table_without_error(tables):
    """Archiving with a MetaData that does not know the children: the foreign key refuses
    the delete, the batch is undone and the table is left for later."""
    db = tables
    family(db)
    partial = sa.MetaData()
    ar_parents.to_metadata(partial)
    shadow["ar_parents"].to_metadata(partial)
    before = everything(db)
    assert archive_table(db, partial, "ar_parents", batch_size=10) == 0
    assert everything(db) == before
    assert archive_deleted_rows(db, partial) == {}
    assert everything(db) == before


# -- purging ------------------------------------------------------------------------------


def archived(db: Database) -> None:
    """Archive parents deleted at T0 (2, 3), T1 (4) and T2 (5), a child at T0 and a domain
    without deleted_at."""
    insert(
        db,
        ar_parents,
        parent(1, False),
        parent(2, True, T0),
        parent(3, True, T0),
        parent(4, True, T1),
        parent(5, True, T2),
    )
    insert(db, ar_children, child(11, 1, True, T0), child(12, 1, False))
    insert(db, ar_domains, {"domain": "d", "scope": None, "deleted": True, "deleted_at": None})
    assert archive_deleted_rows(db, ar_metadata) == {
        "ar_children": 1,
        "ar_parents": 4,
        "ar_domains": 1,
    }


def test_purge_before_removes_only_older_rows(tables):
    db = tables
    archived(db)
    counts = purge_shadow_tables(db, ar_metadata, before=T1, batch_size=1)
    assert counts == {"shadow_ar_parents": 2, "shadow_ar_children": 1}
    assert ids(db, shadow["ar_parents"]) == [4, 5]
    assert ids(db, shadow["ar_children"]) == []
    assert ids(db, shadow["ar_domains"]) == ["d"]  # no deleted_at: not "older" than anything
    # An aware datetime means the same instant: 12:00+02:00 is 10:00 UTC.
    aware = (T2 + dt.timedelta(hours=2)).replace(tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert purge_shadow_tables(db, ar_metadata, before=aware) == {"shadow_ar_parents": 1}
    assert ids(db, shadow["ar_parents"]) == [5]
    assert ids(db, ar_parents) == [1]  # production tables are never purged
    assert ids(db, ar_children) == [12]


def test_purge_without_before_removes_everything(tables):
    db = tables
    archived(db)
    counts = purge_shadow_tables(db, ar_metadata, batch_size=2)
    assert counts == {"shadow_ar_parents": 4, "shadow_ar_children": 1, "shadow_ar_domains": 1}
    assert all(rows(db, t) == [] for t in ar_shadows.values())
    assert purge_shadow_tables(db, ar_metadata) == {}
    assert ids(db, ar_parents) == [1]


# -- invalid arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda db: archive_deleted_rows(db, ar_metadata, max_rows=-1),
        lambda db: archive_deleted_rows(db, ar_metadata, max_rows="3"),
        lambda db: archive_deleted_rows(db, ar_metadata, max_rows=True),
        lambda db: archive_deleted_rows(db, ar_metadata, max_rows=1.5),
        lambda db: archive_deleted_rows(db, ar_metadata, batch_size=0),
        lambda db: archive_deleted_rows(db, ar_metadata, batch_size=None),
        lambda db: archive_deleted_rows(db, ar_metadata, batch_size="2"),
        lambda db: archive_deleted_rows(db, ar_metadata, prefix=""),
        lambda db: archive_table(db, ar_metadata, "no_such_table"),
        lambda db: archive_table(db, ar_metadata, None),
        lambda db: archive_table(db, ar_metadata, "ar_parents", max_rows=-5),
        lambda db: archive_table(db, ar_metadata, "ar_parents", batch_size=0),
        lambda db: archive_table(db, ar_metadata, "ar_parents", batch_size=2.0),
        lambda db: archive_table(db, ar_metadata, "ar_parents", prefix=""),
        lambda db: archive_table(db, ar_metadata, "ar_parents", before="2030-01-01"),
        lambda db: archive_deleted_rows(db, ar_metadata, before=dt.date(2030, 1, 1)),
        lambda db: archive_deleted_rows(db, ar_metadata, before=1_900_000_000),
        lambda db: purge_shadow_tables(db, ar_metadata, before="2020-01-01"),
        lambda db: purge_shadow_tables(db, ar_metadata, before=dt.date(2020, 1, 1)),
        lambda db: purge_shadow_tables(db, ar_metadata, batch_size=0),
        lambda db: purge_shadow_tables(db, ar_metadata, batch_size=-1),
        lambda db: purge_shadow_tables(db, ar_metadata, prefix=None),
    ],
)
def test_invalid_arguments_are_invalid_query_and_change_nothing(tables, call):
    db = tables
    archived(db)
    insert(db, ar_parents, parent(9, True, T0))  # waiting to be archived
    before = everything(db)
    with pytest.raises(InvalidQuery):
        call(db)
    assert everything(db) == before


def test_archived_ids_are_never_handed_out_again(db: Database) -> None:
    # SQLite without AUTOINCREMENT gives the highest id again once its row moved away:
    # archiving the next row with that id would then collide in the shadow table.
    metadata = new_metadata()
    table = sa.Table(
        "core_id_reuse",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deleted", sa.Integer, default=0),
        sa.Column("deleted_at", sa.DateTime),
    )
    create_shadow_tables(metadata)
    db.drop_all(metadata)
    db.create_all(metadata)
    try:
        for _ in range(2):
            with db.transaction() as conn:
                new_id = conn.execute(sa.insert(table).values(deleted=0)).inserted_primary_key[0]
                conn.execute(sa.update(table).where(table.c.id == new_id).values(deleted=new_id))
            assert archive_deleted_rows(db, metadata) == {"core_id_reuse": 1}
        assert ids(db, metadata.tables["shadow_core_id_reuse"]) == [1, 2]
    finally:
        db.drop_all(metadata)

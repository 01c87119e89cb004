"""RowObjects: detached mapped objects made from plain rows, usable after any session."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dblayer.core import InvalidQuery, PreparedQuery, RowObjects
from tests.core.orm_schema import MdPart, MdWidget, md_keyed, orm_metadata

WIDGETS = RowObjects(MdWidget)
PARTS = RowObjects(MdPart, "part_")


def _load(db) -> list:
    widgets, parts = MdWidget.__table__, MdPart.__table__
    query = PreparedQuery(
        sa.select(*WIDGETS.columns(), *PARTS.columns())
        .select_from(widgets.outerjoin(parts, parts.c.widget_id == widgets.c.id))
        .order_by(widgets.c.id, parts.c.id)
    )
    rows: dict[int, dict] = {}
    parts_of: dict[int, list] = {}
    with db.transaction(readonly=True) as conn:
        for row in query.all(conn):
            rows.setdefault(row["id"], row)
            found = parts_of.setdefault(row["id"], [])
            if row["part_id"] is not None:
                found.append(PARTS.make(row))
    return [WIDGETS.make(row, {"parts": parts_of[key]}) for key, row in rows.items()]


def test_objects_hold_the_rows_and_what_was_read_with_them(db, tables_of):
    tables_of(db, orm_metadata)
    with db.session() as session:
        session.add_all([MdWidget(id=1, name="a", size=1), MdWidget(id=2, name="b")])
        session.flush()
        session.add_all([MdPart(id=10, widget_id=1, label="x"), MdPart(id=11, widget_id=1)])
    a, b = _load(db)
    assert (a.id, a.name, a.size, a["name"], dict(a)["size"]) == (1, "a", 1, "a", 1)
    assert [(p.id, p.label) for p in a.parts] == [(10, "x"), (11, None)]
    assert b.parts == [] and b.size is None
    # Relationships nobody read are empty, never a lazy load after the unit of work.
    assert a.parts[0].widget is None
    state = sa.inspect(a)
    assert state.detached and state.identity == (1,)


def test_a_session_takes_them_back_for_updates(db, tables_of):
    tables_of(db, orm_metadata)
    with db.session() as session:
        session.add(MdWidget(id=1, name="a", size=1))
    (widget,) = _load(db)
    with db.session() as session:
        session.add(widget)
        widget.size = 7
    with db.session(readonly=True) as session:
        assert session.get(MdWidget, 1).size == 7
    with db.session() as session:
        merged = session.merge(
            WIDGETS.make(
                {c.name: None for c in MdWidget.__table__.columns} | {"id": 1, "name": "m"}
            )
        )
        assert merged.name == "m"


def test_it_needs_a_mapped_class():
    with pytest.raises(InvalidQuery, match="mapped class"):
        RowObjects(md_keyed)


def test_collections_are_the_orms_own_and_listeners_hear_of_them(db, tables_of):
    tables_of(db, orm_metadata)
    with db.session() as session:
        session.add(MdWidget(id=1, name="a", size=1))
        session.flush()
        session.add_all([MdPart(id=10, widget_id=1, label="x"), MdPart(id=11, widget_id=1)])
    (plain,) = _load(db)
    heard = []

    def init_collection(target, collection, adapter):
        heard.append((target, list(collection)))

    sa.event.listen(MdWidget.parts, "init_collection", init_collection)
    try:
        (listened,) = _load(db)
    finally:
        sa.event.remove(MdWidget.parts, "init_collection", init_collection)
    assert heard == [(listened, [])]  # told of the new, still empty collection
    for widget in (plain, listened):
        # The instrumented collection a Session expects, bound to its object, holding the parts.
        assert sa.orm.collections.collection_adapter(widget.parts).owner_state.obj() is widget
        assert [p.id for p in widget.parts] == [10, 11]
        assert sa.inspect(widget).attrs.parts.history.unchanged == list(widget.parts)

"""Mapped objects made straight from rows, without the ORM's loading machinery.

For hot reads: the ORM turns a row into an object at several times the cost of the
SQL that fetched it. A RowObjects for a mapped class makes *detached* objects (they
have their identity and belong to no session) from plain rows, such as
PreparedQuery's dicts, with every relationship set to what the caller read or to an
empty list / None, so nothing lazy-loads later. A Session takes them back with
``add`` (updates) or ``merge``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.orm.collections import CollectionAdapter, InstrumentedList
from sqlalchemy.orm.instrumentation import ClassManager

from .errors import InvalidQuery

_NOTHING: Mapping[str, Any] = {}


class RowObjects:
    """Makes detached ``model`` objects from rows (mappings) holding its table's columns,
    each under ``prefix`` + the column's name."""

    def __init__(self, model: Any, prefix: str = "") -> None:
        """Prepare for ``model`` (a mapped class with a single-column primary key)."""
        mapper = sa.inspect(model, raiseerr=False)
        if mapper is None or not isinstance(mapper, sa.orm.Mapper):
            raise InvalidQuery(f"RowObjects needs a mapped class, got {model!r}")
        self.table = model.__table__
        primary_key = list(self.table.primary_key.columns)
        if len(primary_key) != 1:
            raise InvalidQuery(f"{model.__name__} needs a single-column primary key")
        self.keys = tuple(mapper.get_property_by_column(c).key for c in self.table.columns)
        self.prefix = prefix
        self.labels = tuple(prefix + c.name for c in self.table.columns)
        self.id_label = prefix + primary_key[0].name
        self.relationships = tuple((rel.key, rel.uselist) for rel in mapper.relationships)
        self.identity_class = mapper.identity_key_from_primary_key((0,))[0]
        self.make: Callable[[Mapping[str, Any], Mapping[str, Any] | None], Any] = _maker(
            self, mapper.class_manager
        )
        """``make(row, related=None)``: an object holding ``row``'s values and the ``related``
        relationships (name -> object or list); the other relationships empty."""

    def columns(self) -> list[Any]:
        """The table's columns for a SELECT, labelled with the prefix."""
        return [c.label(self.prefix + c.name) if self.prefix else c for c in self.table.columns]


def _maker(objects: RowObjects, manager: ClassManager) -> Any:
    """The ``make`` function of ``objects``: generated, one dict display for the object's
    whole state (about half the cost of filling it key by key).

    It does what ``new_instance`` and ``set_committed_value`` do, minus the bookkeeping a
    new object does not need (no history, expired attributes or loader callables to
    clear). Scalar relationships are plain values; each collection is the instrumented
    kind (with its adapter), which a Session expects when it takes the object back. The
    generated text holds only the identifiers k0.., l0.., r0.., c0..; names are values.
    """
    namespace: dict[str, Any] = {
        "cls": manager.class_,
        "manager": manager,
        "new_state": manager._state_constructor,
        "identity": objects.identity_class,
        "id_label": objects.id_label,
        "state_key": manager.STATE_ATTR,
        "NOTHING": _NOTHING,
        "Adapter": CollectionAdapter,
        "List": InstrumentedList,
        "_collection": _collection,
    }
    items = ["state_key: state"]
    for i, (key, label) in enumerate(zip(objects.keys, objects.labels, strict=True)):
        namespace[f"k{i}"], namespace[f"l{i}"] = key, label
        items.append(f"k{i}: row[l{i}]")
    collections = []
    for i, (key, uselist) in enumerate(objects.relationships):
        namespace[f"r{i}"] = key
        if not uselist:
            items.append(f"r{i}: related.get(r{i})")
            continue
        impl = manager[key].impl
        namespace[f"c{i}"] = impl
        if impl.collection_factory is not InstrumentedList:
            collections.append(f"    attrs[r{i}] = _collection(c{i}, state, related.get(r{i}))\n")
            continue
        # A plain list collection takes its items when made (appending without events is
        # list.append there), unless someone listens for new collections.
        collections.append(
            f"    found = related.get(r{i})\n"
            f"    if c{i}.dispatch.init_collection:\n"
            f"        attrs[r{i}] = _collection(c{i}, state, found)\n"
            "    else:\n"
            f"        attrs[r{i}] = collection = List(found) if found else List()\n"
            f"        Adapter(c{i}, state, collection)\n"
        )
    if type(manager) is ClassManager:
        start = "    obj = cls.__new__(cls)\n    state = new_state(obj, manager)\n"
        fill = f"    obj.__dict__ = attrs = {{{', '.join(items)}}}\n"
    else:  # custom instrumentation: let the manager set the object up
        start = "    obj = manager.new_instance()\n    state = obj.__dict__[state_key]\n"
        fill = f"    attrs = obj.__dict__\n    attrs.update({{{', '.join(items[1:])}}})\n"
    source = (
        "def make(row, related=None):\n"
        f"{start}"
        "    if related is None:\n"
        "        related = NOTHING\n"
        f"{fill}"
        f"{''.join(collections)}"
        # Detached: it has its identity and belongs to no session.
        "    state.key = (identity, (row[id_label],), None)\n"
        "    return obj\n"
    )
    exec(source, namespace)  # noqa: S102 - generated from indices only, see above
    return namespace["make"]


def _collection(impl: Any, state: Any, items: Any) -> Any:
    """A new collection of the attribute ``impl`` holding ``items``, made by SQLAlchemy's
    own calls (the events of new collections fired, any collection class)."""
    adapter, collection = impl._initialize_collection(state)
    if items:
        adapter.append_multiple_without_event(items)
    return collection

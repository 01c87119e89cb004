"""nova DB API: neighbouring cells, by name (notes §3.25). Every call is admin-only.

A name is unique among live cells. ``cell_get`` and ``cell_update`` find the cell as
the context's ``read_deleted`` allows; ``cell_get_all`` and ``cell_delete`` work on
live cells.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dblayer.core import DuplicateEntry, InvalidValue

from .. import exception
from ..models import Cell
from ._base import ADMIN, api, create, execute, fetch_all, first, model_query, soft_delete_where
from ._checks import clean_values, key_value, require_keys

__all__ = ["cell_create", "cell_delete", "cell_get", "cell_get_all", "cell_update"]


def _by_name(context: Any, cell_name: Any) -> Any:
    return model_query(context, Cell).where(Cell.name == key_value(Cell, "name", cell_name))


@api(ADMIN)
def cell_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a new child Cell entry."""
    require_keys("cell_create", values)
    cell = clean_values(Cell, values)
    if cell.get("transport_url") is None:  # NOT NULL: say so before the backend does
        raise InvalidValue("cell_create: values must give a transport_url")
    try:
        return create(Cell, cell)
    except DuplicateEntry:
        raise exception.CellExists(name=cell.get("name")) from None


@api(ADMIN)
def cell_update(context: Any, cell_name: str, values: dict[str, Any]) -> Any:
    """Update a child Cell entry."""
    require_keys("cell_update", values)
    changes = clean_values(Cell, values)
    table = Cell.__table__
    stmt = _by_name(context, cell_name).with_only_columns(table.c.id).order_by(table.c.id)
    ids = list(execute(stmt.with_for_update()).scalars())
    if not ids:
        raise exception.CellNotFound(cell_name=cell_name)
    try:
        execute(sa.update(table).where(table.c.id.in_(ids)).values(changes))
    except DuplicateEntry:
        raise exception.CellExists(name=changes.get("name")) from None
    # Re-read by id: a renamed cell is no longer found by its old name.
    stmt = sa.select(Cell).where(Cell.id == ids[0]).execution_options(populate_existing=True)
    return first(stmt)


@api(ADMIN)
def cell_delete(context: Any, cell_name: str) -> int:
    """Delete a child Cell."""
    return soft_delete_where(Cell, Cell.name == key_value(Cell, "name", cell_name))


@api(ADMIN)
def cell_get(context: Any, cell_name: str) -> Any:
    """Get a specific child Cell."""
    cell = first(_by_name(context, cell_name).order_by(Cell.id))
    if cell is None:
        raise exception.CellNotFound(cell_name=cell_name)
    return cell


@api(ADMIN)
def cell_get_all(context: Any) -> list[Any]:
    """Get all child Cells."""
    return fetch_all(model_query(context, Cell, read_deleted="no").order_by(Cell.id))

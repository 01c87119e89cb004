"""Shadow tables, archiving of soft-deleted rows into them, and purging them.

A shadow table ``shadow_<table>`` has the same columns (names, types,
nullability, primary key) and no foreign keys, unique constraints or indexes,
so archived rows keep their ids. Archiving walks the tables children before
parents and, within a table, leaves alone any deleted row that a row of another
table still refers to: no foreign key is ever broken, on any backend.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, MetaData, Table
from sqlalchemy.dialects import postgresql

from .database import Database
from .errors import ForeignKeyViolation, InvalidQuery
from .models import soft_deleted

SHADOW_PREFIX = "shadow_"


def _shadow_type(type_: Any, prefix: str) -> Any:
    copied = type_.copy() if hasattr(type_, "copy") else type_
    # Named types (PostgreSQL ENUMs) must not share a name with the production table's.
    if isinstance(copied, sa.Enum) and copied.name:
        copied.name = prefix + copied.name
    return copied


def _check_prefix(prefix: object) -> None:
    if not isinstance(prefix, str) or not prefix:
        raise InvalidQuery(f"prefix must be a non-empty string, got {prefix!r}")


def _check_count(name: str, value: object, *, minimum: int, optional: bool = False) -> None:
    """Reject anything but an int >= ``minimum`` (or None when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or None" if optional else "")
        raise InvalidQuery(f"{name} must be {allowed}, got {value!r}")


def _check_before(before: object) -> dt.datetime | None:
    """``before`` as a naive UTC datetime (how timestamps are stored), or None."""
    if before is None:
        return None
    if not isinstance(before, dt.datetime):
        raise InvalidQuery(f"before must be a datetime or None, got {before!r}")
    if before.tzinfo is not None:
        before = before.astimezone(dt.UTC).replace(tzinfo=None)
    return before


def is_shadow(table: Table, prefix: str = SHADOW_PREFIX) -> bool:
    """Whether ``table`` is a shadow table."""
    return table.name.startswith(prefix)


def _never_reuse_ids(table: Table) -> None:
    """Make SQLite never hand out an id again (AUTOINCREMENT): without it, SQLite reuses the
    highest id once its row moved to the shadow table, and archiving the new row would then
    collide with the archived one. Servers' auto-increment counters never go back."""
    columns = list(table.primary_key.columns)
    if (
        len(columns) == 1
        and type(columns[0].type) is sa.Integer
        and columns[0].autoincrement in (True, "auto")
        and not columns[0].foreign_keys
    ):
        table.dialect_kwargs["sqlite_autoincrement"] = True


def create_shadow_tables(metadata: MetaData, *, prefix: str = SHADOW_PREFIX) -> dict[str, Table]:
    """Add a shadow twin to ``metadata`` for every table that has none; return name -> shadow."""
    _check_prefix(prefix)
    shadows: dict[str, Table] = {}
    for table in list(metadata.sorted_tables):
        if is_shadow(table, prefix):
            continue
        _never_reuse_ids(table)
        name = prefix + table.name
        if name in metadata.tables:
            shadows[table.name] = metadata.tables[name]
            continue
        columns = [
            sa.Column(
                col.name,
                _shadow_type(col.type, prefix),
                primary_key=col.primary_key,
                nullable=col.nullable,
                autoincrement=False,
            )
            for col in table.columns
        ]
        shadows[table.name] = Table(name, metadata, *columns, comment=f"archive of {table.name}")
    return shadows


def _primary_key(table: Table) -> sa.Column[Any]:
    columns = list(table.primary_key.columns)
    if len(columns) != 1:
        raise InvalidQuery(
            f"archiving needs a single-column primary key; {table.name!r} has {len(columns)}"
        )
    return columns[0]


def _still_referenced(table: Table, metadata: MetaData) -> list[sa.ColumnElement[bool]]:
    """Clauses that are true while some other row still refers to a row of ``table``."""
    clauses: list[sa.ColumnElement[bool]] = []
    for other in metadata.tables.values():
        for fk in other.foreign_keys:
            if fk.column.table is not table:
                continue
            if other is not table:
                clauses.append(sa.exists().where(fk.parent == fk.column))
                continue
            # A self-reference (a tree): another row of the same table, under an alias.
            alias = table.alias()
            pk = _primary_key(table)
            clauses.append(
                sa.exists().where(alias.c[fk.parent.name] == fk.column, alias.c[pk.name] != pk)
            )
    return clauses


def _is_self_referencing(table: Table) -> bool:
    return any(fk.column.table is table for fk in table.foreign_keys)


def _archive_batch(
    conn: Connection,
    table: Table,
    shadow: Table,
    blockers: list[Any],
    limit: int,
    before: dt.datetime | None = None,
) -> int:
    pk = _primary_key(table)
    when = [] if before is None else [table.c.deleted_at < before]
    ids_query = (
        sa.select(pk)
        .where(soft_deleted(table), *when, *[~b for b in blockers])
        .order_by(pk)
        .limit(limit)
        # Lock the rows: none may be restored or changed between the copy and the delete.
        .with_for_update()
    )
    ids = conn.execute(ids_query).scalars().all()
    if not ids:
        return 0
    chosen = _one_of(pk, ids, conn.dialect.name)
    names = [c.name for c in shadow.columns]
    rows = sa.select(*[table.c[n] for n in names]).where(chosen)
    conn.execute(sa.insert(shadow).from_select(names, rows))
    for fk in table.foreign_keys:
        if fk.column.table is table and fk.parent.nullable:
            # InnoDB refuses to delete a row that refers to itself: cut that link first
            # (the shadow already holds the row as it was).
            column = fk.parent
            conn.execute(
                sa.update(table).where(chosen, column.is_not(None)).values({column.name: None})
            )
    return conn.execute(sa.delete(table).where(chosen)).rowcount


def _one_of(column: sa.Column[Any], values: list[Any], dialect: str) -> sa.ColumnElement[bool]:
    """``column IN values`` for a batch of ids: on PostgreSQL ``= ANY`` of one array
    parameter, not a parameter per value, whose rendering and parsing cost more than
    the statement."""
    if dialect == "postgresql":
        array = sa.bindparam("batch_ids", values, type_=postgresql.ARRAY(column.type))
        return column == sa.any_(array)
    if dialect in ("mysql", "mariadb") and all(type(v) is int for v in values):
        # PyMySQL would escape each parameter in Python, and SQLAlchemy's literal
        # rendering costs as much: the ids, integers read from the table itself (checked
        # above), are written into the statement as their digits.
        return column.op("IN")(sa.literal_column(f"({','.join(map(str, values))})"))
    return column.in_(values)


def archive_table(
    db: Database,
    metadata: MetaData,
    table_name: str,
    *,
    max_rows: int | None = None,
    batch_size: int = 1000,
    prefix: str = SHADOW_PREFIX,
    before: dt.datetime | None = None,
) -> int:
    """Move up to ``max_rows`` soft-deleted rows of one table to its shadow; return how many.

    Each batch is one transaction; a table without a shadow or a ``deleted`` column gives 0.
    With ``before``, only rows whose ``deleted_at`` is earlier move (a table without
    ``deleted_at`` gives 0). Rows still referred to stay; if a table outside ``metadata``
    still refers to one, the batch is undone and archiving of this table stops there (try
    again later).
    """
    _check_count("max_rows", max_rows, minimum=0, optional=True)
    _check_count("batch_size", batch_size, minimum=1)
    _check_prefix(prefix)
    before = _check_before(before)
    if not isinstance(table_name, str):
        raise InvalidQuery(f"table_name must be a string, got {table_name!r}")
    table = metadata.tables.get(table_name)
    if table is None:
        raise InvalidQuery(f"unknown table {table_name!r}")
    shadow = metadata.tables.get(prefix + table_name)
    if shadow is None or "deleted" not in table.c:
        return 0
    if before is not None and "deleted_at" not in table.c:
        return 0  # no telling when its rows were deleted
    blockers = _still_referenced(table, metadata)
    # In a tree, a parent row frees up only once its children moved in an earlier batch.
    again_after_short_batch = _is_self_referencing(table)
    moved = 0
    while max_rows is None or moved < max_rows:
        limit = batch_size if max_rows is None else min(batch_size, max_rows - moved)
        try:
            count = db.run(_archive_batch, table, shadow, blockers, limit, before)
        except ForeignKeyViolation:
            break
        moved += count
        if count == 0 or (count < limit and not again_after_short_batch):
            break
    return moved


def archive_deleted_rows(
    db: Database,
    metadata: MetaData,
    *,
    max_rows: int | None = None,
    batch_size: int = 1000,
    prefix: str = SHADOW_PREFIX,
    before: dt.datetime | None = None,
) -> dict[str, int]:
    """Archive soft-deleted rows of every table (with ``before``: deleted before it),
    children before parents, up to ``max_rows`` in all; return the number moved per table
    (tables that moved none are left out)."""
    _check_count("max_rows", max_rows, minimum=0, optional=True)
    _check_count("batch_size", batch_size, minimum=1)
    _check_prefix(prefix)
    before = _check_before(before)
    counts: dict[str, int] = {}
    total = 0
    for table in reversed(metadata.sorted_tables):
        if is_shadow(table, prefix):
            continue
        remaining = None if max_rows is None else max_rows - total
        if remaining == 0:
            break
        moved = archive_table(
            db,
            metadata,
            table.name,
            max_rows=remaining,
            batch_size=batch_size,
            prefix=prefix,
            before=before,
        )
        if moved:
            counts[table.name] = moved
            total += moved
    return counts


def _purge_batch(conn: Connection, shadow: Table, before: dt.datetime | None, limit: int) -> int:
    pk = _primary_key(shadow)
    query = sa.select(pk).order_by(pk).limit(limit)
    if before is not None:
        query = query.where(shadow.c.deleted_at < before)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return 0
    return conn.execute(sa.delete(shadow).where(pk.in_(ids))).rowcount


def purge_shadow_tables(
    db: Database,
    metadata: MetaData,
    *,
    before: dt.datetime | None = None,
    batch_size: int = 1000,
    prefix: str = SHADOW_PREFIX,
) -> dict[str, int]:
    """Delete archived rows deleted before ``before`` (all of them when None), in batches;
    return the number removed per shadow table (tables that lost none are left out)."""
    before = _check_before(before)
    _check_count("batch_size", batch_size, minimum=1)
    _check_prefix(prefix)
    counts: dict[str, int] = {}
    for shadow in metadata.sorted_tables:
        if not is_shadow(shadow, prefix):
            continue
        if before is not None and "deleted_at" not in shadow.c:
            continue
        removed = 0
        while True:
            count = db.run(_purge_batch, shadow, before, batch_size)
            removed += count
            if count < batch_size:
                break
        if removed:
            counts[shadow.name] = removed
    return counts

"""``dblayer archive`` and ``dblayer purge``: soft-deleted rows into shadow tables, and
archived rows out of them, in batches, with progress and a per-table summary."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table

from dblayer.core import purge_shadow_tables, soft_deleted
from dblayer.core.archive import SHADOW_PREFIX

from .common import (
    JsonOption,
    TableProgress,
    UrlOption,
    archiving_metadata,
    check_archiving_store,
    count_rows,
    open_database,
    parse_when,
    print_json,
)
from .common import out as console

StoreOption = Annotated[
    str, typer.Option("--store", help="The store whose rows to move (nova keeps shadow tables).")
]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Rows per transaction.")]


def _summary(verb: str, counts: dict[str, int], extra: str = "") -> None:
    total = sum(counts.values())
    if counts:
        table = Table("table", "rows", box=None)
        for name, n in counts.items():
            table.add_row(name, str(n))
        console.print(table)
    console.print(f"{verb} {total} rows from {len(counts)} tables{extra}")


def archive(
    store: StoreOption = "nova",
    max_rows: Annotated[
        int | None, typer.Option("--max-rows", min=0, help="Move at most this many rows.")
    ] = None,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="Only rows soft-deleted before this ISO date or date-time (UTC).",
        ),
    ] = None,
    batch_size: BatchOption = 1000,
    url: UrlOption = None,
    json: JsonOption = False,
) -> None:
    """Move soft-deleted rows into the shadow tables, children before parents."""
    check_archiving_store(store)
    when = None if before is None else parse_when(before)
    naive = None if when is None else when.replace(tzinfo=None)
    from dblayer.stores import nova
    from dblayer.stores.nova.api.archive import archive_deleted_rows_before

    with open_database(url) as db:
        metadata = archiving_metadata(db, store, db.table_names())
        nova.configure(database=db, create_tables=False)
        ctx = nova.get_admin_context()
        # A call that moves nothing still soft-deletes the live rows owned by deleted
        # instances (they die with their instance), so the counts below include them.
        nova.archive_deleted_rows_for_table(ctx, "instances", max_rows=0)
        tables = [
            t
            for t in reversed(metadata.sorted_tables)
            if not t.name.startswith(SHADOW_PREFIX)
            and "deleted" in t.c
            and SHADOW_PREFIX + t.name in metadata.tables
            and (naive is None or "deleted_at" in t.c)
        ]
        by_name = {t.name: t for t in tables}

        def due(name: str) -> sa.Select[Any]:
            table = by_name[name]
            query = sa.select(sa.func.count()).select_from(table).where(soft_deleted(table))
            return query if naive is None else query.where(table.c.deleted_at < naive)

        deleted = count_rows(db, list(by_name), due)
        todo = sum(deleted.values())
        total = todo if max_rows is None else min(todo, max_rows)
        moved: dict[str, int] = {}
        with TableProgress("archiving", total, quiet=json) as progress:
            for name, waiting in deleted.items():
                left = None if max_rows is None else max_rows - sum(moved.values())
                if waiting == 0 or left == 0:
                    continue
                progress.table(name)
                count = 0
                while left is None or count < left:
                    limit = batch_size if left is None else min(batch_size, left - count)
                    n = archive_deleted_rows_before(ctx, name, naive, max_rows=limit)
                    count += n
                    progress.advance(n)
                    if n < limit:
                        break
                progress.done(name, count)
                if count:
                    moved[name] = count
        remaining = sum(deleted.values()) - sum(moved.values())
    data: dict[str, Any] = {
        "store": store,
        "archived": moved,
        "total": sum(moved.values()),
        "deleted_rows_left": remaining,
    }
    if when is not None:
        data["before"] = when.isoformat()
    if json:
        print_json(data)
        return
    left_note = f"; {remaining} deleted rows stay (still referred to, or over --max-rows)"
    before_note = "" if when is None else f" (deleted before {when:%Y-%m-%d %H:%M:%S} UTC)"
    _summary("archived", moved, before_note + (left_note if remaining else ""))


def purge(
    before: Annotated[
        str,
        typer.Option(
            "--before", help="Remove archived rows deleted before this ISO date or date-time (UTC)."
        ),
    ],
    store: StoreOption = "nova",
    batch_size: BatchOption = 1000,
    url: UrlOption = None,
    json: JsonOption = False,
) -> None:
    """Delete archived rows from the shadow tables for good."""
    check_archiving_store(store)
    when = parse_when(before)
    naive = when.replace(tzinfo=None)
    with open_database(url) as db:
        metadata = archiving_metadata(db, store, db.table_names())
        shadows = {
            t.name: t
            for t in metadata.sorted_tables
            if t.name.startswith(SHADOW_PREFIX) and "deleted_at" in t.c
        }
        due = count_rows(
            db,
            list(shadows),
            lambda n: (
                sa.select(sa.func.count())
                .select_from(shadows[n])
                .where(shadows[n].c.deleted_at < naive)
            ),
        )
        removed: dict[str, int] = {}
        with TableProgress("purging", sum(due.values()), quiet=json) as progress:
            for name, n in due.items():
                if not n:
                    continue
                progress.table(name)
                one = sa.MetaData()
                shadows[name].to_metadata(one)
                count = purge_shadow_tables(db, one, before=when, batch_size=batch_size).get(
                    name, 0
                )
                progress.advance(count)
                progress.done(name, count)
                if count:
                    removed[name] = count
    data = {
        "store": store,
        "before": when.isoformat(),
        "purged": removed,
        "total": sum(removed.values()),
    }
    if json:
        print_json(data)
        return
    _summary("purged", removed, f" (deleted before {when:%Y-%m-%d %H:%M:%S} UTC)")

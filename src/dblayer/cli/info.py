"""``dblayer info``: the database, its backend and version, and each store found in it
with its schema revision and row counts."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from dblayer.core import Database, migrations

from .common import (
    JsonOption,
    StoreTables,
    UrlOption,
    backend_name,
    count_rows,
    find_stores,
    open_database,
    print_json,
)
from .common import out as console


def _revisions(db: Database, found: StoreTables) -> dict[str, Any]:
    """The store's schema revision in ``db`` and its head revision."""
    params: dict[str, Any] = {}
    if found.prefix is not None and found.prefix != "jobman_":
        # A worker's or engine's tables: the version table follows the prefix alone.
        params = {"dao": "worker", "table_prefix": found.prefix}
    revision = migrations.current(db, found.name, **params)
    head = ",".join(migrations.heads(found.name))
    return {"revision": revision, "head": head, "up_to_date": revision == head}


def _revision_text(entry: dict[str, Any]) -> str:
    if entry["revision"] is None:
        return "none"
    if entry["up_to_date"]:
        return f"{entry['revision']} (head)"
    return f"{entry['revision']} (head {entry['head']})"


def info(url: UrlOption = None, json: JsonOption = False) -> None:
    """Show the backend, its version, the tables, and each store found with its schema
    revision and row counts."""
    with open_database(url) as db:
        tables = db.table_names()
        facts = db.facts
        stores: list[dict[str, Any]] = []
        for found in find_stores(db, tables):
            counts = count_rows(db, found.tables)
            entry: dict[str, Any] = {"store": found.name}
            if found.prefix is not None:
                entry["prefix"] = found.prefix
            entry.update(_revisions(db, found))
            entry["rows"] = sum(n for t, n in counts.items() if not t.startswith("shadow_"))
            entry["archived_rows"] = sum(n for t, n in counts.items() if t.startswith("shadow_"))
            entry["tables"] = counts
            stores.append(entry)
        data = {
            "url": db.url,
            "backend": backend_name(db),
            "driver": facts.driver,
            "server_version": db.server_version(),
            "tables": tables,
            "stores": stores,
        }
    if json:
        print_json(data)
        return
    console.print(f"url:      {data['url']}")
    console.print(f"backend:  {data['backend']} {data['server_version']} ({data['driver']})")
    in_stores = {t for entry in stores for t in entry["tables"]}
    # Version tables are the stores' too (alembic_version_<store>, _<prefix>job for jobman).
    others = [t for t in tables if t not in in_stores and not t.startswith("alembic_version_")]
    console.print(
        f"tables:   {len(tables)}" + (f" (not in a store: {', '.join(others)})" if others else "")
    )
    if not stores:
        console.print("stores:   none found")
        return
    table = Table("store", "revision", "tables", "rows", "archived", "largest tables", box=None)
    for entry in stores:
        name = entry["store"] + (f" ({entry['prefix']}*)" if entry.get("prefix") else "")
        largest = sorted(
            ((n, t) for t, n in entry["tables"].items() if n and not t.startswith("shadow_")),
            reverse=True,
        )[:3]
        table.add_row(
            name,
            _revision_text(entry),
            str(len(entry["tables"])),
            str(entry["rows"]),
            str(entry["archived_rows"]),
            ", ".join(f"{t} {n}" for n, t in largest) or "-",
        )
    console.print(table)

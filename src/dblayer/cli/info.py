"""``dblayer info``: the database, its backend and version, and each store found in it."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from .common import (
    JsonOption,
    UrlOption,
    backend_name,
    count_rows,
    find_stores,
    open_database,
    print_json,
)
from .common import out as console


def info(url: UrlOption = None, json: JsonOption = False) -> None:
    """Show the backend, its version, the tables, and each store found with row counts."""
    with open_database(url) as db:
        tables = db.table_names()
        facts = db.facts
        stores: list[dict[str, Any]] = []
        for found in find_stores(db, tables):
            counts = count_rows(db, found.tables)
            entry: dict[str, Any] = {"store": found.name}
            if found.prefix is not None:
                entry["prefix"] = found.prefix
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
    others = [t for t in tables if t not in in_stores]
    console.print(
        f"tables:   {len(tables)}" + (f" (not in a store: {', '.join(others)})" if others else "")
    )
    if not stores:
        console.print("stores:   none found")
        return
    table = Table("store", "tables", "rows", "archived", "largest tables", box=None)
    for entry in stores:
        name = entry["store"] + (f" ({entry['prefix']}*)" if entry.get("prefix") else "")
        largest = sorted(
            ((n, t) for t, n in entry["tables"].items() if n and not t.startswith("shadow_")),
            reverse=True,
        )[:3]
        table.add_row(
            name,
            str(len(entry["tables"])),
            str(entry["rows"]),
            str(entry["archived_rows"]),
            ", ".join(f"{t} {n}" for n, t in largest) or "-",
        )
    console.print(table)

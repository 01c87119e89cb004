"""``dblayer copy``: a store's tables from one database into another (typically a SQLite
file into PostgreSQL or MariaDB), schema made by the store's migrations, rows verified."""

from __future__ import annotations

import json as json_module
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table

from dblayer.core import Database, migrations
from dblayer.core.copy import TableCopy, copy_tables
from dblayer.core.errors import TargetNotEmpty

from .common import (
    CLIError,
    JsonOption,
    StoreTables,
    TableProgress,
    backend_name,
    count_rows,
    find_stores,
    open_database,
    print_json,
    resolve_url,
)
from .common import out as console

# jobman's fields by the type names its schemas use.
_JOBMAN_TYPES = (
    (sa.JSON, "JSON"),
    (sa.LargeBinary, "BLOB"),
    (sa.Integer, "INTEGER"),
    (sa.Float, "FLOAT"),
    (sa.Numeric, "FLOAT"),
)


def _jobman_params(
    db: Database, found: StoreTables, fields: dict[str, Any] | None
) -> dict[str, Any]:
    """The migration options of a jobman queue found in ``db``: the DAO whose columns its job
    table has (most columns first), and any other column as an extra job field (typed as
    ``fields`` says, else by its column type: JSON kept as text reads as TEXT)."""
    job = f"{found.prefix}job"
    with db.transaction(readonly=True) as conn:
        columns = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns(job)}
    candidates = [("jobman", None)] if found.prefix == "jobman_" else []
    candidates += [("worker", found.prefix), ("engine", found.prefix)]
    best: tuple[int, dict[str, Any]] | None = None
    for dao, prefix in candidates:
        params: dict[str, Any] = (
            {"dao": dao} if prefix is None else {"dao": dao, "table_prefix": prefix}
        )
        base = set(migrations.store_metadata("jobman", params).tables[job].columns.keys())
        if base <= set(columns) and (best is None or len(base) > best[0]):
            extra = {
                name: (fields or {}).get(name) or {"type": _jobman_type(type_)}
                for name, type_ in columns.items()
                if name not in base
            }
            if extra:
                params["extra_job_fields"] = extra
            best = (len(base), params)
    if best is None:
        raise CLIError(f"{job} has none of jobman's job tables' column sets; not copied")
    return best[1]


def _jobman_type(type_: Any) -> str:
    for sql_type, name in _JOBMAN_TYPES:
        if isinstance(type_, sql_type):
            return name
    return "TEXT"


def _params(db: Database, found: StoreTables, fields: dict[str, Any] | None) -> dict[str, Any]:
    return _jobman_params(db, found, fields) if found.name == "jobman" else {}


def _fields(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        fields = json_module.loads(text)
    except ValueError as e:
        raise CLIError(f"--extra-job-fields is not JSON: {e}") from None
    if not isinstance(fields, dict) or not all(isinstance(v, dict) for v in fields.values()):
        raise CLIError(
            '--extra-job-fields must be a JSON object such as {"tags": {"type": "JSON"}}'
        )
    return fields


def _label(found: StoreTables) -> str:
    return f"{found.name} ({found.prefix}*)" if found.prefix else found.name


def _chosen(source: Database, stores: list[str] | None) -> list[StoreTables]:
    found = find_stores(source, source.table_names())
    if stores:
        known = migrations.stores()
        for name in stores:
            if name not in known:
                raise CLIError(f"--store must be one of: {', '.join(known)}; got {name!r}")
            if not any(f.name == name for f in found):
                raise CLIError(f"no {name} tables in {source.url}")
        found = [f for f in found if f.name in stores]
    if not found:
        raise CLIError(f"no store's tables in {source.url}; nothing to copy")
    return found


def _check_source_revision(source: Database, found: StoreTables, params: dict[str, Any]) -> None:
    revision = migrations.current(source, found.name, **params)
    head = ",".join(migrations.heads(found.name))
    if revision is not None and revision != head:
        raise CLIError(
            f"{_label(found)} is at revision {revision} in {source.url}, not {head}: "
            "upgrade it first (dblayer db upgrade)"
        )


def _prepare_target(target: Database, found: StoreTables, params: dict[str, Any]) -> bool:
    """Make the store's schema on the target with its migrations unless its tables are
    there; return whether it was made."""
    names = set(migrations.store_metadata(found.name, params).tables)
    present = names & set(target.table_names())
    revision = migrations.current(target, found.name, **params)
    if present and revision is None:
        if present != names:
            missing = sorted(names - present)
            raise CLIError(
                f"the target has some of {_label(found)}'s tables but not {', '.join(missing)} "
                "and no revision: bring its schema to head first"
            )
        return False  # made without migrations (create_all): the tables are all there
    if revision == ",".join(migrations.heads(found.name)):
        return False
    migrations.upgrade(target, found.name, **params)
    return True


def _refuse_nonempty(target: Database, tables: list[sa.Table]) -> None:
    """Refuse before any schema is made when a target table already holds rows."""
    present = set(target.table_names())
    existing = [t.name for t in tables if t.name in present]
    filled = [name for name, n in count_rows(target, existing).items() if n]
    if filled:
        raise TargetNotEmpty(
            f"the target's tables already hold rows: {', '.join(filled)} "
            "(nothing was copied; --force copies into them anyway)"
        )


def copy(
    to_url: Annotated[
        str, typer.Option("--to", show_default=False, help="URL of the database to copy into.")
    ],
    from_url: Annotated[
        str | None,
        typer.Option(
            "--from",
            show_default=False,
            help="URL to copy from (default: $DBLAYER_URL, then the SQLite file ./dblayer.db).",
        ),
    ] = None,
    store: Annotated[
        list[str] | None,
        typer.Option("--store", help="A store to copy (repeatable; default: every store found)."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Rows per batch.")] = 10_000,
    force: Annotated[
        bool, typer.Option("--force", help="Copy into target tables that already hold rows.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify", help="Compare row checksums at the end (counts always)."
        ),
    ] = True,
    extra_job_fields: Annotated[
        str | None,
        typer.Option(
            "--extra-job-fields",
            help="jobman's extra job fields as JSON (as its DAO takes them), for fields whose "
            "type the source cannot tell (JSON kept as text on SQLite).",
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Copy stores' tables between databases, parents first, ids kept, verified at the end."""
    if resolve_url(from_url) == to_url:
        raise CLIError("--from and --to name the same database")
    fields = _fields(extra_job_fields)
    with (
        open_database(from_url) as source,
        open_database(to_url, must_exist=False) as target,
    ):
        found = _chosen(source, store)
        plans = []
        for entry in found:
            params = _params(source, entry, fields)
            _check_source_revision(source, entry, params)
            metadata = migrations.store_metadata(entry.name, params)
            plans.append((entry, params, list(metadata.sorted_tables)))
        tables = [t for _, _, store_tables in plans for t in store_tables]
        if not force:
            _refuse_nonempty(target, tables)
        created = [_label(e) for e, params, _ in plans if _prepare_target(target, e, params)]
        counts = count_rows(source, [t.name for t in tables])
        copied = _run(source, target, tables, counts, batch, force, verify, quiet=json)
        data = {
            "from": source.url,
            "to": target.url,
            "backend": backend_name(target),
            "schema_created": created,
            "stores": [
                {
                    "store": entry.name,
                    **({"prefix": entry.prefix} if entry.prefix else {}),
                    "revision": migrations.current(target, entry.name, **params),
                    "tables": {
                        t.name: {
                            "rows": copied[t.name].rows,
                            "checksum": copied[t.name].checksum,
                            "verified_by": copied[t.name].verified_by,
                        }
                        for t in store_tables
                    },
                }
                for entry, params, store_tables in plans
            ],
            "rows": sum(c.rows for c in copied.values()),
            "verified": "checksum" if verify else "count",
        }
    if json:
        print_json(data)
        return
    _summary(data)


def _run(
    source: Database,
    target: Database,
    tables: list[sa.Table],
    counts: dict[str, int],
    batch: int,
    force: bool,
    verify: bool,
    *,
    quiet: bool,
) -> dict[str, TableCopy]:
    with TableProgress("copying", sum(counts.values()), quiet=quiet) as progress:
        table_now, rows_now = "", 0

        def finish() -> None:
            if table_now:
                progress.done(table_now, rows_now)

        def on_batch(table: str, rows: int) -> None:
            nonlocal table_now, rows_now
            if table != table_now:
                finish()
                progress.table(table)
                table_now, rows_now = table, 0
            rows_now += rows
            progress.advance(rows)

        copied = copy_tables(
            source,
            target,
            tables,
            batch_size=batch,
            allow_nonempty=force,
            progress=on_batch,
            verify=verify,
        )
        finish()
        return copied


def _summary(data: dict[str, Any]) -> None:
    table = Table("store", "table", "rows", "checksum", box=None)
    empty = 0
    for entry in data["stores"]:
        name = entry["store"] + (f" ({entry['prefix']}*)" if entry.get("prefix") else "")
        for table_name, copied in entry["tables"].items():
            if copied["rows"]:
                table.add_row(name, table_name, str(copied["rows"]), copied["checksum"] or "-")
            else:
                empty += 1
    console.print(table)
    if empty:
        console.print(f"(and {empty} empty tables)")
    made = (
        f"; schema made for {', '.join(data['schema_created'])}" if data["schema_created"] else ""
    )
    console.print(
        f"copied {data['rows']} rows of {len(data['stores'])} stores from {data['from']} "
        f"to {data['to']}, {data['verified']}s verified{made}"
    )

"""What every ``dblayer`` command shares: the options, opening the database, output,
progress, and the stores the command knows by their tables."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dblayer.core import Database

ENV_VAR = "DBLAYER_URL"
DEFAULT_CLI_URL = "sqlite:///dblayer.db"

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar=ENV_VAR,
        show_default=False,
        help="Database URL (default: $DBLAYER_URL, then the SQLite file ./dblayer.db).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON).")]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CLIError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def resolve_url(url: str | None) -> str:
    """``--url``, else ``$DBLAYER_URL``, else the embedded SQLite file ./dblayer.db."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_CLI_URL


@contextmanager
def open_database(url: str | None, *, must_exist: bool = True) -> Iterator[Database]:
    """The Database at ``url``; with ``must_exist``, a SQLite file that is not there is an
    error (rather than a new empty file)."""
    db = Database(resolve_url(url))
    try:
        path = _sqlite_path(db)
        if must_exist and path is not None and not path.exists():
            raise CLIError(f"no database at {path} (run `dblayer demo` to make one, or give --url)")
        yield db
    finally:
        db.dispose()


def _sqlite_path(db: Database) -> Path | None:
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def backend_name(db: Database) -> str:
    """'sqlite', 'postgresql', 'mysql' or 'mariadb'."""
    facts = db.facts
    return "mariadb" if facts.is_mariadb else facts.backend


def print_json(data: Any) -> None:
    """``data`` as one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")


def parse_when(text: str) -> dt.datetime:
    """An ISO date or date-time ('2026-01-31', '2026-01-31T12:00', '...+02:00'); naive is UTC."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CLIError(
            f"--before must be an ISO date or date-time such as 2026-01-31 or "
            f"2026-01-31T12:00:00, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


# -- stores, by their tables ------------------------------------------------------------------


@dataclass(frozen=True)
class StoreTables:
    """A store found in a database: its name, tables and (for jobman) table prefix."""

    name: str
    tables: list[str]
    prefix: str | None = None


def _metadata_of(store: str) -> sa.MetaData:
    """The MetaData of a store with fixed tables (imported on demand: nova is big)."""
    if store == "nanny":
        from dblayer.stores.nanny import Base

        return Base.metadata
    if store == "topchef":
        from dblayer.stores.topchef import BASE

        return BASE.metadata
    if store == "blitz":
        from dblayer.stores.blitz import BlitzBase

        return BlitzBase.metadata
    if store == "nova":
        from dblayer.stores.nova.models import BASE

        return BASE.metadata
    raise CLIError(f"unknown store {store!r}")


FIXED_STORES = ("nanny", "topchef", "blitz", "nova")
ARCHIVING_STORES = ("nova",)


def find_stores(db: Database, tables: list[str]) -> list[StoreTables]:
    """The stores whose every table is in ``tables``; jobman queues by their
    ``<prefix>job`` and ``<prefix>kvp`` pair."""
    present = set(tables)
    found = []
    for store in FIXED_STORES:
        names = sorted(_metadata_of(store).tables)
        if present.issuperset(names):
            found.append(StoreTables(store, names))
    inspector = None
    for kvp in sorted(t for t in present if t.endswith("kvp")):
        prefix = kvp[: -len("kvp")]
        job = prefix + "job"
        if job not in present:
            continue
        if inspector is None:
            inspector = sa.inspect(db.engine)
        job_columns = {c["name"] for c in inspector.get_columns(job)}
        kvp_columns = {c["name"] for c in inspector.get_columns(kvp)}
        if {"key", "status"} <= job_columns and {"key", "value"} <= kvp_columns:
            found.append(StoreTables("jobman", [job, kvp], prefix))
    return found


def check_archiving_store(store: str) -> None:
    """Refuse a store that keeps no shadow tables."""
    if store not in ARCHIVING_STORES:
        raise CLIError(f"--store must be one of: {', '.join(ARCHIVING_STORES)}; got {store!r}")


def archiving_metadata(db: Database, store: str, tables: list[str]) -> sa.MetaData:
    """The MetaData of a store that archives, after checking its tables are in ``db``."""
    check_archiving_store(store)
    metadata = _metadata_of(store)
    missing = sorted(set(metadata.tables) - set(tables))
    if missing:
        raise CLIError(
            f"{store}'s tables are not in {db.url} ({len(missing)} missing, e.g. {missing[0]})"
        )
    return metadata


def count_rows(
    db: Database, tables: list[str], query_for: Callable[[str], sa.Select[Any]] | None = None
) -> dict[str, int]:
    """The number of rows of each table (or the count ``query_for(table)`` selects), read in
    one unit of work."""
    counts: dict[str, int] = {}
    with db.transaction(readonly=True) as conn:
        for name in tables:
            if query_for is None:
                query = sa.select(sa.func.count()).select_from(sa.table(name))
            else:
                query = query_for(name)
            counts[name] = int(conn.execute(query).scalar_one())
    return counts


# -- progress -----------------------------------------------------------------------------------


class TableProgress:
    """Progress of a batched job over tables: a Rich bar when stderr is a terminal, else one
    plain line per table on stderr (stdout keeps the summary and the JSON)."""

    def __init__(self, verb: str, total: int, quiet: bool = False) -> None:
        self.verb = verb
        self.total = total
        self.quiet = quiet
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> TableProgress:
        if err.is_terminal and not self.quiet:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.verb, total=self.total)
        return self

    def table(self, name: str) -> None:
        """Work on ``name`` starts."""
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self.verb} {name}")

    def advance(self, rows: int) -> None:
        """``rows`` more rows are done."""
        if self._progress is not None:
            self._progress.advance(self._task, rows)

    def done(self, name: str, rows: int) -> None:
        """``name`` is finished, with ``rows`` rows."""
        if self._progress is None and not self.quiet and rows:
            err.print(f"{self.verb} {name}: {rows} rows")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

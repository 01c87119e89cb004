"""``dblayer db``: each store's schema migrations (Alembic), one version table per store.

``upgrade``, ``downgrade``, ``current``, ``history``, ``check`` and ``adopt`` take the store
by name; jobman's tables follow its DAO's options, given as ``--dao``, ``--table-prefix``
and ``--extra-job-fields`` (JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from dblayer.core import migrations

from .common import CLIError, JsonOption, UrlOption, open_database, print_json
from .common import out as console

db_app = typer.Typer(
    name="db",
    help="Schema migrations of each store: upgrade, downgrade, current, history, check, adopt.",
    no_args_is_help=True,
)

StoreArgument = Annotated[
    str,
    typer.Argument(help="The store: nanny, topchef, jobman, blitz or nova.", show_default=False),
]
DaoOption = Annotated[
    str | None, typer.Option("--dao", help="jobman: the DAO whose tables (jobman, engine, worker).")
]
PrefixOption = Annotated[
    str | None,
    typer.Option("--table-prefix", help="jobman: the engine's or worker's table prefix."),
]
ExtraOption = Annotated[
    str | None,
    typer.Option(
        "--extra-job-fields",
        help='jobman: extra job fields as JSON, e.g. \'{"priority": {"type": "INTEGER"}}\'.',
    ),
]


def _params(dao: str | None, prefix: str | None, extra: str | None) -> dict[str, Any]:
    """The store's migration options given on the command line (jobman's)."""
    given = {"dao": dao, "table_prefix": prefix, "extra_job_fields": extra}
    return {name: value for name, value in given.items() if value is not None}


def _head(store: str) -> str | None:
    heads = migrations.heads(store)
    return ",".join(heads) if heads else None


def _revision(revision: str | None, head: str | None) -> str:
    if revision is None:
        return "none"
    return f"{revision} (head)" if revision == head else revision


def _show(data: dict[str, Any], lines: list[str], json: bool, status: int = 0) -> None:
    """``data`` as JSON, or ``lines`` as text; then exit with ``status``."""
    if json:
        print_json(data)
    else:
        for line in lines:
            console.print(line)
    if status:
        raise typer.Exit(status)


@db_app.command()
def upgrade(
    store: StoreArgument,
    revision: Annotated[str, typer.Argument(help="The revision to reach.")] = "head",
    url: UrlOption = None,
    json: JsonOption = False,
    dao: DaoOption = None,
    table_prefix: PrefixOption = None,
    extra_job_fields: ExtraOption = None,
) -> None:
    """Upgrade a store's schema to a revision (default: head), creating its tables."""
    params = _params(dao, table_prefix, extra_job_fields)
    head = _head(store)
    with open_database(url, must_exist=False) as db:
        previous = migrations.current(db, store, **params)
        reached = migrations.upgrade(db, store, revision, **params)
        data = {"store": store, "url": db.url, "previous": previous, "revision": reached}
    if previous == reached:
        line = f"{store}: at {_revision(reached, head)}, nothing to do"
    else:
        line = f"{store}: upgraded from {_revision(previous, head)} to {_revision(reached, head)}"
    _show({**data, "head": head}, [line], json)


@db_app.command()
def downgrade(
    store: StoreArgument,
    revision: Annotated[
        str, typer.Argument(help="The revision to go back to; 'base' drops the store's tables.")
    ],
    url: UrlOption = None,
    json: JsonOption = False,
    dao: DaoOption = None,
    table_prefix: PrefixOption = None,
    extra_job_fields: ExtraOption = None,
) -> None:
    """Downgrade a store's schema to a revision ('base' drops its tables and their rows)."""
    params = _params(dao, table_prefix, extra_job_fields)
    with open_database(url) as db:
        previous = migrations.current(db, store, **params)
        reached = migrations.downgrade(db, store, revision, **params)
        data = {"store": store, "url": db.url, "previous": previous, "revision": reached}
    to = "base (its tables dropped)" if reached is None else reached
    _show(data, [f"{store}: downgraded from {previous or 'none'} to {to}"], json)


# The commands below take the store and the common options only: each is a function of
# (url, store, params) giving the JSON document, the text lines and the exit status.
Report = tuple[dict[str, Any], list[str], int]


def _command(body: Callable[[str | None, str, dict[str, Any]], Report]) -> None:
    """Register ``body`` as the command named after it (its docstring is the help)."""

    def command(
        store: StoreArgument,
        url: UrlOption = None,
        json: JsonOption = False,
        dao: DaoOption = None,
        table_prefix: PrefixOption = None,
        extra_job_fields: ExtraOption = None,
    ) -> None:
        data, lines, status = body(url, store, _params(dao, table_prefix, extra_job_fields))
        _show(data, lines, json, status)

    command.__doc__ = body.__doc__
    db_app.command(body.__name__.strip("_"))(command)


@_command
def _current(url: str | None, store: str, params: dict[str, Any]) -> Report:
    """Show a store's schema revision in the database, and the head revision."""
    head = _head(store)
    with open_database(url) as db:
        revision = migrations.current(db, store, **params)
        data = {"store": store, "url": db.url, "revision": revision, "head": head}
    if revision is None:
        line = (
            f"{store}: no revision (`dblayer db upgrade {store}` creates its tables; "
            f"`dblayer db adopt {store}` takes over an existing database)"
        )
    else:
        line = f"{store}: {_revision(revision, head)}" + (
            "" if revision == head else f", head is {head}"
        )
    return {**data, "up_to_date": revision == head}, [line], 0


@_command
def _history(url: str | None, store: str, params: dict[str, Any]) -> Report:
    """List a store's revisions, newest first (marking the database's, when there is one)."""
    revisions = migrations.history(store)
    revision = None
    try:
        with open_database(url) as db:
            revision = migrations.current(db, store, **params)
    except CLIError:  # no database file: the revisions alone
        pass
    for entry in revisions:
        entry["current"] = entry["revision"] == revision
    lines = [
        f"{e['revision']}{' (current)' if e['current'] else ''}  {e['doc']}" for e in revisions
    ]
    return {"store": store, "current": revision, "revisions": revisions}, lines, 0


@_command
def _check(url: str | None, store: str, params: dict[str, Any]) -> Report:
    """Compare the database with a store's models; exit status 1 when they differ."""
    head = _head(store)
    with open_database(url) as db:
        revision = migrations.current(db, store, **params)
        differences = [migrations.describe(d) for d in migrations.check(db, store, **params)]
        data = {"store": store, "url": db.url, "revision": revision, "head": head}
    if differences:
        lines = [f"  {line}" for line in differences]
        lines.append(f"{store}: {len(differences)} differences from its models")
    else:
        lines = [f"{store}: the database matches its models ({_revision(revision, head)})"]
    data.update(differences=differences, ok=not differences)
    return data, lines, 1 if differences else 0


@_command
def _adopt(url: str | None, store: str, params: dict[str, Any]) -> Report:
    """Take over a database the store's original application made, keeping every row."""
    with open_database(url) as db:
        data = {"url": db.url, **migrations.adopt(db, store, **params)}
    status, revision = data["status"], data["revision"]
    if status == "managed":
        return (
            data,
            [f"{store}: already managed by dblayer (revision {revision}); nothing to do"],
            0,
        )
    if status == "stamped":
        line = f"{store}: its tables were dblayer's already; recorded revision {revision}"
    else:
        line = f"{store}: adopted at revision {revision}, every row kept"
    rows = ", ".join(f"{table} {n}" for table, n in data["tables"].items())
    return data, [line, f"  rows: {rows}"], 0

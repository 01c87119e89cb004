"""``dblayer jobs stats|requeue-expired``: a jobman queue at a glance, and putting back
the jobs of workers whose claims' leases ran out (they died)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table

from dblayer.stores.jobman import EngineSqliteDAO, JobmanSqliteDAO, WorkerSqliteDAO
from dblayer.stores.jobman.jobs import LEASE_COLUMNS

from .common import CLIError, JsonOption, UrlOption, backend_name, open_database, print_json
from .common import out as console

app = typer.Typer(
    name="jobs",
    help="Inspect and repair jobman queues.",
    no_args_is_help=True,
    add_completion=False,
)

_DAOS: dict[str, type[Any]] = {
    "jobman": JobmanSqliteDAO,
    "engine": EngineSqliteDAO,
    "worker": WorkerSqliteDAO,
}

DaoOption = Annotated[
    str,
    typer.Option(
        "--dao",
        help="Whose queue: jobman (tables jobman_job, jobman_kvp), engine or worker.",
    ),
]
PrefixOption = Annotated[
    str | None,
    typer.Option(
        "--table-prefix", help="The engine's or worker's table prefix (job table <prefix>job)."
    ),
]


@contextmanager
def _queue(url: str | None, dao: str, table_prefix: str | None) -> Iterator[Any]:
    """The DAO of an existing queue (its job table checked, nothing created)."""
    cls = _DAOS.get(dao)
    if cls is None:
        raise CLIError(f"--dao must be one of: {', '.join(_DAOS)}; got {dao!r}")
    options: dict[str, Any] = {}
    if cls is JobmanSqliteDAO:
        if table_prefix not in (None, "jobman_"):
            raise CLIError("--table-prefix goes with --dao engine or worker (jobman's is jobman_)")
    else:
        options["table_prefix"] = table_prefix
    with open_database(url) as db:
        queue = cls(db_uri=db.engine.url, initialize=False, **options)
        try:
            table = queue.orms["job"].table.name
            if table not in queue.db.table_names():
                raise CLIError(f"no jobman queue at {db.url}: table {table} is missing")
            columns = {c["name"] for c in _columns(queue, table)}
            missing = [c for c in LEASE_COLUMNS if c not in columns]
            if missing:
                raise CLIError(
                    f"table {table} has no lease columns ({', '.join(missing)}): upgrade it "
                    "with `dblayer db upgrade jobman` or by opening it with the jobman DAO"
                )
            yield queue
        finally:
            queue.close()


def _columns(queue: Any, table: str) -> list[dict[str, Any]]:
    return queue.db.run(lambda conn: sa.inspect(conn).get_columns(table), readonly=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "none pending"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@app.command()
def stats(
    dao: DaoOption = "jobman",
    table_prefix: PrefixOption = None,
    url: UrlOption = None,
    json: JsonOption = False,
) -> None:
    """Jobs by status, the oldest pending job's age and the claims whose lease ran out."""
    with _queue(url, dao, table_prefix) as queue:
        found = queue.job_stats()
        table = queue.orms["job"].table.name
        backend = backend_name(queue.db)
    if json:
        print_json(
            {
                "table": table,
                "dao": dao,
                "backend": backend,
                "statuses": found["statuses"],  # a job without status counts under "null"
                "total": found["total"],
                "oldest_pending_age_seconds": found["oldest_pending_age"],
                "claimed": found["claimed"],
                "expired_claims": found["expired_claims"],
            }
        )
        return
    grid = Table("status", "jobs", box=None)
    for status, n in sorted(found["statuses"].items(), key=lambda item: str(item[0])):
        grid.add_row("(none)" if status is None else str(status), str(n))
    console.print(f"jobman queue {table} ({backend}): {found['total']} jobs")
    if found["statuses"]:
        console.print(grid)
    console.print(f"oldest pending job: {_age(found['oldest_pending_age'])}")
    console.print(f"claimed: {found['claimed']}, lease expired: {found['expired_claims']}")


@app.command("requeue-expired")
def requeue_expired(
    dao: DaoOption = "jobman",
    table_prefix: PrefixOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Requeue at most this many jobs.")
    ] = None,
    url: UrlOption = None,
    json: JsonOption = False,
) -> None:
    """Put jobs still CLAIMED after their lease ran out back in the status claimed from."""
    with _queue(url, dao, table_prefix) as queue:
        jobs = queue.requeue_expired_jobs(limit=limit)
        table = queue.orms["job"].table.name
    by_status: dict[str, int] = {}
    for job in jobs:
        key = "(none)" if job["status"] is None else str(job["status"])
        by_status[key] = by_status.get(key, 0) + 1
    if json:
        print_json(
            {
                "table": table,
                "dao": dao,
                "requeued": len(jobs),
                "statuses": by_status,
                "keys": [job["key"] for job in jobs],
            }
        )
        return
    detail = ", ".join(f"{n} to {status}" for status, n in sorted(by_status.items()))
    console.print(f"requeued {len(jobs)} jobs in {table}" + (f" ({detail})" if detail else ""))

"""``dblayer demo``: a short tour on the embedded SQLite file (or any database by ``--url``).

It creates every store's schema with its migrations (to head), runs a jobman queue with
several worker processes claiming jobs, takes a nova instance through create, update, soft
delete and archive, and syncs a blitz session from Redis into SQL when Redis is reachable.
TopChef gets a database of its own (``--topchef-url``; default: ``<stem>-topchef.db`` next
to a SQLite file, else ./dblayer-topchef.db), since its table ``services`` is nova's too:
there a service is registered, jobs submitted, and the next one worked on and completed.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from dblayer.core import Database, DBLayerError, migrations

from .common import (
    CLIError,
    JsonOption,
    UrlOption,
    backend_name,
    open_database,
    print_json,
    resolve_url,
)
from .common import out as console

QUEUE_PREFIX = "demo_"
REDIS_PREFIX = "dblayer-demo:"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_PENDING = {"filters": [{"field": "status", "op": "=", "arg": "PENDING"}], "limit": 5}
TOPCHEF_DEFAULT_URL = "sqlite:///dblayer-topchef.db"
TOPCHEF_SERVICE = "demo-odmr"


# -- the schemas, by migrations ----------------------------------------------------------------

# The stores whose schemas the demo creates, with their migration options. (Not topchef
# here: its table "services" is nova's too, so it gets a database of its own, TOPCHEF.)
SCHEMAS: list[tuple[str, str, dict[str, Any]]] = [
    ("nanny", "nanny", {}),
    ("blitz", "blitz", {}),
    ("nova", "nova", {}),
    (f"jobman ({QUEUE_PREFIX}*)", "jobman", {"dao": "worker", "table_prefix": QUEUE_PREFIX}),
]
TOPCHEF: list[tuple[str, str, dict[str, Any]]] = [("topchef", "topchef", {})]


def _schemas(
    db: Database, schemas: list[tuple[str, str, dict[str, Any]]] = SCHEMAS
) -> dict[str, str | None]:
    """Upgrade every store of ``schemas`` to head; tables an older demo made without
    migrations are adopted (their revision recorded, their rows kept)."""
    present = set(db.table_names())
    reached: dict[str, str | None] = {}
    for label, store, params in schemas:
        tables = set(migrations.store_metadata(store, params).tables)
        if migrations.current(db, store, **params) is None and tables & present:
            migrations.adopt(db, store, **params)
        reached[label] = migrations.upgrade(db, store, **params)
    return reached


# -- jobman: a queue and worker processes ------------------------------------------------------


def _worker(url: str, barrier: Any, results: Any) -> None:
    """A worker process: claim PENDING jobs a few at a time and complete them."""
    from dblayer.stores.jobman import WorkerSqliteDAO

    try:
        dao = WorkerSqliteDAO(db_uri=url, table_prefix=QUEUE_PREFIX, initialize=False)
        barrier.wait(timeout=60)
        start = time.time()
        mine: list[str] = []
        while jobs := dao.claim_jobs(_PENDING):
            keys = [job["key"] for job in jobs]
            time.sleep(0.002 * len(jobs))  # the work a job stands for
            dao.update_jobs(
                {"status": "COMPLETED"}, {"filters": [{"field": "key", "op": "IN", "arg": keys}]}
            )
            mine.extend(keys)
        end = time.time()
        dao.close()
        results.put(("ok", (mine, start, end)))
    except Exception as e:  # noqa: BLE001 - reported by the parent, one line
        results.put(("error", f"{type(e).__name__}: {e}"))


def _jobman(url: str, workers: int, count: int) -> dict[str, Any]:
    from dblayer.stores.jobman import WorkerSqliteDAO

    dao = WorkerSqliteDAO(db_uri=url, table_prefix=QUEUE_PREFIX, initialize=False)
    try:
        table = dao.orms["job"].table
        dao.db.run(lambda conn: conn.execute(sa.delete(table)))  # a fresh queue every run
        dao.save_jobs([{"status": "PENDING", "engine_key": f"demo-{i}"} for i in range(count)])
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(workers), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(url, barrier, results)) for _ in range(workers)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        errors = [detail for status, detail in outcomes if status == "error"]
        if errors:
            raise CLIError(f"a demo worker failed: {errors[0]}")
        claimed = [mine for _, (mine, _, _) in outcomes]
        # From the moment all workers were ready to the last one finding the queue empty.
        seconds = max(e for _, (_, _, e) in outcomes) - min(s for _, (_, s, _) in outcomes)
        keys = [k for mine in claimed for k in mine]
        completed = len(dao.get_jobs_for_status("COMPLETED"))
    finally:
        dao.close()
    return {
        "tables": [f"{QUEUE_PREFIX}job", f"{QUEUE_PREFIX}kvp"],
        "jobs": count,
        "workers": workers,
        "claimed_per_worker": sorted((len(m) for m in claimed), reverse=True),
        "claimed_twice": len(keys) - len(set(keys)),
        "completed": completed,
        "seconds": round(seconds, 2),
    }


# -- nova: an instance's life ------------------------------------------------------------------


def _nova(db: Database) -> dict[str, Any]:
    from dblayer.stores import nova
    from dblayer.stores.nova.models import BASE

    nova.configure(database=db, create_tables=False)  # made by its migrations
    ctx = nova.RequestContext("demo-user", "demo-project")
    inst = nova.instance_create(
        ctx, {"display_name": "demo-web-1", "vm_state": "building", "metadata": {"role": "web"}}
    )
    uuid = inst["uuid"]
    nova.instance_update(ctx, uuid, {"vm_state": "active", "task_state": None})
    nova.instance_destroy(ctx, uuid)
    try:
        nova.instance_get_by_uuid(ctx, uuid)
        hidden = False
    except nova.exception.InstanceNotFound:
        hidden = True
    instances, shadow = BASE.metadata.tables["instances"], BASE.metadata.tables["shadow_instances"]

    def where_is(conn: sa.Connection) -> tuple[int, int]:
        live = conn.execute(
            sa.select(sa.func.count()).select_from(instances).where(instances.c.uuid == uuid)
        ).scalar_one()
        archived = conn.execute(
            sa.select(sa.func.count()).select_from(shadow).where(shadow.c.uuid == uuid)
        ).scalar_one()
        return int(live), int(archived)

    before = db.run(where_is)
    moved = nova.archive_deleted_rows(nova.get_admin_context())
    after = db.run(where_is)
    return {
        "tables": len(BASE.metadata.tables),
        "instance": uuid,
        "hidden_after_delete": hidden,
        "row_kept_after_delete": before[0] == 1,
        "archived_rows": moved,
        "in_shadow_after_archive": after == (0, 1),
    }


# -- blitz: a session from Redis into SQL ------------------------------------------------------


def _redis_display(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _blitz(url: str, redis_url: str) -> dict[str, Any]:
    from dblayer.stores.blitz import DatabaseClient, DatabaseServer

    client = DatabaseClient(path=url)  # its tables are there: made by the migrations
    try:
        try:
            import redis
        except ImportError:
            return {"skipped": "the redis package is not installed (pip install 'dblayer[redis]')"}
        shown = _redis_display(redis_url)
        try:
            conn = redis.Redis.from_url(
                redis_url, decode_responses=True, socket_connect_timeout=1, socket_timeout=5
            )
            conn.ping()
        except (redis.RedisError, ValueError, OSError) as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            return {"skipped": f"Redis not reachable at {shown}: {reason}"}
        # Keys of this run only (two demos at once never flush each other's session).
        server = DatabaseServer(conn, prefix=f"{REDIS_PREFIX}{os.getpid()}:")
        try:
            server.flush()
            session = server.start_session()
            now = time.strftime("%H:%M:%S")
            server.queue_many([f"{now} t={i} temp={20 + i / 10:.1f}" for i in range(25)])
            server.stop_session()
            written = client.sync_from_server(server)
        finally:
            server.flush()
            conn.close()
        return {"redis": shown, "session": session, "readings": written.get(session, 0)}
    finally:
        client.close()


# -- topchef: a service's jobs, on a database of its own ----------------------------------------


def _topchef_url(main: Database, topchef_url: str | None) -> str:
    """``--topchef-url``; else ``<stem>-topchef.db`` next to a SQLite file main database,
    else the embedded file ./dblayer-topchef.db."""
    if topchef_url:
        return topchef_url
    url = main.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return TOPCHEF_DEFAULT_URL
    path = Path(url.database)
    sibling = url.set(database=str(path.with_name(f"{path.stem}-topchef.db")))
    return sibling.render_as_string(hide_password=False)


def _same_database(a: Database, b: Database) -> bool:
    ua, ub = a.engine.url, b.engine.url
    if ua.get_backend_name() == ub.get_backend_name() == "sqlite":
        return bool(ua.database and ub.database) and (
            os.path.realpath(ua.database) == os.path.realpath(ub.database)
        )
    where = ("host", "port", "database")
    return ua.get_backend_name() == ub.get_backend_name() and all(
        getattr(ua, k) == getattr(ub, k) for k in where
    )


def _topchef(db: Database) -> dict[str, Any]:
    """Register a service, submit jobs, work the next one to COMPLETED; count by status."""
    from sqlalchemy.orm import Session

    from dblayer.stores.topchef import Job, JobStatus, Service

    registration = {"type": "object", "properties": {"volts": {"type": "number"}}}
    result = {"type": "object", "properties": {"counts": {"type": "array"}}}
    # A plain Session with a commit per step, as TopChef's API used the package.
    with Session(db.engine) as session:
        # A fresh set every run: the previous demo's service goes, its jobs with it (cascade).
        for old in session.query(Service).filter_by(name=TOPCHEF_SERVICE):
            session.delete(old)
        service = Service.new(TOPCHEF_SERVICE, "An ODMR sweep (dblayer demo)", registration, result)
        service.is_service_available = True  # it has checked in
        session.add(service)
        session.commit()
        for volts in (0.5, 1.0, 1.5):
            Job.new(service, {"volts": volts})  # joins the service's session
        session.commit()
        job = (
            service.jobs.filter_by(status=JobStatus.REGISTERED)
            .order_by(Job.date_submitted, Job.id)
            .first()
        )
        if job is None:
            raise CLIError("topchef: the demo's service has no REGISTERED job to take")
        job.status = JobStatus.WORKING
        session.commit()
        job.results = {"counts": [1021, 998, 1003]}  # the work the job stands for
        job.status = JobStatus.COMPLETED
        session.commit()
        by_status = dict(
            session.query(Job.status, sa.func.count())
            .filter(Job.service_id == service.id)
            .group_by(Job.status)
            .all()
        )
        return {
            "service": str(service.id),
            "service_name": service.name,
            "submitted": service.jobs.count(),
            "job": str(job.id),
            "job_parameters": job.parameters,
            "job_results": job.results,
            "jobs": {status.name: int(by_status.get(status, 0)) for status in JobStatus},
        }


# -- the command -------------------------------------------------------------------------------


def demo(
    url: UrlOption = None,
    json: JsonOption = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=32)] = 4,
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=100_000)] = 200,
    redis_url: Annotated[
        str,
        typer.Option(
            "--redis-url", envvar="DBLAYER_REDIS_URL", help="Redis for blitz's live sessions."
        ),
    ] = DEFAULT_REDIS_URL,
    topchef_url: Annotated[
        str | None,
        typer.Option(
            "--topchef-url",
            show_default=False,
            help="TopChef's database, not the --url one (its table services is nova's too); "
            "default: <stem>-topchef.db next to a SQLite file --url, else ./dblayer-topchef.db.",
        ),
    ] = None,
) -> None:
    """A short tour: jobman workers, a nova instance's life and archive, blitz from Redis,
    TopChef's jobs on a database of its own."""
    full_url = resolve_url(url)
    with open_database(full_url, must_exist=False) as db:
        if db.facts.is_memory:
            raise CLIError(
                "the demo's worker processes need a SQLite file or a server, not sqlite://"
            )
        with open_database(_topchef_url(db, topchef_url), must_exist=False) as topchef_db:
            if _same_database(db, topchef_db):
                raise CLIError(
                    f"--topchef-url must name another database than {db.url}: TopChef's "
                    "table services is nova's too"
                )
            try:  # reached before the tour, so a wrong --topchef-url costs nothing
                topchef_backend = backend_name(topchef_db)
            except DBLayerError as e:
                raise CLIError(f"TopChef's database {topchef_db.url}: {e}") from None
            data: dict[str, Any] = {
                "url": db.url,
                "backend": backend_name(db),
                "server_version": db.server_version(),
            }
            data["schemas"] = _schemas(db)
            data["jobman"] = _jobman(full_url, workers, jobs)
            data["nova"] = _nova(db)
            data["blitz"] = _blitz(full_url, redis_url)
            data["topchef"] = {
                "url": topchef_db.url,
                "backend": topchef_backend,
                "revision": _schemas(topchef_db, TOPCHEF)["topchef"],
                **_topchef(topchef_db),
            }
    if json:
        print_json(data)
        return
    j, n, b, t = data["jobman"], data["nova"], data["blitz"], data["topchef"]
    console.print(f"dblayer demo on {data['url']} ({data['backend']} {data['server_version']})")
    console.print(f"  schemas {', '.join(data['schemas'])} at head, by their migrations")
    console.print(
        f"  jobman  {j['workers']} worker processes claimed {j['jobs']} jobs from table "
        f"{j['tables'][0]} ({', '.join(map(str, j['claimed_per_worker']))} each) in "
        f"{j['seconds']} s: {j['completed']} completed, "
        + (
            "none claimed twice"
            if not j["claimed_twice"]
            else f"{j['claimed_twice']} CLAIMED TWICE"
        )
    )
    console.print(
        f"  nova    instance {n['instance'][:8]} created, started, deleted "
        f"({'hidden from the API' if n['hidden_after_delete'] else 'STILL VISIBLE'}, row kept "
        f"as soft-deleted), then archived: {n['archived_rows']} rows moved to shadow tables"
    )
    if "skipped" in b:
        console.print(f"  blitz   skipped: {b['skipped']}")
    else:
        console.print(
            f"  blitz   session {b['session']} logged {b['readings']} readings on Redis "
            f"({b['redis']}), synced into SQL as readings"
        )
    counts = ", ".join(f"{n} {status}" for status, n in t["jobs"].items() if n)
    console.print(
        f"  topchef on {t['url']}, a database of its own (its table services is nova's too), "
        f"schema at head ({t['revision']}) by its migrations"
    )
    console.print(
        f"          service {t['service_name']} registered, {t['submitted']} jobs submitted, "
        f"the next one taken, WORKING, then COMPLETED with its results: now {counts}"
    )
    console.print(
        "Next: `dblayer info` shows the stores and their rows; `dblayer --help` the rest."
    )

"""copy_jobman: ``dblayer copy``'s core function copying jobman's job table out of a SQLite
file, against the raw drivers doing the same copy.

The SQLite file holds 1,000,000 jobs (scaled) in the table JobMan's DAO makes
(``jobman_job``: 16 columns, four of them JSON text), made with jobman's migrations and
filled with sqlite3's executemany (untimed). The target is the backend under test
(PostgreSQL or MariaDB; on SQLite the case does not run), its table made by the same
migrations and emptied between runs. Ours is ``copy_tables`` (batches of 10,000, its
verification included: into PostgreSQL the job table's columns are all exact kinds, so
the COPY stream is parsed a second time into a scratch table by a second server process
and the server compares row counts and row hashes of both; into MariaDB the source's rows
are hashed as they stream through and the target's read back and hashed); a second line
times it with ``verify=False``. Raw reads the rows with sqlite3 (``fetchmany``) and writes them with
psycopg's ``COPY ... FROM STDIN`` (``write_row``) or PyMySQL's ``executemany``, in one
transaction, verifying nothing.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dblayer.core import Database, migrations
from dblayer.core.copy import copy_tables

from .runner import Context, Result, measure

JOBS = 1_000_000
BATCH = 10_000
TARGET = 1.5
STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED")


def _job(i: int) -> dict[str, Any]:
    """One job row as jobman stores it (job_spec as compact text with sorted keys, the
    other JSON as ``json.dumps`` writes it by default)."""
    spec = {"batchable": i % 2 == 0, "cfg": {"n": i, "tags": ["a", "b"]}, "dir": f"/jobs/{i}"}
    running = i % 4 == 1
    return {
        "created": 1_700_000_000.0 + i / 10,
        "modified": 1_700_000_000.0 + i / 5,
        "key": f"job-{i:08d}",
        "job_spec": json.dumps(spec, sort_keys=True, separators=(",", ":")),
        "status": STATUSES[i % 4],
        "batchable": i % 2,
        "worker_key": f"worker-{i % 16}" if i % 4 else None,
        "worker_meta": json.dumps({"pid": i % 30000}) if i % 4 else None,
        "errors": None if i % 10 else json.dumps(["boom", i]),
        "source_key": f"source-{i % 3}",
        "source_meta": json.dumps({"ref": i}),
        "purgeable": 0,
        "claimed_by": f"worker-{i % 16}" if running else None,
        "claim_expires": 1_700_000_600.0 + i if running else None,
        "claimed_from": "PENDING" if running else None,
    }


def fill_source(path: Path, count: int) -> tuple[Database, sa.MetaData]:
    """A SQLite file with jobman's tables (its migrations) and ``count`` jobs in them."""
    db = Database(f"sqlite:///{path}")
    migrations.upgrade(db, "jobman")
    metadata = migrations.store_metadata("jobman")
    table = metadata.tables["jobman_job"]
    names = ", ".join(f'"{c.name}"' for c in table.columns)
    raw = sqlite3.connect(path)
    try:
        raw.execute("DELETE FROM jobman_job")
        sql = f"INSERT INTO jobman_job ({names}) VALUES ({', '.join('?' * len(table.columns))})"
        names_in_order = [c.name for c in table.columns]
        for start in range(0, count, 100_000):
            jobs = (_job(i) for i in range(start, min(count, start + 100_000)))
            raw.executemany(sql, ([job.get(n) for n in names_in_order] for job in jobs))
        raw.commit()
    finally:
        raw.close()
    return db, metadata


def run(ctx: Context) -> None:
    """Time copy_tables against sqlite3 + COPY (PostgreSQL) / executemany (MariaDB)."""
    backend = ctx.backend
    if backend.name == "sqlite":
        print("copy_jobman: runs with a server as the target (PostgreSQL, MariaDB)", flush=True)
        return
    workdir = Path(tempfile.mkdtemp(prefix="dblayer-bench-copy-"))
    try:
        _compare(ctx, workdir / "jobman.db", ctx.n(JOBS))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _compare(ctx: Context, path: Path, count: int) -> None:
    """Fill the SQLite file at ``path``, then time both sides copying it into the target."""
    backend, target = ctx.backend, ctx.db
    source, metadata = fill_source(path, count)
    table = metadata.tables["jobman_job"]
    quote = target.engine.dialect.identifier_preparer.quote
    columns = [c.name for c in table.columns]
    target_sql = f"{quote(table.name)} ({', '.join(quote(c) for c in columns)})"
    select_sql = f"SELECT {', '.join(f'[{c}]' for c in columns)} FROM jobman_job"
    insert_sql = f"INSERT INTO {target_sql} VALUES ({', '.join(['%s'] * len(columns))})"
    migrations.downgrade(target, "jobman", "base")
    migrations.upgrade(target, "jobman")

    def reset() -> None:
        with target.transaction() as conn:
            conn.exec_driver_sql(f"TRUNCATE TABLE {quote(table.name)}")

    def ours(verify: bool = True) -> None:
        copied = copy_tables(source, target, [table], batch_size=BATCH, verify=verify)
        assert copied[table.name].rows == count

    def raw() -> None:
        reader = sqlite3.connect(path)
        writer = ctx.raw()
        try:
            cursor = reader.execute(select_sql)
            with writer.cursor() as out:
                if backend.name == "postgresql":
                    with out.copy(f"COPY {target_sql} FROM STDIN") as copy:
                        while rows := cursor.fetchmany(BATCH):
                            for row in rows:
                                copy.write_row(row)
                else:
                    while rows := cursor.fetchmany(BATCH):
                        out.executemany(insert_sql, rows)
            writer.commit()
        finally:
            reader.close()
            writer.close()

    reps = min(ctx.reps, 2)  # a full copy is long: best of 2
    try:
        for verify, note in ((True, "verified: count + checksum"), (False, "verify=False")):
            ours_s, raw_s = measure(
                ctx,
                lambda verify=verify: ours(verify),
                raw,
                reset=reset,
                reps=reps,
                # The runs are long enough to need no warm-up of their own.
                warm_ours=lambda: None,
                warm_raw=lambda: None,
            )
            # The target is for PostgreSQL; MariaDB's figure is reported alone.
            goal = TARGET if backend.name == "postgresql" else None
            ctx.report(
                Result("copy_jobman", backend.name, ours_s, raw_s, count, "rows", goal, note)
            )
    finally:
        migrations.downgrade(target, "jobman", "base")
        source.dispose()

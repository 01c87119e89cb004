"""blitz_add_many: DatabaseClient.add_many of new Readings against the driver's executemany.

blitz's tables have fixed names (``reading``, ``category``, ...), so on the servers the
case works in a database of its own, ``bench_blitz``,
created and dropped here, and never touches tables of that name elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import make_url

from dblayer.stores.blitz import DatabaseClient, Reading

from .runner import Backend, Context, Result, measure, raw_connect, raw_transaction

READINGS = 100_000
TARGET = 1.5
SPACE = "bench_blitz"


@contextmanager
def own_space(backend: Backend) -> Iterator[Backend]:
    """The backend pointed at a fresh schema/database of the case's own, dropped afterwards."""
    if backend.name == "sqlite":
        yield backend
        return
    url = make_url(backend.url)
    admin = raw_connect(backend)
    admin.autocommit(True) if backend.name == "mariadb" else setattr(admin, "autocommit", True)
    drop, create = f"DROP DATABASE IF EXISTS {SPACE}", f"CREATE DATABASE {SPACE}"
    try:
        for sql in (drop, create):
            admin.cursor().execute(sql)
        url = url.set(database=SPACE).render_as_string(hide_password=False)
        yield Backend(backend.name, url)
    finally:
        admin.cursor().execute(drop)
        admin.close()


def run(ctx: Context) -> None:
    """Time ``add_many`` of new Readings against executemany of the same values."""
    n = ctx.n(READINGS)
    with own_space(ctx.backend) as backend:
        client = DatabaseClient(path=backend.url)
        raw_conn = raw_connect(backend)
        try:
            category = client.get_or_create_category("bench")
            sql = (
                'INSERT INTO reading ("sessionId", "timeLogged", "categoryId", value) '
                f"VALUES ({backend.marks(4)})"
            )
            if backend.name == "mariadb":
                sql = sql.replace('"', "`")
            batch: list[Reading] = []

            def fresh(count: int = n) -> None:
                # New objects every run (untimed): add_many numbers the ones it is given.
                with raw_transaction(backend, raw_conn) as cur:
                    cur.execute("DELETE FROM reading")
                batch[:] = [
                    Reading(
                        sessionId=1 + i // 1000,
                        timeLogged=1_700_000_000_000 + i,
                        categoryId=category,
                        value=f"{i % 997}.5",
                    )
                    for i in range(count)
                ]

            def raw() -> None:
                params: list[tuple[Any, ...]] = [
                    (r.sessionId, r.timeLogged, r.categoryId, r.value) for r in batch
                ]
                with raw_transaction(backend, raw_conn) as cur:
                    cur.executemany(sql, params)

            ours_s, raw_s = measure(ctx, lambda: client.add_many(batch), raw, reset=fresh)
            fresh()
            client.add_many(batch)
            ids = {r.id for r in batch}
            with raw_transaction(backend, raw_conn) as cur:
                cur.execute("SELECT COUNT(*) FROM reading")
                stored = cur.fetchone()[0]
        finally:
            raw_conn.close()
            client.db.drop_all(Reading.metadata)
            client.close()
    if stored != n or len(ids) != n or None in ids:
        raise AssertionError(f"blitz_add_many: {stored} rows, {len(ids)} ids for {n} readings")
    # Ours also numbers every object (core insert_many_ids); raw reads no ids back.
    ctx.report(Result("blitz_add_many", ctx.backend.name, ours_s, raw_s, n, "rows", TARGET))

"""compare_and_set: successful compare-and-set calls on one key, one transaction each."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dblayer.core import KeyValueStore, kv_table, new_metadata, utcnow

from .runner import Backend, Context, Result, measure, raw_begin, tables

CALLS = 10_000
KEY = "counter"

metadata = new_metadata()
table = kv_table("bench_kv", metadata)


def raw_cas(backend: Backend, conn: Any) -> Callable[[str, Any, Any], bool]:
    """compare_and_set by hand on ``conn``: lock the row, compare, update, commit."""
    mark = backend.mark
    key = "`key`" if backend.name == "mariadb" else '"key"'  # KEY is reserved in MariaDB
    lock = "" if backend.name == "sqlite" else " FOR UPDATE"  # SQLite: BEGIN IMMEDIATE locks
    select = f"SELECT value FROM bench_kv WHERE {key} = {mark}{lock}"
    update = f"UPDATE bench_kv SET value = {mark}, updated_at = {mark} WHERE {key} = {mark}"
    decode = backend.name != "postgresql"  # only psycopg turns JSON into Python values itself

    def cas(name: str, new: Any, expected: Any) -> bool:
        raw_begin(backend, conn, immediate=True)
        cur = conn.cursor()
        try:
            cur.execute(select, (name,))
            row = cur.fetchone()
            value = None if row is None else row[0]
            if decode and value is not None:
                value = json.loads(value)
            if row is None or value != expected or type(value) is not type(expected):
                conn.rollback()
                return False
            cur.execute(update, (json.dumps(new), utcnow(), name))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return True

    return cas


def run(ctx: Context) -> None:
    """Time KeyValueStore.compare_and_set against the same read-lock-write by hand."""
    db, backend = ctx.db, ctx.backend
    calls = ctx.n(CALLS)
    warm_calls = max(1, calls // 50)
    store = KeyValueStore(db, table)
    raw_conn = ctx.raw()
    cas = raw_cas(backend, raw_conn)

    def reset() -> None:
        store.set(KEY, 0)

    def ours(n: int) -> None:
        for value in range(n):
            if not store.compare_and_set(KEY, value + 1, value):
                raise AssertionError(f"compare_and_set failed at {value}")

    def raw(n: int) -> None:
        for value in range(n):
            if not cas(KEY, value + 1, value):
                raise AssertionError(f"raw compare_and_set failed at {value}")

    try:
        with tables(db, metadata):
            ours_s, raw_s = measure(
                ctx,
                lambda: ours(calls),
                lambda: raw(calls),
                reset=reset,
                warm_ours=lambda: ours(warm_calls),
                warm_raw=lambda: raw(warm_calls),
                reps=1,
            )
            final = store.get(KEY)
    finally:
        raw_conn.close()
    if final != calls:
        raise AssertionError(f"compare_and_set left {final!r}, expected {calls}")
    ctx.report(Result("compare_and_set", backend.name, ours_s, raw_s, calls, "sets"))

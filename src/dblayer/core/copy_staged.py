"""Verifying a copy into PostgreSQL on the server, for tables of values its text keeps exactly.

When every column of a table holds integers, double-precision floats, text, jsonb or
booleans (text PostgreSQL parses without loss, or refuses), the copy's COPY stream is
also sent, byte for byte, into a scratch table on a second connection: a temporary
table of the copied columns' types, without the target's constraints, triggers, rules
or defaults, which a second server process fills while the first fills the target.
At the end the server hashes
every row of both tables (``hash_record_extended``, PostgreSQL 14 and later) and the
counts and sums must agree, so a row lost, added or changed on the way into the target
(a trigger, a rule, another writer) fails the copy.

Nothing is read back into Python, where hashing the source's values and the rows read
back cost more than the copy itself. What it trusts that the general check
(``copy.table_checksum``) does not: psycopg's writing of the values as COPY text, since
both tables parse the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Engine

EXACT_KINDS = frozenset({"int", "float", "text", "json", "bool"})
MOD = 1 << 64  # the server digests are sums modulo this
_STAGE = "dblayer_copy_stage"


def applies(conn: Connection, kinds: Sequence[str], jsonb: bool) -> bool:
    """Whether a table of columns of these kinds can be checked on ``conn``'s server (JSON
    columns must be jsonb: json has no hash)."""
    dialect = conn.dialect
    return (
        dialect.name == "postgresql"
        and dialect.driver == "psycopg"
        and (dialect.server_version_info or (0,)) >= (14,)
        and all(kind in EXACT_KINDS for kind in kinds)
        and ("json" not in kinds or jsonb)
    )


def digest(conn: Any, table: str, columns: Sequence[str]) -> tuple[int, int]:
    """(rows, the sum of their hashes modulo 2**64) of ``table`` (quoted) on a DB-API
    connection to PostgreSQL."""
    sql = (
        f"SELECT count(*), COALESCE(sum(hash_record_extended(ROW({', '.join(columns)}), 0)"
        f"::numeric), 0) FROM {table}"
    )
    with conn.cursor() as cursor:
        cursor.execute(sql)
        rows, total = cursor.fetchone()
    return int(rows), int(total) % MOD


class Staging:
    """The scratch table of one copied table and its COPY, on a connection of its own."""

    def __init__(self, engine: Engine, table: str, columns: Sequence[str]) -> None:
        """``table`` and ``columns`` quoted, as the target's COPY names them."""
        self.engine = engine
        self.table = table
        self.columns = list(columns)
        self._conn: Connection | None = None
        self._copy_context: Any = None
        self._copy: Any = None

    def __enter__(self) -> Staging:
        from psycopg.copy import QueuedLibpqWriter

        self._conn = self.engine.connect()
        raw = self._conn.connection.dbapi_connection
        with raw.cursor() as cursor:
            # The copied columns' types only: no constraint, default, trigger or rule.
            cursor.execute(
                f"CREATE TEMPORARY TABLE {_STAGE} AS "
                f"SELECT {', '.join(self.columns)} FROM {self.table} WITH NO DATA"
            )
        cursor = raw.cursor()
        # Written from a thread of psycopg's: the copy's own writes do not wait on it.
        self._copy_context = cursor.copy(
            f"COPY {_STAGE} ({', '.join(self.columns)}) FROM STDIN",
            writer=QueuedLibpqWriter(cursor),
        )
        self._copy = self._copy_context.__enter__()
        return self

    def writer(self, cursor: Any) -> Any:
        """A psycopg Writer for the target's COPY on ``cursor`` that sends every buffer
        to the scratch table too."""
        from psycopg.copy import LibpqWriter, Writer

        target, stage = LibpqWriter(cursor), self._copy

        class Tee(Writer):
            def write(self, data: Any) -> None:
                target.write(data)
                stage.write(data)

            def finish(self, exc: BaseException | None = None) -> None:
                target.finish(exc)

        return Tee()

    def digests(self, target: Any) -> tuple[tuple[int, int], tuple[int, int]]:
        """Finish the scratch table's COPY, then (its digest, the target's digest on the
        DB-API connection ``target``), the two computed at once by two server processes."""
        context, self._copy_context = self._copy_context, None
        context.__exit__(None, None, None)
        assert self._conn is not None
        raw = self._conn.connection.dbapi_connection
        with ThreadPoolExecutor(1, thread_name_prefix="dblayer-copy-check") as pool:
            staged = pool.submit(digest, raw, _STAGE, self.columns)
            copied = digest(target, self.table, self.columns)
            return staged.result(), copied

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._copy_context is not None:
                self._copy_context.__exit__(exc_type, exc, tb)
        finally:
            if self._conn is not None:
                self._conn.close()  # rolls back: the temporary table goes with it

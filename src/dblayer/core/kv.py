"""Key-value rows with an atomic compare-and-set, values in the portable JSON type."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, MetaData, Table

from .database import Database
from .errors import CompareAndSetFailed, InvalidValue
from .prepared import PreparedQuery, PreparedWrite
from .types import JSON, ExactString, UTCDateTime, json_dumps, utcnow
from .upsert import insert_ignore, upsert


class _Absent:
    """The expected "value" of a key that does not exist."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


def kv_table(name: str, metadata: MetaData, *, key_length: int = 255) -> Table:
    """A key-value table: ``key`` (primary key), ``value`` (JSON), ``created_at``, ``updated_at``."""
    return Table(
        name,
        metadata,
        sa.Column("key", ExactString(key_length), primary_key=True),
        sa.Column("value", JSON()),
        sa.Column("created_at", UTCDateTime(), default=utcnow),
        sa.Column("updated_at", UTCDateTime(), default=utcnow, onupdate=utcnow),
    )


class KeyValueStore:
    """get / set / compare_and_set / delete over one key-value table."""

    def __init__(self, db: Database, table: Table) -> None:
        """Serve ``table`` (made by :func:`kv_table` or alike) on ``db``."""
        self.db = db
        self.table = table
        self._get = sa.select(table.c.value).where(table.c.key == sa.bindparam("k"))
        # compare_and_set's two statements run on the driver cursor (compiled once per
        # dialect): SQLAlchemy's per-statement work would cost more than the SQL on SQLite.
        self._lock = PreparedQuery(self._get.with_for_update())
        self._update = PreparedWrite(
            sa.update(table)
            .where(table.c.key == sa.bindparam("k"))
            .values(
                value=sa.bindparam("new_value", type_=table.c.value.type),
                updated_at=sa.bindparam("now", type_=table.c.updated_at.type),
            )
        )

    def _check_key(self, key: Any) -> str:
        if not isinstance(key, str) or not key:
            raise InvalidValue(f"a key must be a non-empty string, got {key!r}")
        length = getattr(self.table.c.key.type, "length", None)
        if length is not None and len(key) > length:
            raise InvalidValue(f"key is {len(key)} characters long; at most {length} allowed")
        return key

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when there is none."""
        key = self._check_key(key)

        def work(conn: Connection) -> Any:
            row = conn.execute(self._get, {"k": key}).first()
            return default if row is None else row[0]

        return self.db.run(work, readonly=True)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        key = self._check_key(key)
        now = utcnow()
        self.db.run(
            lambda conn: upsert(
                conn,
                self.table,
                {"key": key, "value": value, "created_at": now, "updated_at": now},
                update=["value", "updated_at"],
            )
        )

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it existed."""
        key = self._check_key(key)
        stmt = sa.delete(self.table).where(self.table.c.key == key)
        return self.db.run(lambda conn: conn.execute(stmt).rowcount > 0)

    def compare_and_set(
        self, key: str, new: Any, expected: Any = ABSENT, *, raise_on_mismatch: bool = False
    ) -> bool:
        """Set ``key`` to ``new`` only if it now holds ``expected`` (``ABSENT``: does not exist).

        Atomic: the row is locked (SQLite: the database is) between the read and the write.
        Returns whether it applied; with ``raise_on_mismatch`` a mismatch raises
        CompareAndSetFailed instead. Nothing changes on a mismatch.
        """
        key = self._check_key(key)
        json_dumps(new)  # a value that cannot be stored is an error, match or not
        wanted = ABSENT if expected is ABSENT else canonical_json(expected)
        applied = self.db.run(self._compare_and_set, key, new, wanted)
        if not applied and raise_on_mismatch:
            raise CompareAndSetFailed(f"key {key!r} does not hold the expected value")
        return applied

    def _compare_and_set(self, conn: Connection, key: str, new: Any, wanted: str | _Absent) -> bool:
        now = utcnow()
        if wanted is ABSENT:
            row = {"key": key, "value": new, "created_at": now, "updated_at": now}
            return insert_ignore(conn, self.table, row) == 1
        row = self._lock.first(conn, k=key)
        if row is None or canonical_json(row["value"]) != wanted:
            return False
        self._update.run(conn, k=key, new_value=new, now=now)
        return True


def canonical_json(value: Any) -> str:
    """``value`` as the JSON it is stored as, keys sorted: equal only for equal JSON
    (1, 1.0 and True all differ; a tuple is the list it is stored as; key order does not)."""
    return json.dumps(json.loads(json_dumps(value)), sort_keys=True, separators=(",", ":"))

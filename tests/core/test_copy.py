"""copy_tables: every row of a set of tables from one backend to another, verified."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from dblayer.core import (
    JSON,
    UUID,
    ConflictError,
    Database,
    DBLayerError,
    ExactString,
    InvalidValue,
    UTCDateTime,
    new_metadata,
)
from dblayer.core.copy import copy_tables, table_checksum
from dblayer.core.errors import CopyMismatch, TargetNotEmpty
from tests.conftest import backend_url, open_database


class Colour(enum.Enum):
    red = "red"
    green = "green"


class VarcharJSON(TypeDecorator):
    """topchef's JSON: PostgreSQL's JSON there, JSON text in a VARCHAR elsewhere."""

    impl = sa.VARCHAR
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSON(none_as_null=True))
        return dialect.type_descriptor(sa.VARCHAR(2000))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        import json

        if value is None or dialect.name == "postgresql":
            return value
        return json.dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        import json

        if value is None or dialect.name == "postgresql" or not isinstance(value, str):
            return value
        return json.loads(value)


metadata = new_metadata()
# Every column type the stores use: nova (integers, booleans, strings, text, UTC datetimes,
# floats, enums, a tree), jobman (text keys, JSON, doubles, BLOBs), topchef (UUID, JSON as
# VARCHAR), blitz (big integers).
parents = sa.Table(
    "cp_parents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("big", sa.BigInteger),
    sa.Column("flag", sa.Boolean),
    sa.Column("body", sa.Text),
    sa.Column("exact", ExactString(32)),
    sa.Column("data", JSON()),
    sa.Column("doc", VarcharJSON()),
    sa.Column("uid", UUID()),
    sa.Column("created_at", UTCDateTime()),
    sa.Column("ratio", sa.Float()),
    sa.Column("precise", sa.Double()),
    sa.Column("colour", sa.Enum(Colour, name="cp_colour")),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("cp_parents.id")),
)
children = sa.Table(
    "cp_children",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("cp_parents.id"), nullable=False),
    sa.Column("note", sa.String(32)),
    sqlite_autoincrement=True,  # SQLite keeps a counter too (as nova's tables do)
)
keyed = sa.Table(
    "cp_keyed",
    metadata,
    sa.Column("key", ExactString(255), primary_key=True),
    sa.Column("value", JSON()),
    sa.Column("modified", sa.Double()),
)

PAIRS = [
    ("sqlite_file", "postgresql"),
    ("sqlite_file", "mariadb"),
    ("postgresql", "sqlite_file"),
    ("mariadb", "postgresql"),
    ("postgresql", "mariadb"),
    ("mariadb", "sqlite_file"),
]


def parent(i: int) -> dict[str, Any]:
    odd = i % 2 == 1
    return {
        "id": i,
        "name": f"p{i} ü ' \" \\ \t tab",
        "big": 2**62 + i,
        "flag": odd,
        "body": None if i == 3 else "line\nnext\\N " * (i % 4),
        "exact": f"Key {i} ",
        "data": {"n": i, "list": [1, 2.5, None, "ß"], "nested": {"ok": odd}, "b": "x"},
        "doc": None if i == 4 else [i, "a", {"z": 1, "a": [True]}],
        "uid": uuid.UUID(int=i * 7919 + 1),
        "created_at": dt.datetime(2024, 2, 29, 23, 59, 58, i * 1000 + 1),
        "ratio": i / 3,
        "precise": i / 7 + 1e-12,
        "colour": Colour.red if odd else Colour.green,
        "blob": bytes(range(i % 256)) + b"\x00\\\n",
        # A tree: row i refers to an earlier row.
        "parent_id": None if i == 1 else i // 2,
    }


def fill(db: Database, count: int = 40) -> None:
    with db.transaction() as conn:
        conn.execute(sa.insert(parents), [parent(i) for i in range(1, count + 1)])
        conn.execute(
            sa.insert(children),
            [
                {"id": 10 * i, "parent_id": i, "note": None if i % 5 else "n"}
                for i in range(1, count)
            ],
        )
        conn.execute(
            sa.insert(keyed),
            [
                {"key": "b", "value": {"x": 1}, "modified": 1.5},
                {"key": "B", "value": None, "modified": 0.0},
                {"key": "a ", "value": [1, "two"], "modified": 1e300},
                {"key": "ü", "value": "just a string", "modified": -2.25},
                {"key": "z", "value": 7, "modified": 3.0},
            ],
        )


def put(db: Database, key: str, value: Any) -> None:
    """A row already in the target's cp_keyed."""
    with db.transaction() as conn:
        conn.execute(sa.insert(keyed), [{"key": key, "value": value, "modified": 1.0}])


def rows(db: Database, table: sa.Table) -> list[dict[str, Any]]:
    with db.transaction(readonly=True) as conn:
        query = sa.select(table).order_by(*table.primary_key.columns)
        return sorted(
            (dict(r) for r in conn.execute(query).mappings()),
            key=lambda r: str([r[c.name] for c in table.primary_key.columns]),
        )


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A row as every backend keeps it: sa.Float is single precision on MariaDB."""
    out = dict(row)
    if out.get("ratio") is not None:
        out["ratio"] = float(format(out["ratio"], ".6g"))
    return out


def database(backend: str, run_dir: Path, role: str) -> Database:
    db = open_database(backend, run_dir, store=f"copy_{role}")
    db.create_all(metadata)
    with db.transaction() as conn:
        conn.execute(sa.update(parents).values(parent_id=None))  # InnoDB: the tree first
        for table in reversed(metadata.sorted_tables):
            conn.execute(sa.delete(table))
    return db


def verified_by(target: Database, table: sa.Table) -> str:
    """How a copy into ``target`` verifies ``table``: on PostgreSQL's server when its every
    column is an integer, double, text, jsonb or boolean (cp_parents has UUIDs, datetimes)."""
    return "server" if target.backend == "postgresql" and table is not parents else "checksum"


@pytest.fixture(params=PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def pair(request: pytest.FixtureRequest, run_dir: Path) -> tuple[Database, Database]:
    source_backend, target_backend = request.param
    return database(source_backend, run_dir, "src"), database(target_backend, run_dir, "dst")


def test_copy_keeps_every_value_and_id(pair: tuple[Database, Database]) -> None:
    source, target = pair
    fill(source)
    seen: list[tuple[str, int]] = []
    result = copy_tables(
        source, target, metadata, batch_size=7, progress=lambda t, n: seen.append((t, n))
    )
    # Parents before children, and every table with its count and checksum.
    assert list(result) == [t.name for t in metadata.sorted_tables]
    assert result["cp_parents"].rows == 40 and result["cp_children"].rows == 39
    assert result["cp_keyed"].rows == 5
    for name, copied in result.items():
        table = metadata.tables[name]
        assert copied.verified_by == verified_by(target, table)
        if copied.verified_by == "checksum":
            assert (copied.rows, copied.checksum) == table_checksum(target, table)
        else:
            assert copied.rows == table_checksum(target, table)[0]
            assert len(copied.checksum) == 16
        assert table_checksum(source, table) == table_checksum(target, table)
        assert sum(n for t, n in seen if t == name) == copied.rows
        assert all(0 < n <= 7 for t, n in seen if t == name)
        assert [comparable(r) for r in rows(target, table)] == [
            comparable(r) for r in rows(source, table)
        ]
    # The target hands out the next id after the copied ones (PostgreSQL's sequences reset).
    with target.transaction() as conn:
        new_id = conn.execute(
            sa.insert(children).values(parent_id=1, note="new").returning(children.c.id)
            if target.facts.insert_returning
            else sa.insert(children).values(parent_id=1, note="new")
        )
        got = (
            new_id.scalar_one() if target.facts.insert_returning else new_id.inserted_primary_key[0]
        )
    # (MariaDB's counter never goes back: an earlier test may have taken 391 already.)
    assert got == 391 or (target.backend == "mysql" and got > 391)


def set_counter(db: Database, table: sa.Table, next_id: int) -> None:
    """Make ``db`` hand out ``next_id`` next for ``table`` (as after deleting rows)."""
    with db.transaction() as conn:
        if db.backend == "postgresql":
            conn.execute(
                sa.text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :n, false)"),
                {"t": table.name, "n": next_id},
            )
        elif db.backend == "mysql":
            conn.exec_driver_sql(f"ALTER TABLE {table.name} AUTO_INCREMENT = {next_id}")
        else:
            conn.execute(
                sa.text("UPDATE sqlite_sequence SET seq = :n WHERE name = :t"),
                {"t": table.name, "n": next_id - 1},
            )


def new_child(db: Database) -> int:
    with db.transaction() as conn:
        result = conn.execute(sa.insert(children).values(parent_id=1, note="new"))
        return result.inserted_primary_key[0]


def test_the_next_id_follows_the_source_counter(pair: tuple[Database, Database]) -> None:
    # Rows deleted (or archived) in the source keep their ids from being handed out again.
    source, target = pair
    fill(source)
    set_counter(source, children, 5000)
    copy_tables(source, target, metadata)
    got = new_child(target)
    assert got == 5000 or (target.backend == "mysql" and got > 5000)


def test_checksums_agree_across_backends(pair: tuple[Database, Database]) -> None:
    source, target = pair
    fill(source)
    copy_tables(source, target, [keyed, parents, children])  # sorted for us
    for table in metadata.sorted_tables:
        assert table_checksum(source, table) == table_checksum(target, table)
    # A changed value changes the checksum.
    with target.transaction() as conn:
        conn.execute(sa.update(keyed).where(keyed.c.key == "b").values(value={"x": 2}))
    assert table_checksum(source, keyed) != table_checksum(target, keyed)


def test_a_non_empty_target_is_refused_and_nothing_is_written(
    pair: tuple[Database, Database],
) -> None:
    source, target = pair
    fill(source)
    put(target, "already", None)
    with pytest.raises(TargetNotEmpty, match="cp_keyed") as caught:
        copy_tables(source, target, metadata)
    assert isinstance(caught.value, ConflictError)
    assert rows(target, parents) == [] and rows(target, children) == []
    assert [r["key"] for r in rows(target, keyed)] == ["already"]


def test_allow_nonempty_adds_the_rows_and_verifies_them(pair: tuple[Database, Database]) -> None:
    source, target = pair
    fill(source)
    put(target, "already", [1])
    result = copy_tables(source, target, [keyed], allow_nonempty=True)
    assert result["cp_keyed"].rows == 5
    assert {r["key"] for r in rows(target, keyed)} == {"already", "a ", "b", "B", "ü", "z"}
    # Counts only: the rows arrive all the same.
    copied = copy_tables(source, target, [parents, children], allow_nonempty=True, verify=False)
    assert (copied["cp_parents"].rows, copied["cp_parents"].checksum) == (40, "")
    assert table_checksum(source, children) == table_checksum(target, children)


def test_a_clash_with_existing_rows_rolls_back_everything(
    pair: tuple[Database, Database],
) -> None:
    source, target = pair
    fill(source)
    put(target, "z", None)
    with pytest.raises(ConflictError):
        copy_tables(source, target, metadata, allow_nonempty=True)
    assert rows(target, parents) == []
    assert [r["key"] for r in rows(target, keyed)] == ["z"]


def test_bad_arguments_are_refused(run_dir: Path) -> None:
    source = database("sqlite_file", run_dir, "src")
    target = database("sqlite_file", run_dir, "dst")
    fill(source)
    for kwargs in ({"batch_size": 0}, {"batch_size": True}, {"progress": 3}):
        with pytest.raises(InvalidValue):
            copy_tables(source, target, metadata, **kwargs)
    with pytest.raises(InvalidValue):
        copy_tables(source, target, "cp_parents")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        copy_tables(source, target, [parents, "cp_children"])  # type: ignore[list-item]
    assert rows(target, parents) == []


def test_a_missing_target_table_is_refused(run_dir: Path) -> None:
    source = database("sqlite_file", run_dir, "src")
    fill(source)
    empty = Database(backend_url("sqlite_file", run_dir, store="copy_empty"))
    try:
        with pytest.raises(InvalidValue, match="cp_children"):
            copy_tables(source, empty, metadata)
        assert empty.table_names() == []
    finally:
        empty.dispose()


def test_a_value_the_target_changes_fails_verification_and_keeps_nothing(run_dir: Path) -> None:
    source = database("sqlite_file", run_dir, "src")
    fill(source)
    target = Database(backend_url("sqlite_file", run_dir, store="copy_trigger"))
    try:
        target.create_all(metadata)
        with target.transaction() as conn:
            # A trigger rewrites a value as it arrives: the copy must notice.
            conn.exec_driver_sql(
                "CREATE TRIGGER IF NOT EXISTS cp_bump AFTER INSERT ON cp_keyed BEGIN "
                "UPDATE cp_keyed SET modified = 0 WHERE key = NEW.key; END"
            )
        with pytest.raises(CopyMismatch, match="cp_keyed"):
            copy_tables(source, target, metadata)
        assert all(rows(target, t) == [] for t in metadata.sorted_tables)
    finally:
        target.dispose()


def raw_json(db: Database, key: str, text: str) -> None:
    """Put JSON text in cp_keyed as another program would have written it."""
    value: Any = sa.bindparam("raw", text, type_=sa.Text)
    if db.backend == "postgresql":
        value = sa.cast(value, postgresql.JSONB)
    with db.transaction() as conn:
        conn.execute(sa.update(keyed).where(keyed.c.key == key).values(value=value))


# Spaces, keys out of order and repeated, numbers written several ways, escapes.
ODD_JSON = (
    '{ "zz" : [1, 2.50, 1e2, -0.0, 15E-1, "\\u00e9\\n", "\\u2028"], "a":{"yy":1,"x" :null},'
    ' "a": {"b": true}, "é": [ ], "bb": {} }'
)


def test_json_text_of_any_form_verifies_and_checksums_agree(
    pair: tuple[Database, Database],
) -> None:
    source, target = pair
    fill(source)
    raw_json(source, "b", ODD_JSON)
    raw_json(source, "z", ' [ 1 , "two" ] ')
    result = copy_tables(source, target, metadata)  # verified, else CopyMismatch
    if result["cp_keyed"].verified_by == "checksum":
        assert result["cp_keyed"].checksum == table_checksum(source, keyed)[1]
    for table in metadata.sorted_tables:
        assert table_checksum(source, table) == table_checksum(target, table)


@pytest.mark.parametrize("backend_name", ["sqlite_file", "postgresql", "mariadb"])
def test_the_checksum_binds_values_to_their_rows(run_dir: Path, backend_name: str) -> None:
    # Two rows swapping their JSON values keep every column's values but not the rows.
    db = database(backend_name, run_dir, "src")
    fill(db)
    before = table_checksum(db, keyed)
    with db.transaction() as conn:
        conn.execute(sa.update(keyed).where(keyed.c.key == "b").values(value=7))
        conn.execute(sa.update(keyed).where(keyed.c.key == "z").values(value={"x": 1}))
    assert table_checksum(db, keyed)[0] == before[0]
    assert table_checksum(db, keyed) != before


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        # A row silently left out.
        (
            "CREATE TRIGGER cp_skip BEFORE INSERT ON cp_children WHEN NEW.id = 50 "
            "BEGIN SELECT RAISE(IGNORE); END",
            "cp_children: 39 rows read from the source but 38 arrived",
        ),
        # A row the source does not have.
        (
            "CREATE TRIGGER cp_extra AFTER INSERT ON cp_keyed WHEN NEW.key = 'z' BEGIN "
            "INSERT INTO cp_keyed (key, value, modified) VALUES ('extra', NULL, 0); END",
            "cp_keyed: 5 rows read from the source but 6 arrived",
        ),
        # A JSON value changed, the row count intact.
        (
            "CREATE TRIGGER cp_json AFTER INSERT ON cp_keyed WHEN NEW.key = 'b' BEGIN "
            "UPDATE cp_keyed SET value = '{\"x\": 2}' WHERE key = NEW.key; END",
            "cp_keyed: the checksum",
        ),
    ],
    ids=["missing-row", "extra-row", "changed-json"],
)
def test_rows_lost_added_or_changed_fail_verification(
    run_dir: Path, trigger: str, message: str
) -> None:
    source = database("sqlite_file", run_dir, "src")
    fill(source)
    name = trigger.split()[2]
    target = Database(backend_url("sqlite_file", run_dir, store=f"copy_{name}"))
    try:
        target.create_all(metadata)
        with target.transaction() as conn:
            conn.exec_driver_sql(trigger)
        with pytest.raises(CopyMismatch, match=message):
            copy_tables(source, target, metadata)
        assert all(rows(target, t) == [] for t in metadata.sorted_tables)
    finally:
        target.dispose()


def test_a_json_value_postgresql_changes_fails_verification(run_dir: Path) -> None:
    # Into PostgreSQL the source's JSON text is put in jsonb's form by the server: a value
    # that arrives changed is still caught.
    source = database("sqlite_file", run_dir, "src")
    fill(source)
    target = database("postgresql", run_dir, "trigger")
    with target.transaction() as conn:
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION cp_touch() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.key = 'b' THEN NEW.value := '{\"x\": 1, \"y\": 0}'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER cp_touch BEFORE INSERT ON cp_keyed "
            "FOR EACH ROW EXECUTE FUNCTION cp_touch()"
        )
    try:
        with pytest.raises(CopyMismatch, match="cp_keyed: the checksum"):
            copy_tables(source, target, metadata)
        assert all(rows(target, t) == [] for t in metadata.sorted_tables)
        # Counts alone do not see it.
        copy_tables(source, target, metadata, verify=False)
        assert rows(target, keyed)[2]["value"] == {"x": 1, "y": 0}
    finally:
        with target.transaction() as conn:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS cp_touch ON cp_keyed")
            conn.exec_driver_sql("DROP FUNCTION IF EXISTS cp_touch()")


@pytest.mark.parametrize("target_backend", ["postgresql", "sqlite_file"])
def test_text_that_is_not_json_fails_cleanly(run_dir: Path, target_backend: str) -> None:
    source = database("sqlite_file", run_dir, "src")
    fill(source)
    with source.transaction() as conn:  # SQLite keeps any text in a JSON column
        conn.execute(
            sa.update(keyed)
            .where(keyed.c.key == "b")
            .values(value=sa.bindparam("raw", "{not json", type_=sa.Text))
        )
    target = database(target_backend, run_dir, "dst")
    with pytest.raises(DBLayerError):
        copy_tables(source, target, metadata)
    assert all(rows(target, t) == [] for t in metadata.sorted_tables)


def test_into_postgresql_the_server_check_needs_only_the_copied_columns(run_dir: Path) -> None:
    # A target column the copy does not name (here with a default) plays no part in the
    # check, and the scratch table is gone afterwards.
    source = database("sqlite_file", run_dir, "src")
    fill(source)
    target = database("postgresql", run_dir, "extra")
    with target.transaction() as conn:
        conn.exec_driver_sql("ALTER TABLE cp_keyed ADD COLUMN extra INTEGER NOT NULL DEFAULT 7")
    try:
        result = copy_tables(source, target, [keyed])
        assert (result["cp_keyed"].rows, result["cp_keyed"].verified_by) == (5, "server")
        assert [r["key"] for r in rows(target, keyed)] == ["B", "a ", "b", "z", "ü"]
        with target.transaction(readonly=True) as conn:
            extra = conn.exec_driver_sql("SELECT DISTINCT extra FROM cp_keyed").scalars().all()
            staged = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_tables WHERE tablename = 'dblayer_copy_stage'"
            ).scalar_one()
        assert (extra, staged) == ([7], 0)
        # Twice into the same database (allow_nonempty): each copy has its own scratch.
        with target.transaction() as conn:
            conn.execute(sa.update(keyed).values(key=keyed.c.key + "-old"))
        again = copy_tables(source, target, [keyed], allow_nonempty=True)
        assert again["cp_keyed"].checksum == result["cp_keyed"].checksum
        assert len(rows(target, keyed)) == 10
    finally:
        with target.transaction() as conn:
            conn.exec_driver_sql("ALTER TABLE cp_keyed DROP COLUMN IF EXISTS extra")

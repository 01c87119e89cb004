"""nova_archive: archiving soft-deleted nova rows into the shadow tables, against
hand-written ``INSERT ... SELECT`` + ``DELETE`` in the same batches.

100,000 soft-deleted rows (scaled): 12,500 destroyed instances, each with an info cache,
2 metadata, 3 system metadata rows and a security group association (8 rows an instance),
in nova's tables in a space of their own; soft-deleted in bulk and analyzed (untimed).
Ours is ``nova.archive_deleted_rows(admin)`` (what ``dblayer archive`` runs: live rows
owned by deleted instances retired first, every nova table walked children before
parents, rows still referred to held back, batches of 1,000, one transaction each).
Raw knows which five tables hold the rows and their order, and per batch of 1,000 runs
``INSERT INTO shadow_x SELECT <columns> FROM x WHERE deleted != 0 ORDER BY id LIMIT n``
and the ``DELETE`` of the same rows (``DELETE ... ORDER BY id LIMIT n`` on MariaDB,
``WHERE id IN (SELECT id ... LIMIT n)`` elsewhere) in one transaction. Between runs the
rows go back from the shadow tables (untimed).
"""

from __future__ import annotations

from typing import Any

from dblayer.core.types import utcnow

from .nova_common import analyze, load_instances, nova_space, tables
from .runner import Context, Result, measure, raw_connect, raw_transaction

ROWS = 100_000
ROWS_PER_INSTANCE = 8
BATCH = 1000
TARGET = 2.0
# The tables holding the deleted rows, children before parents.
ARCHIVED = (
    "security_group_instance_association",
    "instance_system_metadata",
    "instance_metadata",
    "instance_info_caches",
    "instances",
)


def run(ctx: Context) -> None:
    """Time nova's archive_deleted_rows against INSERT ... SELECT + DELETE by hand."""
    from dblayer.stores import nova

    instances = max(1, ctx.n(ROWS) // ROWS_PER_INSTANCE)
    with nova_space(ctx) as space:
        db, backend, quote = space.db, space.backend, space.sql.quote
        load_instances(db, instances)
        with db.transaction() as conn:
            for name in ARCHIVED:
                conn.exec_driver_sql(
                    f"UPDATE {name} SET deleted = id, deleted_at = {backend.mark}",
                    (space.sql.time(utcnow()),),
                )
        analyze(db, *ARCHIVED)
        count = _count(db, ARCHIVED)
        columns = {
            name: ", ".join(quote(c.name) for c in tables()[name].columns) for name in ARCHIVED
        }

        def restore() -> None:
            with db.transaction() as conn:
                for name in reversed(ARCHIVED):  # parents first
                    conn.exec_driver_sql(
                        f"INSERT INTO {name} ({columns[name]}) "
                        f"SELECT {columns[name]} FROM shadow_{name}"
                    )
                    conn.exec_driver_sql(f"DELETE FROM shadow_{name}")

        admin = nova.get_admin_context()

        def ours() -> None:
            moved = nova.archive_deleted_rows(admin)
            assert moved == count, (moved, count)

        raw_conn = raw_connect(backend)
        batches = {name: _raw_batch(backend.name, name, columns[name]) for name in ARCHIVED}

        def raw() -> None:
            moved = 0
            for name in ARCHIVED:
                copy, delete = batches[name]
                while True:
                    with raw_transaction(backend, raw_conn, immediate=True) as cur:
                        cur.execute(copy, (BATCH,))
                        cur.execute(delete, (BATCH,))
                        n = cur.rowcount
                    moved += n
                    if n < BATCH:
                        break
            assert moved == count, (moved, count)

        try:
            ours_s, raw_s = measure(ctx, ours, raw, reset=restore, reps=min(ctx.reps, 2))
        finally:
            raw_conn.close()
        restore()
        ours()
        left = _count(db, ARCHIVED)
        archived = _count(db, [f"shadow_{name}" for name in ARCHIVED])
        if left or archived != count:
            raise AssertionError(f"nova_archive: {left} rows left, {archived} of {count} archived")
        ctx.report(
            Result(
                "nova_archive",
                backend.name,
                ours_s,
                raw_s,
                count,
                "rows",
                TARGET,
                f"{instances:,} instances x {ROWS_PER_INSTANCE} rows, batches of {BATCH}",
            )
        )


def _raw_batch(backend: str, name: str, columns: str) -> tuple[str, str]:
    """The INSERT ... SELECT and DELETE of one batch of ``name``'s deleted rows."""
    mark = "?" if backend == "sqlite" else "%s"
    copy = (
        f"INSERT INTO shadow_{name} ({columns}) SELECT {columns} FROM {name} "
        f"WHERE deleted != 0 ORDER BY id LIMIT {mark}"
    )
    if backend == "mariadb":
        delete = f"DELETE FROM {name} WHERE deleted != 0 ORDER BY id LIMIT {mark}"
    else:
        delete = (
            f"DELETE FROM {name} WHERE id IN "
            f"(SELECT id FROM {name} WHERE deleted != 0 ORDER BY id LIMIT {mark})"
        )
    return copy, delete


def _count(db: Any, names: Any) -> int:
    with db.transaction(readonly=True) as conn:
        return sum(
            conn.exec_driver_sql(f"SELECT COUNT(*) FROM {name}").scalar_one() for name in names
        )

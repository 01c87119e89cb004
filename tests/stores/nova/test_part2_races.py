"""Races between 4 processes (SQLite file, PostgreSQL, MariaDB) on the metadata writers of
nova part 2: every process writes the same keys of one flavor's extra specs
(``flavor_extra_specs_update_or_create``) and of one aggregate's metadata
(``aggregate_metadata_add``, with and without ``set_delete``). No error escapes, and
each key ends with exactly one live row holding one of the values written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import live
from dblayer.stores.nova import get_admin_context, models
from tests.concurrency import run_processes

PROCESSES = 4
ROUNDS = 6
KEYS = ("k1", "k2", "k3")


@contextmanager
def _nova_on(url: str) -> Iterator[Any]:
    db = nova.configure(url, create_tables=False)
    try:
        yield db
    finally:
        db.dispose()


def _write(_db: Any, flavorid: str, aggregate_id: int, name: str) -> int:
    admin = get_admin_context()
    for i in range(ROUNDS):
        specs = {key: f"{name}-{i}" for key in KEYS}
        nova.flavor_extra_specs_update_or_create(admin, flavorid, specs)
        # Alternate replace and merge semantics; both write every key.
        nova.aggregate_metadata_add(admin, aggregate_id, specs, set_delete=bool(i % 2))
    return ROUNDS


def _live_rows(model: Any, parent_column: str, parent_id: int) -> list[Any]:
    table = model.__table__
    with nova.get_database().transaction() as conn:
        return conn.execute(
            sa.select(table.c.key, table.c.value).where(
                table.c[parent_column] == parent_id, live(table)
            )
        ).all()


def test_racing_metadata_writers_leave_one_live_row_per_key(nova_url):
    admin = get_admin_context()
    flavor = nova.flavor_create(admin, {"name": "f", "flavorid": "f", "memory_mb": 1, "vcpus": 1})
    aggregate = nova.aggregate_create(admin, {"name": "a"}, {"other": "x"})
    names = [f"p{i}" for i in range(PROCESSES)]
    done = run_processes(
        partial(_nova_on, nova_url), _write, [("f", aggregate.id, n) for n in names]
    )
    assert done == [ROUNDS] * PROCESSES
    written = {f"{n}-{i}" for n in names for i in range(ROUNDS)}
    for model, parent, parent_id in (
        (models.InstanceTypeExtraSpecs, "instance_type_id", flavor["id"]),
        (models.AggregateMetadata, "aggregate_id", aggregate.id),
    ):
        rows = _live_rows(model, parent, parent_id)
        counts = Counter(row.key for row in rows)
        assert all(counts[key] == 1 for key in KEYS), counts
        assert all(row.value in written for row in rows if row.key in KEYS)
    # The public calls agree with the rows.
    specs = nova.flavor_extra_specs_get(admin, "f")
    assert set(specs) == set(KEYS)
    metadata = nova.aggregate_metadata_get(admin, aggregate.id)
    assert set(KEYS) <= set(metadata) <= {*KEYS, "other"}

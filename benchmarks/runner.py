"""What every benchmark case shares: backends, raw driver connections, timing and reporting.

A case times the same work twice in one run, once through dblayer ("ours") and once
through the bare driver ("raw"), and reports the ratio ours/raw: 1.0 is parity,
2.0 means dblayer takes twice as long.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dblayer.core import Database, insert_many

PG_URL = os.environ.get("DBLAYER_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("DBLAYER_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
BACKENDS = ("sqlite", "postgresql", "mariadb")
STATUSES = ("PENDING", "RUNNING", "DONE", "FAILED")


@dataclass(frozen=True)
class Backend:
    """One backend under test: its name and SQLAlchemy URL (plain strings, so it pickles)."""

    name: str
    url: str

    @property
    def mark(self) -> str:
        """The driver's parameter placeholder."""
        return "?" if self.name == "sqlite" else "%s"

    def marks(self, n: int) -> str:
        """``n`` placeholders separated by commas."""
        return ", ".join([self.mark] * n)


def backend_for(name: str, tmp_dir: Path) -> Backend:
    """The Backend called ``name``; SQLite is a file in ``tmp_dir``."""
    if name == "sqlite":
        return Backend(name, f"sqlite:///{tmp_dir / 'bench.db'}")
    if name == "postgresql":
        return Backend(name, PG_URL)
    if name == "mariadb":
        return Backend(name, MYSQL_URL)
    raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")


def raw_connect(backend: Backend) -> Any:
    """A bare DB-API connection set up as dblayer sets up its own (no autocommit)."""
    url = make_url(backend.url)
    if backend.name == "sqlite":
        # isolation_level=None: we send BEGIN ourselves, as dblayer does.
        conn = sqlite3.connect(url.database, isolation_level=None, check_same_thread=False)
        for pragma in (
            "foreign_keys=ON",
            "busy_timeout=30000",
            "journal_mode=WAL",
            "synchronous=NORMAL",
        ):
            conn.execute(f"PRAGMA {pragma}")
        return conn
    if backend.name == "postgresql":
        import psycopg

        return psycopg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
    import pymysql

    args = url.translate_connect_args(username="user")
    conn = pymysql.connect(charset="utf8mb4", autocommit=False, **args)
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return conn


def raw_begin(backend: Backend, conn: Any, *, immediate: bool = False) -> None:
    """Start a transaction: explicit on SQLite, implicit (first statement) on the servers."""
    if backend.name == "sqlite":
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def raw_transaction(backend: Backend, conn: Any, *, immediate: bool = False) -> Iterator[Any]:
    """A cursor inside one transaction, committed on success."""
    raw_begin(backend, conn, immediate=immediate)
    cur = conn.cursor()
    try:
        yield cur
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    cur.close()


def empty_table(db: Database, table: sa.Table) -> None:
    """Remove every row (TRUNCATE on the servers: fast and leaves no dead rows)."""
    with db.transaction() as conn:
        if db.backend == "sqlite":
            conn.execute(sa.delete(table))
        else:
            conn.exec_driver_sql(f"TRUNCATE TABLE {table.name}")


def analyze(db: Database, table: sa.Table) -> None:
    """Refresh the planner's statistics, so that both sides run with the same, sensible plan."""
    sql = {"postgresql": "ANALYZE {}", "mysql": "ANALYZE TABLE {}"}.get(db.backend, "ANALYZE {}")
    with db.transaction() as conn:
        conn.exec_driver_sql(sql.format(table.name)).close()


def load(db: Database, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (untimed set-up) and analyze the table."""
    with db.transaction() as conn:
        insert_many(conn, table, rows)
    analyze(db, table)


@contextmanager
def tables(db: Database, metadata: sa.MetaData) -> Iterator[None]:
    """Create the case's tables (dropping leftovers of an interrupted run) and drop them after."""
    db.drop_all(metadata)
    db.create_all(metadata)
    try:
        yield
    finally:
        db.drop_all(metadata)


def sample_rows(n: int, *, payload: bool = False) -> list[dict[str, Any]]:
    """``n`` rows of (id, name, status, score[, payload]) with ids 1..n."""
    rows = []
    for i in range(1, n + 1):
        row: dict[str, Any] = {
            "id": i,
            "name": f"name-{i}",
            "status": STATUSES[i % len(STATUSES)],
            "score": (i * 7919) % 1000,
        }
        if payload:
            row["payload"] = {"n": i, "tags": ["a", "b"], "ok": True}
        rows.append(row)
    return rows


@dataclass
class Result:
    """One case on one backend: best seconds per side for ``work`` units of ``unit``."""

    case: str
    backend: str
    ours: float
    raw: float
    work: int
    unit: str
    target: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """ours / raw: 1.0 is parity, 2.0 is twice as slow."""
        return self.ours / self.raw if self.raw > 0 else float("inf")

    @property
    def verdict(self) -> str:
        """'ok' or 'MISS' against the target, '-' when the case has none."""
        if self.target is None:
            return "-"
        return "ok" if self.ratio <= self.target else "MISS"

    def line(self) -> str:
        """The one-line report printed as soon as the case has run."""
        target = f"target <={self.target:g} {self.verdict}" if self.target else "no target"
        rates = f"{self.work / self.ours:,.0f} vs {self.work / self.raw:,.0f} {self.unit}/s"
        text = (
            f"{self.case:<16} {self.backend:<10} ours {self.ours:8.4f}s  raw {self.raw:8.4f}s  "
            f"ratio {self.ratio:5.2f}  ({rates})  {target}"
        )
        return f"{text}  {self.note}" if self.note else text

    def as_dict(self) -> dict[str, Any]:
        """The result with its derived figures, for --json."""
        data = asdict(self)
        data.update(
            ratio=self.ratio,
            verdict=self.verdict,
            ours_per_s=self.work / self.ours,
            raw_per_s=self.work / self.raw,
        )
        return data


@dataclass
class Context:
    """What a case gets: the backend, its shared Database, the scale and the options."""

    backend: Backend
    db: Database
    scale: float = 1.0
    reps: int = 3
    profile: bool = False
    results: list[Result] = field(default_factory=list)

    def n(self, count: int) -> int:
        """``count`` multiplied by the scale (at least 1)."""
        return max(1, round(count * self.scale))

    def report(self, result: Result) -> None:
        """Print ``result``'s line now and keep it for the summary."""
        print(result.line(), flush=True)
        self.results.append(result)

    def raw(self) -> Any:
        """A new bare driver connection to this backend."""
        return raw_connect(self.backend)


def measure(
    ctx: Context,
    ours: Callable[[], Any],
    raw: Callable[[], Any],
    *,
    reset: Callable[[], Any] | None = None,
    warm_ours: Callable[[], Any] | None = None,
    warm_raw: Callable[[], Any] | None = None,
    reps: int | None = None,
) -> tuple[float, float]:
    """Warm each side up, then time ``reps`` alternating runs of each; best seconds per side.

    ``reset`` runs (untimed) before every run, warm-ups included; a warm-up defaults to
    the run itself.
    """
    for warm in (warm_ours or ours, warm_raw or raw):
        if reset:
            reset()
        warm()
    best = {"ours": float("inf"), "raw": float("inf")}
    for _ in range(reps or ctx.reps):
        for side, fn in (("ours", ours), ("raw", raw)):
            if reset:
                reset()
            start = time.perf_counter()
            fn()
            best[side] = min(best[side], time.perf_counter() - start)
    if ctx.profile:
        if reset:
            reset()
        print_profile(ours)
    return best["ours"], best["raw"]


def print_profile(fn: Callable[[], Any], top: int = 25) -> None:
    """Run ``fn`` under cProfile and print where its time goes."""
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def print_table(results: list[Result]) -> None:
    """The summary table of every result."""
    head = (
        "case",
        "backend",
        "work",
        "ours s",
        "raw s",
        "ratio",
        "target",
        "ours/s",
        "raw/s",
        "note",
    )
    rows = [
        (
            r.case,
            r.backend,
            f"{r.work:,} {r.unit}",
            f"{r.ours:.4f}",
            f"{r.raw:.4f}",
            f"{r.ratio:.2f}",
            f"<={r.target:g} {r.verdict}" if r.target else "-",
            f"{r.work / r.ours:,.0f}",
            f"{r.work / r.raw:,.0f}",
            r.note,
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    for i, row in enumerate([head, *rows]):
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def write_json(path: str, results: list[Result], meta: dict[str, Any]) -> None:
    """Write the results (and how they were made) to ``path``."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "results": [r.as_dict() for r in results]}, fh, indent=2)
        fh.write("\n")

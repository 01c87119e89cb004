"""Database: URLs, units of work, nesting, readers, SQLite setup, dialect facts, retries."""

from __future__ import annotations

import multiprocessing
import queue
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dblayer.core import (
    Database,
    DBConnectionError,
    DBLayerError,
    DeadlockError,
    DuplicateEntry,
    InvalidValue,
    LockTimeout,
    RetryPolicy,
    TransientError,
    url_for_path,
)
from tests.conftest import MYSQL_URL, PG_URL, SHARED_BACKENDS, backend_url
from tests.core.orm_schema import MdWidget, counters, db_metadata, orm_metadata

SECRET = "s3cr3t-pw"


@pytest.fixture
def url(backend: str, run_dir: Path) -> str:
    """The URL of the backend under test."""
    return backend_url(backend, run_dir)


def names(db: Database) -> list[str]:
    with db.transaction(readonly=True) as conn:
        return list(conn.execute(sa.select(counters.c.name).order_by(counters.c.id)).scalars())


def value_of(db: Database, row_id: int) -> int:
    with db.transaction(readonly=True) as conn:
        return conn.execute(sa.select(counters.c.value).where(counters.c.id == row_id)).scalar_one()


# -- URLs and the default database ---------------------------------------------------------


def test_no_url_gives_one_in_memory_sqlite_shared_by_every_unit():
    with Database() as db:
        assert db.url == "sqlite://"
        assert db.backend == "sqlite"
        assert db.facts.is_memory
        db.create_all(db_metadata)
        with db.transaction() as conn:
            conn.execute(sa.insert(counters), {"id": 1, "name": "from-transaction"})
        db.create_all(orm_metadata)
        with db.session() as session:
            session.add(MdWidget(name="from-session"))
        seen: list[object] = []

        def other_thread() -> None:
            seen.extend(names(db))
            with db.session(readonly=True) as s:
                seen.extend(s.scalars(sa.select(MdWidget.name)))

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert seen == ["from-transaction", "from-session"]


def test_in_memory_units_of_several_threads_take_turns():
    with Database() as db:
        db.create_all(db_metadata)
        with db.transaction() as conn:
            conn.execute(sa.insert(counters), {"id": 1, "name": "n", "value": 0})

        def bump(conn: sa.Connection) -> None:
            current = conn.execute(sa.select(counters.c.value)).scalar_one()
            conn.execute(sa.update(counters).values(value=current + 1))

        def worker() -> None:
            for _ in range(25):
                db.run(bump)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert value_of(db, 1) == 100


def test_separate_default_databases_are_separate():
    with Database() as one, Database() as two:
        one.create_all(db_metadata)
        assert "db_counters" in one.table_names()
        assert "db_counters" not in two.table_names()


def test_from_env_reads_dblayer_url(monkeypatch, tmp_path):
    path = tmp_path / "env.db"
    monkeypatch.setenv("DBLAYER_URL", f"sqlite:///{path}")
    with Database.from_env() as db:
        assert db.url == f"sqlite:///{path}"
        db.create_all(db_metadata)
        with db.transaction() as conn:
            conn.execute(sa.insert(counters), {"id": 1, "name": "on-disk"})
    with Database(f"sqlite:///{path}") as again:
        assert names(again) == ["on-disk"]
    monkeypatch.setenv("OTHER_DB", f"sqlite:///{path}")
    with Database.from_env("OTHER_DB") as other:
        assert names(other) == ["on-disk"]


def test_from_env_without_the_variable_is_in_memory(monkeypatch):
    monkeypatch.delenv("DBLAYER_URL", raising=False)
    with Database.from_env() as db:
        assert db.url == "sqlite://"
    monkeypatch.setenv("DBLAYER_URL", "")
    with Database.from_env() as db:
        assert db.facts.is_memory


@pytest.mark.parametrize(
    "bad",
    [
        "not a url",
        "nosuch://x",
        f"postgresql+nodriver://u:{SECRET}@h/db",
        123,
        f"postgresql+psycopg://u:{SECRET}@host:notaport/db",
        f"mysql+pymysql://u:{SECRET}@h:99999999999x/d",
    ],
)
def test_a_bad_url_is_invalid_value_without_the_password(bad):
    with pytest.raises(InvalidValue) as info:
        Database(bad)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


@pytest.mark.parametrize("timeout", [0, -1, "5", None, True])
def test_a_bad_lock_timeout_is_invalid_value(timeout):
    with pytest.raises(InvalidValue):
        Database(lock_timeout=timeout)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_the_password_never_shows(db, url):
    assert db.facts.server_version  # the server is up: the failure below is the credentials'
    wrong = make_url(url).set(username="nobody_x", password=SECRET)
    with Database(wrong, reader_url=wrong, retry=RetryPolicy(attempts=1)) as bad:
        assert SECRET not in repr(bad)
        assert SECRET not in bad.url
        assert SECRET not in (bad.reader_url or "")
        assert "nobody_x" in bad.url
        for readonly in (False, True):
            with pytest.raises(DBConnectionError) as info, bad.transaction(readonly=readonly):
                pass
            assert SECRET not in str(info.value)
            assert SECRET not in repr(info.value)
            assert SECRET not in str(info.value.__cause__)
        with pytest.raises(DBConnectionError) as info:
            bad.run(lambda conn: None)
        assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "server_url",
    [PG_URL, MYSQL_URL, "sqlite:////nonexistent-dir/x/y.db"],
    ids=["postgresql", "mariadb", "sqlite"],
)
def test_an_unreachable_database_is_db_connection_error(server_url):
    target = make_url(server_url)
    if target.get_backend_name() != "sqlite":
        target = target.set(port=1, password=SECRET)
    with Database(target, retry=RetryPolicy(attempts=2, base_delay=0.001)) as db:
        with pytest.raises(DBConnectionError) as info, db.transaction():
            pass
        assert isinstance(info.value, DBLayerError)
        assert isinstance(info.value, TransientError)
        assert SECRET not in str(info.value)
        with pytest.raises(DBConnectionError):
            db.run(lambda conn: None)
        with pytest.raises(DBConnectionError):
            db.facts  # noqa: B018 - the property connects
        with pytest.raises(DBConnectionError), db.session():
            pass


# -- units of work -----------------------------------------------------------------------


def test_transaction_commits_on_success(db, tables_of):
    tables_of(db, db_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(counters), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    assert names(db) == ["a", "b"]
    assert not db.in_transaction


def test_transaction_rolls_back_on_any_error(db, tables_of):
    tables_of(db, db_metadata)
    with pytest.raises(RuntimeError, match="boom"), db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 1, "name": "a"})
        assert db.in_transaction
        raise RuntimeError("boom")
    assert names(db) == []
    with pytest.raises(DuplicateEntry), db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 1, "name": "a"})
        conn.execute(sa.insert(counters), {"id": 2, "name": "a"})
    assert names(db) == []
    assert not db.in_transaction


def test_session_commits_and_objects_stay_usable(db, tables_of):
    tables_of(db, orm_metadata)
    with db.session() as session:
        widget = MdWidget(name="w", size=3)
        session.add(widget)
    assert widget.id is not None
    assert (widget.name, widget.size, widget.deleted) == ("w", 3, 0)
    with db.session(readonly=True) as session:
        loaded = session.scalars(sa.select(MdWidget)).one()
    assert (loaded.id, loaded.name, loaded.size) == (widget.id, "w", 3)
    assert loaded.created_at == widget.created_at


def test_session_rolls_back_on_any_error(db, tables_of):
    tables_of(db, orm_metadata)
    with pytest.raises(KeyError), db.session() as session:
        session.add(MdWidget(name="kept?"))
        session.flush()
        raise KeyError("x")
    with pytest.raises(DuplicateEntry), db.session() as session:
        session.add(MdWidget(name="dup"))
        session.add(MdWidget(name="dup"))
    with db.session(readonly=True) as session:
        assert session.scalars(sa.select(MdWidget)).all() == []


def test_nested_units_join_the_outer_one(db, tables_of):
    tables_of(db, db_metadata)
    tables_of(db, orm_metadata)
    with db.transaction() as outer:
        outer.execute(sa.insert(counters), {"id": 1, "name": "outer"})
        with db.transaction() as inner:
            assert inner is outer
            inner.execute(sa.insert(counters), {"id": 2, "name": "inner"})
        with db.session() as session:
            # The session runs on the same connection: it sees uncommitted Core work.
            assert session.connection() is outer
            assert session.scalar(sa.select(sa.func.count()).select_from(counters)) == 2
            session.add(MdWidget(name="pending"))
            with db.transaction() as core:
                # Core work in a session sees the session's pending objects.
                assert core.execute(sa.select(MdWidget.name)).scalars().all() == ["pending"]
            with db.session() as same:
                assert same is session
        with db.transaction(readonly=True) as reader:
            assert reader is outer
    assert names(db) == ["outer", "inner"]
    with db.session(readonly=True) as session:
        assert session.scalars(sa.select(MdWidget.name)).all() == ["pending"]


def test_an_error_in_the_outer_unit_undoes_the_inner_units(db, tables_of):
    tables_of(db, db_metadata)
    tables_of(db, orm_metadata)
    with pytest.raises(RuntimeError), db.session() as outer:
        outer.add(MdWidget(name="outer"))
        with db.transaction() as inner:
            inner.execute(sa.insert(counters), {"id": 1, "name": "inner"})
        with db.session() as inner_session:
            inner_session.add(MdWidget(name="inner"))
        db.run(lambda conn: conn.execute(sa.insert(counters), {"id": 2, "name": "run"}))
        raise RuntimeError("outer fails")
    assert names(db) == []
    with db.session(readonly=True) as session:
        assert session.scalars(sa.select(MdWidget)).all() == []


def test_errors_of_nested_units_are_translated_where_they_happen(db, tables_of):
    tables_of(db, db_metadata)
    caught: list[BaseException] = []
    with pytest.raises(RuntimeError), db.transaction() as outer:
        outer.execute(sa.insert(counters), {"id": 1, "name": "a"})
        try:
            with db.transaction() as inner:
                inner.execute(sa.insert(counters), {"id": 2, "name": "a"})
        except DuplicateEntry as e:
            caught.append(e)
        try:
            with db.session() as session:
                session.execute(sa.insert(counters), {"id": 3, "name": "a"})
        except DBLayerError as e:
            caught.append(e)
        raise RuntimeError("give up")
    assert len(caught) == 2
    assert isinstance(caught[0], DuplicateEntry)
    assert names(db) == []


def test_readonly_units_read(db, tables_of):
    tables_of(db, db_metadata)
    tables_of(db, orm_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(counters), {"id": 1, "name": "a", "value": 5})
    with db.transaction(readonly=True) as conn:
        assert conn.execute(sa.select(counters.c.value)).scalar_one() == 5
    assert (
        db.run(
            lambda conn, n: conn.execute(sa.select(counters.c.value)).scalar_one() + n,
            10,
            readonly=True,
        )
        == 15
    )
    assert db.run(lambda s: s.get(MdWidget, 1), orm=True, readonly=True) is None


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_a_readonly_unit_reads_while_another_unit_writes(db, url, tables_of):
    """A reader neither waits for a writer's locks nor sees its uncommitted rows."""
    tables_of(db, db_metadata)
    writer = db
    with Database(url, lock_timeout=0.5) as reader:
        with writer.transaction() as conn:
            conn.execute(sa.insert(counters), {"id": 1, "name": "a", "value": 1})
        with writer.transaction() as conn:
            conn.execute(sa.update(counters).values(value=2))
            conn.execute(sa.insert(counters), {"id": 2, "name": "b"})
            assert names(reader) == ["a"]
            assert value_of(reader, 1) == 1
        assert names(reader) == ["a", "b"]
        assert value_of(reader, 1) == 2


def test_reader_url_serves_readonly_units(db, url):
    with Database(url, reader_url=url) as both:
        assert both.reader_url == both.url
        with both.transaction(readonly=True) as conn:
            assert conn.engine is both.reader_engine
        with both.transaction() as conn:
            assert conn.engine is both.engine
            with both.transaction(readonly=True) as joined:
                assert joined.engine is both.engine  # joins the writer's unit
        with both.session(readonly=True) as session:
            assert session.connection().engine is both.reader_engine
        assert both.run(lambda conn: conn.engine, readonly=True) is both.reader_engine
        # The facts are the writer's even when only the reader has been used so far.
        assert both.facts == db.facts
    with Database(url) as alone:
        assert alone.reader_url is None
        with alone.transaction(readonly=True) as conn:
            assert conn.engine is alone.engine


def test_reader_url_reads_the_reader_database(tmp_path):
    writer_url, reader_url = f"sqlite:///{tmp_path}/w.db", f"sqlite:///{tmp_path}/r.db"
    for target, name in ((writer_url, "writer"), (reader_url, "replica")):
        with Database(target) as db:
            db.create_all(db_metadata)
            with db.transaction() as conn:
                conn.execute(sa.insert(counters), {"id": 1, "name": name})
    with Database(writer_url, reader_url=reader_url) as db:
        assert names(db) == ["replica"]
        with db.transaction() as conn:
            assert conn.execute(sa.select(counters.c.name)).scalar_one() == "writer"
        assert db.facts.backend == "sqlite"


# -- SQLite setup and dialect facts ------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite_memory", "sqlite_file"])
def test_sqlite_pragmas(backend, url):
    with Database(url, lock_timeout=2.5) as db:
        for readonly in (False, True):
            with db.transaction(readonly=readonly) as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                assert mode == ("memory" if backend == "sqlite_memory" else "wal")


def test_facts(db, backend):
    facts = db.facts
    assert facts is db.facts
    name = {"sqlite_memory": "sqlite", "sqlite_file": "sqlite", "mariadb": "mysql"}
    assert facts.backend == db.backend == name.get(backend, backend)
    assert facts.is_mariadb == (backend == "mariadb")
    assert facts.is_memory == (backend == "sqlite_memory")
    assert facts.supports_skip_locked == (backend in ("postgresql", "mariadb"))
    assert facts.native_json == (backend in ("postgresql", "mariadb"))
    assert facts.native_uuid == (backend == "postgresql")
    if backend == "postgresql":
        assert (facts.insert_returning, facts.update_returning, facts.delete_returning) == (
            True,
            True,
            True,
        )
    with db.transaction(readonly=True) as conn:
        if backend.startswith("sqlite"):
            version = conn.exec_driver_sql("select sqlite_version()").scalar()
        elif backend == "postgresql":
            version = conn.exec_driver_sql("show server_version").scalar()
        else:
            version = conn.exec_driver_sql("select version()").scalar()
            assert "mariadb" in version.lower()
    assert version.startswith(db.server_version())


def test_returning_and_skip_locked_facts_are_true(db, tables_of):
    """Each RETURNING / SKIP LOCKED fact matches what the server accepts."""
    tables_of(db, db_metadata)
    facts = db.facts
    statements = [
        (
            facts.insert_returning,
            sa.insert(counters).values(id=2, name="b").returning(counters.c.id),
            [2],
        ),
        (
            facts.update_returning,
            sa.update(counters).values(value=7).returning(counters.c.value),
            [7],
        ),
        (facts.delete_returning, sa.delete(counters).returning(counters.c.name), ["a"]),
    ]
    for supported, statement, expected in statements:
        with db.transaction() as conn:
            conn.execute(sa.delete(counters))
            conn.execute(sa.insert(counters), {"id": 1, "name": "a"})
        if supported:
            with db.transaction() as conn:
                assert list(conn.execute(statement).scalars()) == expected
        else:
            with pytest.raises(DBLayerError), db.transaction() as conn:
                conn.execute(statement)
    if facts.supports_skip_locked:
        with db.transaction() as conn:
            locked = sa.select(counters.c.id).with_for_update(skip_locked=True)
            assert conn.execute(locked).all() == []


# -- retries -----------------------------------------------------------------------------


@pytest.fixture
def fast_retry(db):
    """The shared Database with a quick, 4-attempt retry policy for the test."""
    saved = db.retry_policy
    db.retry_policy = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.005)
    yield db
    db.retry_policy = saved


def test_run_replays_transient_failures_and_keeps_only_the_last_attempt(fast_retry, tables_of):
    db = fast_retry
    tables_of(db, db_metadata)
    calls = []

    def work(conn: sa.Connection, name: str, *, value: int) -> str:
        calls.append(conn)
        conn.execute(sa.insert(counters), {"id": 1, "name": name, "value": value + len(calls)})
        if len(calls) < 3:
            raise (DeadlockError if len(calls) == 1 else LockTimeout)("try again")
        return "done"

    assert db.run(work, "x", value=10) == "done"
    assert len(calls) == 3
    assert value_of(db, 1) == 13  # the failed attempts' rows were rolled back


def test_run_gives_up_after_the_policy_s_attempts(fast_retry, tables_of, monkeypatch):
    db = fast_retry
    tables_of(db, db_metadata)
    calls = []
    pauses: list[float] = []
    monkeypatch.setattr("dblayer.core.database.time.sleep", pauses.append)

    def work(conn: sa.Connection) -> None:
        calls.append(1)
        conn.execute(sa.insert(counters), {"id": len(calls), "name": f"n{len(calls)}"})
        raise DBConnectionError("lost")

    with pytest.raises(DBConnectionError):
        db.run(work)
    assert len(calls) == 4
    assert names(db) == []
    # A pause before each replay, none after the last attempt, within the policy's caps.
    assert len(pauses) == 3
    assert all(0 < p <= db.retry_policy.max_delay for p in pauses)


@pytest.mark.parametrize("error", [DuplicateEntry("dup"), ValueError("bad"), InvalidValue("v")])
def test_run_does_not_replay_other_errors(fast_retry, tables_of, error):
    db = fast_retry
    tables_of(db, orm_metadata)
    calls = []

    def work(session) -> None:
        calls.append(1)
        session.add(MdWidget(name="x"))
        raise error

    with pytest.raises(type(error)):
        db.run(work, orm=True)
    assert len(calls) == 1
    with db.session(readonly=True) as session:
        assert session.scalars(sa.select(MdWidget)).all() == []


def test_run_does_not_replay_a_real_duplicate(fast_retry, tables_of):
    db = fast_retry
    tables_of(db, db_metadata)
    calls = []

    def work(conn: sa.Connection) -> None:
        calls.append(1)
        conn.execute(sa.insert(counters), [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}])

    with pytest.raises(DuplicateEntry):
        db.run(work)
    assert len(calls) == 1
    assert names(db) == []


def test_run_inside_an_open_unit_does_not_retry(fast_retry, tables_of):
    db = fast_retry
    tables_of(db, db_metadata)
    calls = []

    def work(conn: sa.Connection) -> None:
        calls.append(conn)
        raise DeadlockError("victim")

    with pytest.raises(DeadlockError), db.transaction() as outer:
        outer.execute(sa.insert(counters), {"id": 1, "name": "a"})
        db.run(work)
    assert len(calls) == 1
    assert calls[0] is outer
    assert names(db) == []


def test_retry_policy_delay_is_bounded():
    policy = RetryPolicy(attempts=5, base_delay=0.1, max_delay=0.35)
    for attempt, cap in [(1, 0.1), (2, 0.2), (3, 0.35), (4, 0.35), (9, 0.35)]:
        for _ in range(20):
            assert cap / 2 <= policy.delay(attempt) <= cap


# -- a real deadlock, two processes --------------------------------------------------------


def _deadlock_worker(url: str, first: int, second: int, barrier, results) -> None:
    """Lock row ``first`` then ``second`` in one db.run; the first attempt waits at the
    barrier between the two so that both processes hold one lock and want the other."""
    db = Database(url, retry=RetryPolicy(attempts=10, base_delay=0.05, max_delay=0.2))
    attempts = 0

    def work(conn: sa.Connection) -> None:
        nonlocal attempts
        attempts += 1
        bump = sa.update(counters).values(value=counters.c.value + 1)
        conn.execute(bump.where(counters.c.id == first))
        if attempts == 1:
            barrier.wait(timeout=60)
        conn.execute(bump.where(counters.c.id == second))

    try:
        db.run(work)
        results.put((first, attempts, None))
    except BaseException as e:  # report anything to the parent, which asserts
        results.put((first, attempts, repr(e)))
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_real_deadlock_is_retried_and_each_increment_applies_once(db, url, tables_of):
    tables_of(db, db_metadata)
    with db.transaction() as conn:
        conn.execute(sa.insert(counters), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_deadlock_worker, args=(url, 1, 2, barrier, results)),
        ctx.Process(target=_deadlock_worker, args=(url, 2, 1, barrier, results)),
    ]
    for p in procs:
        p.start()
    reports = []
    try:
        for _ in procs:
            reports.append(results.get(timeout=120))
    except queue.Empty:
        pytest.fail(f"a worker did not finish; reports so far: {reports}")
    finally:
        for p in procs:
            p.join(timeout=30)
    assert [error for _, _, error in reports] == [None, None]
    assert sum(attempts for _, attempts, _ in reports) >= 3  # one of them was the victim
    assert (value_of(db, 1), value_of(db, 2)) == (2, 2)


def test_postgresql_url_options_are_kept(run_dir):
    url = make_url(backend_url("postgresql", run_dir)).update_query_dict(
        {"options": "-c application_name=dblayer_opts"}
    )
    with Database(url, lock_timeout=2) as db, db.transaction(readonly=True) as conn:
        assert conn.exec_driver_sql("SHOW application_name").scalar() == "dblayer_opts"
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "2s"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (":memory:", "sqlite://"),
        ("", "sqlite://"),
        ("sqlite://", "sqlite://"),
        ("/tmp/x/app.db", "sqlite:////tmp/x/app.db"),
        ("app.db", "sqlite:///app.db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ],
)
def test_url_for_path(given, expected):
    url = url_for_path(given)
    rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    assert rendered == expected


def test_url_for_path_refuses_other_things():
    with pytest.raises(InvalidValue):
        url_for_path(42)  # type: ignore[arg-type]


def test_mariadb_url_is_kept_and_the_connection_is_utf8mb4(run_dir):
    url = backend_url("mariadb", run_dir)
    with Database(url) as db:
        assert db.engine.url.render_as_string(hide_password=False) == url
        with db.transaction(readonly=True) as conn:
            charset = conn.exec_driver_sql("SELECT @@character_set_connection").scalar()
        assert charset == "utf8mb4"


def test_current_session_is_the_open_units_session(db, tables_of):
    tables_of(db, orm_metadata)
    with pytest.raises(DBLayerError, match="no unit of work"):
        db.current_session()
    with db.transaction() as conn:
        session = db.current_session()
        assert session.connection() is conn
        session.add(MdWidget(name="current"))
        with db.session() as same:
            assert same is session
        assert db.current_session() is session
    with pytest.raises(DBLayerError):
        db.current_session()
    with db.session(readonly=True) as session:
        assert session.scalars(sa.select(MdWidget.name)).all() == ["current"]


def test_current_connection_flushes_the_units_session(db, tables_of):
    tables_of(db, orm_metadata)
    with pytest.raises(DBLayerError, match="no unit of work"):
        db.current_connection()
    with db.transaction() as conn:
        assert db.current_connection() is conn
        db.current_session().add(MdWidget(name="pending"))
        seen = db.current_connection().execute(sa.select(MdWidget.name)).scalars().all()
        assert seen == ["pending"]


# -- connections between units of work --------------------------------------------------------


def test_units_leave_no_connection_in_a_transaction_and_dispose_returns_them_all(
    db, url, tables_of
):
    tables_of(db, db_metadata)
    with Database(url) as own:
        if own.facts.is_memory:  # a database of its own: it needs the tables too
            own.create_all(db_metadata)
        with own.transaction() as conn:
            conn.execute(sa.insert(counters), {"id": 1, "name": "a"})
        with pytest.raises(ZeroDivisionError), own.transaction() as conn:
            conn.execute(sa.insert(counters), {"id": 2, "name": "b"})
            raise ZeroDivisionError
        for readonly in (False, True):
            with own.transaction(readonly=readonly) as conn:
                assert conn.in_transaction()
                assert names(own) == ["a"]
        if isinstance(own.engine.pool, sa.pool.QueuePool):
            own.dispose()
            assert own.engine.pool.checkedout() == 0
            assert names(own) == ["a"]


def test_options_set_on_a_units_connection_do_not_reach_the_next_unit(db, tables_of):
    tables_of(db, db_metadata)
    with db.transaction() as conn:
        default = dict(conn.get_execution_options())
        conn.execution_options(stream_results=True, logging_token="mine")
    for _ in range(3):
        with db.transaction() as conn:
            assert dict(conn.get_execution_options()) == default


def test_connections_in_use_by_threads_are_never_shared(tmp_path):
    with Database(f"sqlite:///{tmp_path / 'threads.db'}") as db:
        db.create_all(db_metadata)
        seen: list[int] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def work(n: int) -> None:
            try:
                for i in range(20):
                    with db.transaction(readonly=True) as conn:
                        seen.append(id(conn.connection.dbapi_connection))
                        if i == 0:
                            barrier.wait(timeout=10)  # all four hold a connection at once
                        conn.execute(sa.select(counters.c.id)).all()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(set(seen[:4])) == 4


def test_a_forked_child_does_not_reuse_the_parents_idle_connections(tmp_path):
    # dblayer's servers are Linux: fork is always there (and a missing one fails here).
    with Database(f"sqlite:///{tmp_path / 'fork.db'}") as db:
        db.create_all(db_metadata)
        with db.transaction() as conn:
            conn.execute(sa.insert(counters), {"id": 1, "name": "parent"})
            parent_conn = id(conn.connection.dbapi_connection)
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()

        def child() -> None:
            with db.transaction() as conn:
                conn.execute(sa.insert(counters), {"id": 2, "name": "child"})
                out.put(id(conn.connection.dbapi_connection) != parent_conn)

        proc = ctx.Process(target=child)
        proc.start()
        proc.join(30)
        assert proc.exitcode == 0
        assert out.get(timeout=5) is True
        assert names(db) == ["parent", "child"]

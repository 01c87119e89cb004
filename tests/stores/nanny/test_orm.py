"""node_nanny.orm on every backend: names, columns, relationships, validation, the whitelist rule."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

import dblayer.stores.nanny as nanny_pkg
from dblayer.core import DBConnectionError, InvalidValue
from dblayer.stores.nanny import (
    NAME_LENGTH,
    Base,
    DBConnection,
    Notification,
    User,
    Whitelist,
    is_whitelisted,
    whitelisted_users,
)
from tests.conftest import backend_url

NOW = dt.datetime(2024, 5, 17, 12, 30, 15, 123456)
HOUR = dt.timedelta(hours=1)


def notification(**changes: object) -> Notification:
    values: dict[str, object] = {
        "time": NOW,
        "memory": 4096,
        "percentage": 87,
        "node": "login0.crc.pitt.edu",
        "limit": 70,
    }
    values.update(changes)
    return Notification(**values)


def window(node: str | None, start: dt.datetime, end: dt.datetime, **kw: object) -> Whitelist:
    return Whitelist(node=node, start_time=start, end_time=end, **kw)


def count(table: str) -> int:
    with DBConnection.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(Base.metadata.tables[table]))


# -- names and columns ----------------------------------------------------------------------


def test_every_documented_name_is_importable_from_the_package():
    for name in ("Base", "User", "Notification", "Whitelist", "DBConnection"):
        assert hasattr(nanny_pkg, name)
    assert User.__tablename__ == "user"
    assert Notification.__tablename__ == "notification"
    assert Whitelist.__tablename__ == "whitelist"
    for cls, attrs in {
        User: ["id", "name", "notifications", "whitelists"],
        Notification: ["id", "user_id", "time", "memory", "percentage", "node", "limit", "user"],
        Whitelist: ["id", "user_id", "node", "start_time", "end_time", "global_whitelist", "user"],
    }.items():
        for attr in attrs:
            assert hasattr(cls, attr), (cls, attr)
    assert DBConnection.metadata is Base.metadata


def test_column_flags_are_read_off_the_classes():
    assert Whitelist.start_time.nullable is False
    assert Whitelist.end_time.nullable is False
    assert Whitelist.node.nullable is True
    assert Whitelist.global_whitelist.nullable is False
    assert Whitelist.user_id.nullable is True
    assert Notification.user_id.nullable is True
    for column in ("time", "memory", "percentage", "node", "limit"):
        assert getattr(Notification, column).nullable is False, column
    assert User.name.nullable is False
    assert User.name.unique is True
    assert User.id.primary_key and Notification.id.primary_key and Whitelist.id.primary_key
    assert Whitelist.global_whitelist.default.arg is False
    for table in ("notification", "whitelist"):
        (fk,) = Base.metadata.tables[table].c.user_id.foreign_keys
        assert fk.target_fullname == "user.id"
    # Strings have lengths: MariaDB refuses VARCHAR without one.
    for column in (User.name, Notification.node, Whitelist.node):
        assert column.type.length == NAME_LENGTH


# -- DBConnection ---------------------------------------------------------------------------


def test_before_configure_every_attribute_but_metadata_is_none():
    code = (
        "from dblayer.stores.nanny import Base, DBConnection as C\n"
        "assert (C.url, C.engine, C.connection, C.session) == (None,) * 4\n"
        "assert C.metadata is Base.metadata\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_configure_sets_every_class_attribute(nanny, backend, run_dir):
    url = backend_url(backend, run_dir)
    assert DBConnection.url == url
    assert DBConnection.engine.url.render_as_string() == url
    assert DBConnection.connection.engine is DBConnection.engine
    assert isinstance(DBConnection.session, sessionmaker)
    assert DBConnection.session.kw["bind"] is DBConnection.engine
    assert DBConnection.metadata is Base.metadata
    assert {"user", "notification", "whitelist"} <= set(
        sa.inspect(DBConnection.engine).get_table_names()
    )
    with DBConnection.session() as session:
        assert isinstance(session, Session)
        session.add(User(name="alice"))
        session.commit()
    assert count("user") == 1


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_database_is_one_database_for_session_engine_and_connection(url):
    DBConnection.configure(url)
    assert DBConnection.url == url
    assert DBConnection.engine.url.render_as_string() == url
    with DBConnection.session() as session:
        session.add(User(name="bob", notifications=[notification()]))
        session.commit()
    with DBConnection.engine.connect() as conn:
        assert conn.scalars(sa.select(User.name)).all() == ["bob"]
    assert DBConnection.connection.scalar(sa.select(sa.func.count(Notification.id))) == 1
    DBConnection.connection.rollback()


def test_configure_again_replaces_every_attribute_and_closes_the_old_connection(tmp_path):
    first = f"sqlite:///{tmp_path / 'first.db'}"
    second = f"sqlite:///{tmp_path / 'second.db'}"
    DBConnection.configure(first)
    old_engine, old_connection, old_session = (
        DBConnection.engine,
        DBConnection.connection,
        DBConnection.session,
    )
    with DBConnection.session() as session:
        session.add(User(name="carol"))
        session.commit()
    DBConnection.configure(second)
    assert DBConnection.url == second
    assert DBConnection.engine is not old_engine
    assert DBConnection.connection is not old_connection and old_connection.closed
    assert DBConnection.session is not old_session
    with DBConnection.session() as session:
        assert session.scalars(sa.select(User)).all() == []  # a new, empty database
    DBConnection.configure(first)
    with DBConnection.session() as session:
        assert session.scalars(sa.select(User.name)).all() == ["carol"]


def unreachable_urls(tmp_path):
    return {
        "sqlite_file": f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}",
        "postgresql": "postgresql+psycopg://postgres@127.0.0.1:1/test",
        "mariadb": "mysql+pymysql://root@127.0.0.1:1/test",
    }


@pytest.mark.parametrize("kind", ["sqlite_file", "postgresql", "mariadb"])
def test_configure_with_an_unreachable_database_raises_and_keeps_the_configuration(tmp_path, kind):
    good = f"sqlite:///{tmp_path / 'good.db'}"
    DBConnection.configure(good)
    engine = DBConnection.engine
    with pytest.raises(DBConnectionError):
        DBConnection.configure(unreachable_urls(tmp_path)[kind])
    assert DBConnection.url == good and DBConnection.engine is engine
    assert not DBConnection.connection.closed


@pytest.mark.parametrize(
    "url", ["", "not a url", "nosuchdb://x/y", "postgresql+nosuchdriver://h/db", None, 42]
)
def test_configure_with_a_bad_url_raises_invalid_value_and_keeps_the_configuration(tmp_path, url):
    good = f"sqlite:///{tmp_path / 'good.db'}"
    DBConnection.configure(good)
    with pytest.raises(InvalidValue):
        DBConnection.configure(url)
    assert DBConnection.url == good


def test_a_bad_url_error_does_not_show_its_password():
    with pytest.raises(InvalidValue) as info:
        DBConnection.configure("postgresql+nosuchdriver://u:s3cret@h/db")
    assert "s3cret" not in str(info.value)


# -- rows, relationships, reserved names ----------------------------------------------------


def test_rows_round_trip_with_unicode_and_microseconds(nanny):
    with nanny.session() as session:
        user = User(name="zoë_日本")
        user.notifications.append(notification(node="nœud-1"))
        user.whitelists.append(window(None, NOW, NOW + HOUR, global_whitelist=True))
        user.whitelists.append(window("gpu-n1", NOW, NOW + HOUR))
        session.add(user)
        session.commit()
        user_id = user.id
    with nanny.session() as session:
        user = session.get(User, user_id)
        assert user.name == "zoë_日本"
        (note,) = user.notifications
        assert (note.time, note.memory, note.percentage, note.node, note.limit) == (
            NOW,
            4096,
            87,
            "nœud-1",
            70,
        )
        assert note.user is user
        entries = sorted(user.whitelists, key=lambda w: w.node or "")
        assert [(w.node, w.global_whitelist) for w in entries] == [
            (None, True),
            ("gpu-n1", False),  # the default
        ]
        assert entries[0].start_time == NOW and entries[0].end_time == NOW + HOUR


def test_reserved_names_user_and_limit_work_in_orm_and_quoted_sql(nanny):
    with nanny.session() as session:
        session.add(User(name="dave", notifications=[notification(limit=90)]))
        session.commit()
        found = session.scalars(sa.select(Notification).where(Notification.limit == 90)).one()
        assert found.user.name == "dave"
    quote = nanny.engine.dialect.identifier_preparer.quote_identifier
    sql = f"SELECT u.name, n.{quote('limit')} FROM {quote('user')} u JOIN notification n ON n.user_id = u.id"
    with nanny.engine.connect() as conn:
        assert conn.exec_driver_sql(sql).all() == [("dave", 90)]


def test_user_names_are_unique_and_compared_exactly(nanny):
    with nanny.session() as session:
        session.add_all([User(name="erin"), User(name="Erin")])  # distinct, also on MariaDB
        session.commit()
    with nanny.session() as session:
        session.add(User(name="erin"))
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()
    assert count("user") == 2


def test_names_of_the_longest_allowed_length_are_stored(nanny):
    name, node = "u" * NAME_LENGTH, "n" * NAME_LENGTH
    with nanny.session() as session:
        session.add(User(name=name, notifications=[notification(node=node)]))
        session.commit()
    with nanny.session() as session:
        assert session.scalars(sa.select(Notification.node)).one() == node
        assert session.scalars(sa.select(User.name)).one() == name


def test_deleting_a_user_deletes_its_notifications_and_whitelists(nanny):
    with nanny.session() as session:
        keep = User(name="keep", notifications=[notification()])
        keep.whitelists.append(window("n1", NOW, NOW + HOUR))
        gone = User(name="gone", notifications=[notification(), notification()])
        gone.whitelists.append(window(None, NOW, NOW + HOUR, global_whitelist=True))
        session.add_all([keep, gone])
        session.commit()
        keep_id = keep.id
        session.delete(gone)
        session.commit()
    assert (count("user"), count("notification"), count("whitelist")) == (1, 1, 1)
    with nanny.session() as session:
        assert session.scalars(sa.select(Notification.user_id)).all() == [keep_id]
        assert session.scalars(sa.select(Whitelist.user_id)).all() == [keep_id]


def test_detaching_a_child_only_clears_its_user_id(nanny):
    with nanny.session() as session:
        user = User(name="frank", notifications=[notification()])
        user.whitelists.append(window("n1", NOW, NOW + HOUR))
        session.add(user)
        session.commit()
        user.notifications.remove(user.notifications[0])
        user.whitelists.clear()
        session.commit()
    assert (count("notification"), count("whitelist")) == (1, 1)
    with nanny.session() as session:
        assert session.scalars(sa.select(Notification.user_id)).all() == [None]
        assert session.scalars(sa.select(Whitelist.user_id)).all() == [None]


def test_a_notification_for_a_missing_user_is_refused(nanny):
    with nanny.session() as session:
        session.add(notification(user_id=999_999))
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()
    assert count("notification") == 0


# -- validation -----------------------------------------------------------------------------

BAD_INPUT = [
    (User, "name", ""),
    (User, "name", "two words"),
    (User, "name", "tab\there"),
    (User, "name", "u" * (NAME_LENGTH + 1)),
    (User, "name", None),
    (User, "name", 7),
    (Notification, "percentage", -1),
    (Notification, "percentage", 101),
    (Notification, "percentage", 45.5),
    (Notification, "memory", -1),
    (Notification, "memory", True),
    (Notification, "memory", None),
    (Notification, "limit", -5),
    (Notification, "limit", "70"),
    (Notification, "node", ""),
    (Notification, "node", "login 0"),
    (Notification, "node", "a/b"),
    (Notification, "node", "c:d"),
    (Notification, "node", 'q"uote'),
    (Notification, "time", "2024-05-17"),
    (Whitelist, "node", "has space"),
    (Whitelist, "start_time", None),
    (Whitelist, "global_whitelist", "yes"),
]


@pytest.mark.parametrize(("cls", "key", "value"), BAD_INPUT)
def test_bad_values_raise_a_value_error_naming_the_field(cls, key, value):
    with pytest.raises(ValueError, match=key) as info:
        cls(**{key: value})
    assert isinstance(info.value, InvalidValue)


def test_boundary_values_are_accepted():
    note = notification(percentage=0, memory=0, limit=0)
    assert (note.percentage, note.memory, note.limit) == (0, 0, 0)
    assert notification(percentage=100).percentage == 100
    assert Whitelist(node=None).node is None


def test_a_rejected_value_changes_nothing(nanny):
    with nanny.session() as session:
        user = User(name="gina", notifications=[notification(percentage=50)])
        session.add(user)
        session.commit()
        with pytest.raises(ValueError):
            user.notifications[0].percentage = 150
        with pytest.raises(ValueError):
            user.name = "gina smith"
        session.commit()
    with nanny.session() as session:
        assert session.execute(sa.select(User.name, Notification.percentage).join(User)).all() == [
            ("gina", 50)
        ]


# -- the whitelist rule ---------------------------------------------------------------------


def seed_windows(session: Session) -> None:
    session.add_all(
        [
            User(name="on_node", whitelists=[window("n1", NOW - HOUR, NOW + HOUR)]),
            User(
                name="global",
                whitelists=[window(None, NOW - HOUR, NOW + HOUR, global_whitelist=True)],
            ),
            User(name="other_node", whitelists=[window("n2", NOW - HOUR, NOW + HOUR)]),
            User(name="expired", whitelists=[window("n1", NOW - 2 * HOUR, NOW)]),
            User(
                name="future",
                whitelists=[window(None, NOW + HOUR, NOW + 2 * HOUR, global_whitelist=True)],
            ),
            User(name="no_window"),
        ]
    )
    session.commit()


def test_whitelisted_users_on_a_node_are_those_with_an_open_window_for_it_or_global(nanny):
    with nanny.session() as session:
        seed_windows(session)
        assert whitelisted_users(session, "n1", NOW) == ["global", "on_node"]
        assert whitelisted_users(session, "n2", NOW) == ["global", "other_node"]
        assert whitelisted_users(session, "n3", NOW) == ["global"]
        assert whitelisted_users(session, "n1", NOW - 3 * HOUR) == []
        assert whitelisted_users(session, "n1", NOW + HOUR + dt.timedelta(minutes=1)) == ["future"]
        assert is_whitelisted(session, "on_node", "n1", NOW)
        assert not is_whitelisted(session, "on_node", "n2", NOW)
        assert is_whitelisted(session, "global", "anywhere", NOW)
        assert not is_whitelisted(session, "expired", "n1", NOW)  # end_time is exclusive
        assert is_whitelisted(session, "expired", "n1", NOW - HOUR)
        assert not is_whitelisted(session, "no_window", "n1", NOW)
        assert not is_whitelisted(session, "nobody", "n1", NOW)


def test_the_whitelist_rule_defaults_to_the_current_time(nanny):
    now = dt.datetime.now()
    with nanny.session() as session:
        session.add(User(name="hal", whitelists=[window("n1", now - HOUR, now + HOUR)]))
        session.add(User(name="ida", whitelists=[window("n1", now - 2 * HOUR, now - HOUR)]))
        session.commit()
        assert whitelisted_users(session, "n1") == ["hal"]
        assert is_whitelisted(session, "hal", "n1")
        rows = session.scalars(sa.select(Whitelist).where(Whitelist.active_on("n1"))).all()
        assert [w.user.name for w in rows] == ["hal"]


def test_the_whitelist_rule_rejects_bad_arguments(nanny):
    with nanny.session() as session:
        with pytest.raises(ValueError):
            whitelisted_users(session, "bad node", NOW)
        with pytest.raises(ValueError):
            is_whitelisted(session, "bad name", "n1", NOW)
        with pytest.raises(ValueError):
            whitelisted_users(session, "n1", "today")

"""Object relational mapper for dealing with the application database (``node_nanny.orm``).

Three tables: user names, the history of memory notifications, and whitelist
windows that exempt a user on one node or on every node. ``DBConnection`` is
the process-wide connection the whole application shares (by design, as the
original documents it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, MetaData, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
    validates,
)
from sqlalchemy.pool import StaticPool

from dblayer.core import InvalidValue, UTCDateTime, new_metadata, translate
from dblayer.core.errors import mask_secret

# Longest user or node name: a Linux user name has at most 32 characters and a host name
# 253; MariaDB needs a length for VARCHAR, and 255 fits a unique utf8mb4 index.
NAME_LENGTH = 255

# What a host name may not contain (the maintainers' validator on the testing_pass branch).
_BAD_HOSTNAME = re.compile(r'[\s\\/:*?"“”<>|]')


class Base(DeclarativeBase):
    """Declarative base of node_nanny's tables."""

    metadata = new_metadata()


def _check_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"user name must be a non-empty string, got {value!r}")
    if any(ch.isspace() for ch in value):
        raise InvalidValue(f"user name must not contain whitespace, got {value!r}")
    if len(value) > NAME_LENGTH:
        raise InvalidValue(f"user name is longer than {NAME_LENGTH} characters")
    return value


def _check_node(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"node must be a non-empty host name, got {value!r}")
    if _BAD_HOSTNAME.search(value):
        raise InvalidValue(
            f'node {value!r} is not a host name (no whitespace and none of \\ / : * ? " < > |)'
        )
    if len(value) > NAME_LENGTH:
        raise InvalidValue(f"node is longer than {NAME_LENGTH} characters")
    return value


def _check_int(key: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{key} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidValue(f"{key} must be {allowed}, got {value!r}")
    return value


def _check_time(key: str, value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise InvalidValue(f"{key} must be a datetime, got {value!r}")
    return value


class User(Base):
    """User account data

    Table Fields:
      - id      (Integer): Primary key for this table
      - username (String): Unique account name (the attribute is ``name``)

    Relationships:
      - notifications (Notifications): One to many
      - whitelists        (Whitelist): One to many
    """

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), unique=True, nullable=False)

    # Deleting a user deletes its rows; taking a row out of the list only detaches it.
    notifications: Mapped[list[Notification]] = relationship(
        back_populates="user", cascade="all, delete"
    )
    whitelists: Mapped[list[Whitelist]] = relationship(back_populates="user", cascade="all, delete")

    @validates("name")
    def _validate_name(self, _key: str, value: Any) -> str:
        return _check_name(value)

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, name={self.name!r})"


class Notification(Base):
    """Record of user notification history

    Table Fields:
      - id         (Integer): Primary key for this table
      - time      (Datetime): Date and time of the notification
      - memory     (Integer): Total memory usage
      - percentage (Integer): Memory usage as a percentage of system memory
      - user_id    (Integer): Foreign key for the ``User.id`` table
      - node        (String): The name of the node
      - limit      (Integer): The memory limit that triggered the notification

    Relationships:
      - user (User): Many to one
    """

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), nullable=True
    )
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    memory: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    percentage: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    node: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), nullable=False)
    limit: Mapped[int] = mapped_column(sa.Integer, nullable=False)

    user: Mapped[User | None] = relationship(back_populates="notifications")

    @validates("memory", "limit")
    def _validate_amount(self, key: str, value: Any) -> int:
        return _check_int(key, value, 0)

    @validates("percentage")
    def _validate_percentage(self, key: str, value: Any) -> int:
        return _check_int(key, value, 0, 100)

    @validates("node")
    def _validate_node(self, _key: str, value: Any) -> str:
        return _check_node(value)

    @validates("time")
    def _validate_time(self, key: str, value: Any) -> dt.datetime:
        return _check_time(key, value)


class Whitelist(Base):
    """Whitelist of users whose jobs should not be killed

    Table Fields:
      - id               (Integer): Primary key for this table
      - node              (String): The name of the node (NULL for a global entry)
      - start_time      (Datetime): When the whitelist entry starts
      - end_time        (Datetime): When the whitelist entry expires
      - global_whitelist (Boolean): Whether the entry holds on every node
      - user_id          (Integer): Foreign key for the ``User.id`` table

    Relationships:
      - user (User): Many to one
    """

    __tablename__ = "whitelist"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), nullable=True
    )
    node: Mapped[str | None] = mapped_column(sa.String(NAME_LENGTH), nullable=True)
    start_time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    end_time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    global_whitelist: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)

    user: Mapped[User | None] = relationship(back_populates="whitelists")

    @validates("node")
    def _validate_node(self, _key: str, value: Any) -> str | None:
        return None if value is None else _check_node(value)

    @validates("start_time", "end_time")
    def _validate_time(self, key: str, value: Any) -> dt.datetime:
        return _check_time(key, value)

    @validates("global_whitelist")
    def _validate_global(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidValue(f"{key} must be True or False, got {value!r}")
        return value

    @classmethod
    def active_on(cls, node: str, now: dt.datetime | None = None) -> sa.ColumnElement[bool]:
        """The rule the scan loop applies: the window is open at ``now`` and is for ``node`` or global.

        ``now`` defaults to ``datetime.now()``, the application's (naive, local) clock.
        """
        node = _check_node(node)
        now = dt.datetime.now() if now is None else _check_time("now", now)
        return sa.and_(
            cls.start_time <= now,
            cls.end_time > now,
            sa.or_(cls.node == node, cls.global_whitelist.is_(True)),
        )


def whitelisted_users(session: Session, node: str, now: dt.datetime | None = None) -> list[str]:
    """Names of the users exempt on ``node`` at ``now`` (default: now), sorted."""
    stmt = (
        sa.select(User.name)
        .join(Whitelist, Whitelist.user_id == User.id)
        .where(Whitelist.active_on(node, now))
        .distinct()
        .order_by(User.name)
    )
    return list(session.scalars(stmt))


def is_whitelisted(session: Session, name: str, node: str, now: dt.datetime | None = None) -> bool:
    """Whether the user ``name`` is exempt on ``node`` at ``now`` (default: now)."""
    stmt = (
        sa.select(Whitelist.id)
        .join(User, Whitelist.user_id == User.id)
        .where(User.name == _check_name(name), Whitelist.active_on(node, now))
        .limit(1)
    )
    return session.scalar(stmt) is not None


class _GivenURL(sa.URL):
    """A parsed URL that renders as the very string it was parsed from.

    SQLAlchemy 2.1 re-quotes some URLs (``sqlite:///:memory:`` renders as
    ``sqlite:///%3Amemory%3A``); node_nanny's users compare the engine's URL with
    the one they configured. A password is still masked unless asked for.
    """

    def render_as_string(self, hide_password: bool = True) -> str:
        """The URL as configured (password masked when ``hide_password``)."""
        given = self.__dict__.get("given")
        if given is None or (hide_password and self.password is not None):
            return super().render_as_string(hide_password)
        return given


def _given_url(url: str, parsed: sa.URL) -> sa.URL:
    verbatim = _GivenURL(*parsed)
    # Copies made by .set() / .update_query_dict() lose it and render as SQLAlchemy does.
    verbatim.__dict__["given"] = url
    return verbatim


def _is_memory_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _engine_kwargs(url: sa.URL) -> dict[str, Any]:
    backend = url.get_backend_name()
    if backend == "sqlite":
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if _is_memory_sqlite(url):
            # One in-memory database that engine, connection and every session all see.
            kwargs["poolclass"] = StaticPool
        return kwargs
    if backend in ("mysql", "mariadb") and "charset" not in url.query:
        # Full Unicode without touching the URL (DBConnection.url stays as given).
        return {"connect_args": {"charset": "utf8mb4"}}
    return {}


def _enable_sqlite_foreign_keys(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Foreign keys hold on SQLite as they do on the servers.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _open(url: str) -> tuple[Engine, Connection]:
    """An engine for ``url`` with node_nanny's tables created, and one open connection."""
    if not isinstance(url, str) or not url:
        raise InvalidValue(f"url must be a database URL string, got {url!r}")
    try:
        parsed = sa.make_url(url)
        engine = sa.create_engine(url, **_engine_kwargs(parsed))
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError, ValueError) as e:
        message = mask_secret(str(e), _password(url))
        raise InvalidValue(f"not a usable database URL: {message}") from None
    engine.url = _given_url(url, parsed)
    if engine.dialect.name == "sqlite":
        _enable_sqlite_foreign_keys(engine)
    try:
        with engine.begin() as conn:
            Base.metadata.create_all(conn)
        connection = engine.connect()
    except sa_exc.SQLAlchemyError as e:
        engine.dispose()
        raise translate(e, secret=engine.url.password) from e
    return engine, connection


def _password(url: str) -> str | None:
    try:
        return sa.make_url(url).password  # type: ignore[return-value]
    except Exception:  # a URL too broken to parse: mask what looks like its password
        m = re.match(r"^[^:/]*://[^:/@]*:([^/]*)@", url)
        return m.group(1) if m else None


class DBConnection:
    """A configurable connection to the application database

    Process-wide: every attribute is class-level and ``configure`` replaces them all.
    """

    connection: ClassVar[Connection | None] = None
    engine: ClassVar[Engine | None] = None
    url: ClassVar[str | None] = None
    metadata: ClassVar[MetaData] = Base.metadata
    session: ClassVar[Callable[[], Session] | None] = None

    @classmethod
    def configure(cls, url: str) -> None:
        """Update the connection information for the underlying database

        Changes made here will affect the entire running application. Missing tables
        are created. A bad URL raises InvalidValue and an unreachable database
        DBConnectionError; either way the previous configuration stays in place.

        :param url: URL information for the application database
        """
        engine, connection = _open(url)
        old_connection, old_engine = cls.connection, cls.engine
        cls.url = url
        cls.engine = engine
        cls.connection = connection
        cls.metadata = Base.metadata
        cls.session = sessionmaker(bind=engine)
        # The replaced configuration would otherwise hold its connections open for good.
        if old_connection is not None:
            old_connection.close()
        if old_engine is not None:
            old_engine.dispose()

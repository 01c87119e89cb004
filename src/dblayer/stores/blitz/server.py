"""DatabaseServer (blitz.data.database): the logger's live sessions on Redis.

Keys, under an optional prefix (default none, the original's layout):

- ``session_id``: INCR counter, the last session number ever started (never reused)
- ``sessions``: list of session numbers, newest first
- ``session_N_start`` / ``session_N_end``: blitz timestamps (ms)
- ``session_N``: list of raw messages, newest first

Replies are decoded to ``str``. Redis failures raise dblayer's DBConnectionError
(server unreachable) or DatabaseError (anything else).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import redis as _redis

from dblayer.core import DatabaseError, DBConnectionError, InvalidValue

from .models import blitz_timestamp

logger = logging.getLogger(__name__)

DEFAULT_URL = "redis://localhost:6379/0"
_CHUNK = 10_000  # messages per LPUSH in queue_many
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@dataclass(frozen=True)
class ServerSession:
    """One session as the server holds it: number, times, and raw messages oldest first."""

    ref_id: int
    start: int | None
    end: int | None
    messages: list[str]

    def row(self) -> dict[str, Any]:
        """The client's Session columns for this session."""
        return {
            "ref_id": self.ref_id,
            "timeStarted": self.start,
            "timeStopped": self.end,
            "numberOfReadings": len(self.messages),
            "available": bool(self.messages),
        }


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(_text(value))


@contextmanager
def _translated() -> Iterator[None]:
    """Redis errors as dblayer's own."""
    try:
        yield
    except _redis.RedisError as e:
        _raise_translated(e)


def _raise_translated(e: _redis.RedisError) -> NoReturn:
    if isinstance(e, (_redis.ConnectionError, _redis.TimeoutError)):
        raise DBConnectionError(f"redis unreachable: {e}") from e
    raise DatabaseError(f"redis error: {e}") from e


def _message(message: Any) -> Any:
    if isinstance(message, bool) or not isinstance(message, (str, bytes, int, float)):
        raise InvalidValue(f"a message must be text, bytes or a number, got {message!r}")
    return message


class DatabaseServer:
    """The logger's Redis store: sessions and the raw messages logged in them."""

    def __init__(self, connection: str | _redis.Redis | None = None, prefix: str = "") -> None:
        """Use Redis at ``connection`` (a URL, default redis://localhost:6379/0, or a client);
        every key is ``prefix`` + the original's key name.

        The current session is the last one started if it has not ended (the original
        assumed a session was running whenever the counter existed).
        """
        if not isinstance(prefix, str):
            raise InvalidValue(f"prefix must be a string, got {prefix!r}")
        if connection is None:
            connection = DEFAULT_URL
        if isinstance(connection, str):
            try:
                connection = _redis.Redis.from_url(connection, decode_responses=True)
            except ValueError as e:
                raise InvalidValue(f"not a Redis URL: {e}") from None
        elif not isinstance(connection, _redis.Redis):
            raise InvalidValue(f"connection must be a Redis URL or client, got {connection!r}")
        self.redis = connection
        self.prefix = prefix
        self._counter = prefix + "session_id"
        self._sessions = prefix + "sessions"
        self._seen: dict[int, int] = {}
        self.session_id = -1
        self._data_key = ""
        with _translated():
            last = _int_or_none(self.redis.get(self._counter))
            running = (
                last is not None
                and self.redis.exists(self._key(last, "_start"))
                and not self.redis.exists(self._key(last, "_end"))
            )
        if running:
            self._adopt(last)

    def __repr__(self) -> str:
        return f"DatabaseServer(prefix={self.prefix!r}, session_id={self.session_id})"

    def _key(self, session_id: Any, suffix: str = "") -> str:
        return f"{self.prefix}session_{session_id}{suffix}"

    def _adopt(self, session_id: int) -> None:
        self.session_id = session_id
        self._data_key = self._key(session_id)

    # -- sessions ---------------------------------------------------------------------------

    def start_session(self) -> int:
        """Start a new session (a number never used before); return its id."""
        with _translated():
            new_id = int(self.redis.incr(self._counter))
            pipe = self.redis.pipeline(transaction=True)
            pipe.lpush(self._sessions, new_id)
            pipe.set(self._key(new_id, "_start"), blitz_timestamp())
            pipe.execute()
        self._adopt(new_id)
        return new_id

    def stop_session(self) -> None:
        """End the current session (its end time is now); without one, log a warning and
        do nothing (the original wrote a ``session_-1_end`` key)."""
        if self.session_id == -1:
            logger.warning("stop_session with no session running")
            return
        with _translated():
            self.redis.set(self._key(self.session_id, "_end"), blitz_timestamp())
        self.session_id = -1
        self._data_key = ""

    def queue(self, message: Any) -> Any:
        """Push ``message`` onto the current session; return it. With no session running,
        log a warning, store nothing and return None."""
        if self.session_id == -1:
            logger.warning(
                "Attempted to save a logged variable with no session running: %s", message
            )
            return None
        if isinstance(message, bool) or not isinstance(message, (str, bytes, int, float)):
            _message(message)  # raises
        # Translated by hand, not with _translated(): this is the per-message hot path.
        try:
            self.redis.lpush(self._data_key, message)
        except _redis.RedisError as e:
            _raise_translated(e)
        return message

    def queue_many(self, messages: Iterable[Any]) -> int:
        """Push many messages onto the current session in order, a few LPUSHes of many
        values each; return how many were stored (0, with a warning, if no session runs)."""
        batch = [_message(m) for m in messages]
        if self.session_id == -1:
            logger.warning(
                "Attempted to save %d logged variables with no session running", len(batch)
            )
            return 0
        with _translated():
            pipe = self.redis.pipeline(transaction=True)
            for start in range(0, len(batch), _CHUNK):
                pipe.lpush(self._data_key, *batch[start : start + _CHUNK])
            pipe.execute()
        return len(batch)

    def delete_session(self, session_id: int) -> None:
        """Delete session ``session_id`` and its data; its number is never reused. Deleting
        the running session also stops it (later messages would have nowhere to go)."""
        session_id = _session_number(session_id)
        with _translated():
            pipe = self.redis.pipeline(transaction=True)
            pipe.lrem(self._sessions, 1, session_id)
            pipe.delete(
                self._key(session_id, "_start"),
                self._key(session_id, "_end"),
                self._key(session_id),
            )
            pipe.execute()
        self._seen.pop(session_id, None)
        if session_id == self.session_id:
            self.session_id = -1
            self._data_key = ""

    def available_sessions(self) -> list[str]:
        """The session numbers stored, newest first, as text; [] if none."""
        with _translated():
            return [_text(s) for s in self.redis.lrange(self._sessions, 0, -1)]

    def build_client_session_list(self) -> list[list[Any]]:
        """``[id, start, end, number of readings]`` per session, newest first.

        Follows the document (lists), not the original (space-joined strings): ids,
        times and counts are ints, and a running session's end is None, which the
        wire's ``" ".join(map(str, entry))`` turns into the original's text ``None``.
        """
        with _translated():
            ids = [int(_text(s)) for s in self.redis.lrange(self._sessions, 0, -1)]
            pipe = self.redis.pipeline(transaction=False)
            for session_id in ids:
                pipe.get(self._key(session_id, "_start"))
                pipe.get(self._key(session_id, "_end"))
                pipe.llen(self._key(session_id))
            replies = pipe.execute()
        return [
            [session_id, _int_or_none(start), _int_or_none(end), int(count)]
            for session_id, start, end, count in zip(
                ids, replies[0::3], replies[1::3], replies[2::3], strict=True
            )
        ]

    # -- messages ---------------------------------------------------------------------------

    def get_ten_from_session(self) -> list[str]:
        """The current session's ten newest messages, oldest first ([] with no session)."""
        if self.session_id == -1:
            return []
        with _translated():
            result = [_text(m) for m in self.redis.lrange(self._data_key, 0, 9)]
        result.reverse()
        return result

    def get_all_from_session(self, session_id: int) -> list[str]:
        """Every message of session ``session_id``, oldest first."""
        session_id = _session_number(session_id)
        with _translated():
            result = [_text(m) for m in self.redis.lrange(self._key(session_id), 0, -1)]
        result.reverse()
        return result

    def get_latest_from_session(self, session_id: int) -> str:
        """The newest message of session ``session_id`` if messages arrived since this
        server last asked about that session, else ``""`` (tracked per session; the
        original kept one marker for all sessions)."""
        session_id = _session_number(session_id)
        with _translated():
            pipe = self.redis.pipeline(transaction=True)
            pipe.llen(self._key(session_id))
            pipe.lindex(self._key(session_id), 0)
            length, newest = pipe.execute()
        if length == self._seen.get(session_id, 0):
            return ""
        self._seen[session_id] = length
        return "" if newest is None else _text(newest)

    def snapshot(self) -> list[ServerSession]:
        """Every stored session with its times and messages (oldest first), read at once."""
        with _translated():
            ids = [int(_text(s)) for s in self.redis.lrange(self._sessions, 0, -1)]
            pipe = self.redis.pipeline(transaction=True)
            for session_id in ids:
                pipe.get(self._key(session_id, "_start"))
                pipe.get(self._key(session_id, "_end"))
                pipe.lrange(self._key(session_id), 0, -1)
            replies = pipe.execute()
        sessions = []
        for i, session_id in enumerate(ids):
            start, end, messages = replies[3 * i : 3 * i + 3]
            messages = [_text(m) for m in messages]
            messages.reverse()
            sessions.append(
                ServerSession(session_id, _int_or_none(start), _int_or_none(end), messages)
            )
        return sessions

    # -- housekeeping -----------------------------------------------------------------------

    def _own_keys(self) -> list[str]:
        pattern = re.compile(
            re.escape(self.prefix) + r"(session_id|sessions|session_-?\d+(_start|_end)?)\Z"
        )
        match = _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "session*"
        keys = (_text(k) for k in self.redis.scan_iter(match=match, count=1000))
        return [k for k in keys if pattern.match(k)]

    def flush(self) -> None:
        """Delete every key of this server's layout under its prefix, and nothing else
        (the original ran FLUSHDB on the whole Redis database).

        Warning: this irrevocably destroys all logged session data of this server.
        """
        with _translated():
            keys = self._own_keys()
            for start in range(0, len(keys), 1000):
                self.redis.delete(*keys[start : start + 1000])
        self.session_id = -1
        self._data_key = ""
        self._seen.clear()


def _session_number(session_id: Any) -> int:
    """A session number from an int or its text (the session list is text)."""
    if isinstance(session_id, bool):
        raise InvalidValue(f"session id must be an integer, got {session_id!r}")
    if isinstance(session_id, int):
        return session_id
    if isinstance(session_id, (str, bytes)):
        try:
            return int(_text(session_id).strip())
        except ValueError:
            pass
    raise InvalidValue(f"session id must be an integer or its text, got {session_id!r}")

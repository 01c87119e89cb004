"""DatabaseServer on the real Redis: every documented method, the key layout, flush's reach."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis

from dblayer.core import DBConnectionError, InvalidValue
from dblayer.stores.blitz import DatabaseServer, blitz_timestamp
from tests.conftest import REDIS_URL

MakeServer = Callable[..., DatabaseServer]


def test_sessions_keys_and_counter(server: DatabaseServer, redis_client: redis.Redis) -> None:
    p = server.prefix
    assert server.session_id == -1 and server.available_sessions() == []
    before = blitz_timestamp()
    first = server.start_session()
    assert first == 1 and server.session_id == 1
    assert before <= int(redis_client.get(f"{p}session_1_start")) <= blitz_timestamp()
    server.stop_session()
    assert server.session_id == -1
    assert int(redis_client.get(f"{p}session_1_end")) >= before
    second = server.start_session()
    assert second == 2 and redis_client.get(f"{p}session_id") == "2"
    assert server.available_sessions() == ["2", "1"]
    server.delete_session(second)
    assert server.session_id == -1  # deleting the running session stops it
    assert server.start_session() == 3  # numbers are never reused
    assert server.available_sessions() == ["3", "1"]


def test_stop_without_session_writes_nothing(
    server: DatabaseServer, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert server.stop_session() is None
    assert "no session" in caplog.text
    assert list(redis_client.scan_iter(match=server.prefix + "*")) == []


def test_queue_and_reads(server: DatabaseServer, redis_client: redis.Redis) -> None:
    session = server.start_session()
    for i in range(12):
        assert server.queue(f"m{i}") == f"m{i}"
    assert server.queue(7) == 7
    assert redis_client.lindex(f"{server.prefix}session_{session}", 0) == "7"
    assert server.get_ten_from_session() == [f"m{i}" for i in range(3, 12)] + ["7"]
    assert server.get_all_from_session(session) == [f"m{i}" for i in range(12)] + ["7"]
    assert server.get_all_from_session(str(session)) == server.get_all_from_session(session)
    assert server.get_all_from_session(99) == []
    with pytest.raises(InvalidValue):
        server.queue(None)
    with pytest.raises(InvalidValue):
        server.queue(["a"])
    assert len(server.get_all_from_session(session)) == 13


def test_queue_without_session_stores_nothing(
    server: DatabaseServer, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert server.queue("lost") is None
        assert server.queue_many(["a", "b"]) == 0
    assert "no session running" in caplog.text
    assert list(redis_client.scan_iter(match=server.prefix + "*")) == []
    assert server.get_ten_from_session() == []


def test_queue_many_keeps_order(server: DatabaseServer) -> None:
    session = server.start_session()
    server.queue("first")
    assert server.queue_many(f"m{i}" for i in range(25_000)) == 25_000
    server.queue("last")
    messages = server.get_all_from_session(session)
    assert messages == ["first"] + [f"m{i}" for i in range(25_000)] + ["last"]
    with pytest.raises(InvalidValue):
        server.queue_many(["ok", None])
    assert len(server.get_all_from_session(session)) == 25_002


def test_get_latest_only_when_something_new(server: DatabaseServer) -> None:
    one = server.start_session()
    assert server.get_latest_from_session(one) == ""
    server.queue("a")
    server.queue("b")
    assert server.get_latest_from_session(one) == "b"
    assert server.get_latest_from_session(one) == ""
    server.queue("c")
    two = server.start_session()
    server.queue("x")
    assert server.get_latest_from_session(two) == "x"
    assert server.get_latest_from_session(one) == "c"  # tracked per session
    assert server.get_latest_from_session(one) == ""


def test_build_client_session_list(server: DatabaseServer) -> None:
    assert server.build_client_session_list() == []
    one = server.start_session()
    server.queue_many(["a", "b", "c"])
    server.stop_session()
    two = server.start_session()
    server.queue("d")
    listed = server.build_client_session_list()
    assert [entry[0] for entry in listed] == [two, one]
    (id2, start2, end2, count2), (id1, start1, end1, count1) = listed
    assert (count1, count2) == (3, 1)
    assert end2 is None and isinstance(start2, int)
    assert isinstance(start1, int) and isinstance(end1, int) and start1 <= end1
    wire = [" ".join(map(str, entry)) for entry in listed]
    assert wire[0] == f"{two} {start2} None 1"


def test_delete_session(server: DatabaseServer, redis_client: redis.Redis) -> None:
    one = server.start_session()
    server.queue("a")
    server.stop_session()
    two = server.start_session()
    assert server.delete_session(one) is None
    assert server.available_sessions() == [str(two)]
    assert server.get_all_from_session(one) == []
    p = server.prefix
    assert redis_client.exists(f"{p}session_{one}_start", f"{p}session_{one}_end") == 0
    assert server.session_id == two  # another session keeps running
    with pytest.raises(InvalidValue):
        server.delete_session("one")


def test_flush_removes_exactly_its_own_keys(
    make_server: MakeServer, redis_client: redis.Redis
) -> None:
    server = make_server()
    neighbour = make_server()
    p = server.prefix
    redis_client.set(f"{p}unrelated", "keep")
    redis_client.set(f"{p}session_x", "keep")
    server.start_session()
    server.queue("a")
    neighbour.start_session()
    neighbour.queue("b")
    server.flush()
    assert sorted(redis_client.scan_iter(match=p + "*")) == [f"{p}session_x", f"{p}unrelated"]
    assert neighbour.get_all_from_session(1) == ["b"]
    assert server.session_id == -1 and server.available_sessions() == []


def test_flush_with_glob_characters_in_prefix(
    make_server: MakeServer, redis_client: redis.Redis
) -> None:
    server = make_server(prefix=f"{make_server().prefix}[a]*")
    lookalike = server.prefix.replace("[a]*", "a") + "session_id"
    redis_client.set(lookalike, "1")
    server.start_session()
    server.flush()
    assert redis_client.get(lookalike) == "1"
    redis_client.delete(lookalike)
    assert list(redis_client.scan_iter(match=server.prefix.replace("[", "\\[") + "*")) == []


def test_new_server_adopts_only_a_running_session(make_server: MakeServer) -> None:
    first = make_server()
    running = first.start_session()
    again = make_server(prefix=first.prefix)
    assert again.session_id == running
    again.queue("after restart")
    assert first.get_all_from_session(running) == ["after restart"]
    again.stop_session()
    stopped = make_server(prefix=first.prefix)
    assert stopped.session_id == -1


def test_decodes_a_client_that_does_not(make_server: MakeServer) -> None:
    raw = redis.Redis.from_url(REDIS_URL)  # replies are bytes
    server = make_server(connection=raw)
    session = server.start_session()
    server.queue("é")
    assert server.available_sessions() == [str(session)]
    assert server.get_all_from_session(session) == ["é"]
    assert server.get_latest_from_session(session) == "é"
    assert server.build_client_session_list()[0][3] == 1
    assert server.snapshot()[0].messages == ["é"]
    raw.close()


def test_bad_arguments_and_unreachable_server() -> None:
    with pytest.raises(InvalidValue):
        DatabaseServer(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        DatabaseServer("http://example.com")
    with pytest.raises(InvalidValue):
        DatabaseServer(REDIS_URL, prefix=3)  # type: ignore[arg-type]
    with pytest.raises(DBConnectionError):
        DatabaseServer("redis://127.0.0.1:1/0")

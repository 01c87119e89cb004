"""The client and the server together: the session list round trip and sync_from_server."""

from __future__ import annotations

import sqlalchemy as sa

from dblayer.stores.blitz import Category, DatabaseClient, DatabaseServer, Reading, Session

BIG = 100_000


def session_rows(client: DatabaseClient) -> list[tuple]:
    table = Session.__table__
    with client.db.transaction(readonly=True) as conn:
        stmt = sa.select(
            table.c.ref_id,
            table.c.timeStarted,
            table.c.timeStopped,
            table.c.numberOfReadings,
            table.c.available,
        ).order_by(table.c.ref_id)
        return [tuple(r) for r in conn.execute(stmt)]


def reading_count(client: DatabaseClient) -> int:
    with client.db.transaction(readonly=True) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(Reading)).scalar_one()


def two_sessions(server: DatabaseServer) -> tuple[int, int]:
    one = server.start_session()
    server.queue_many(["a1", "a2", "a3"])
    server.stop_session()
    two = server.start_session()
    server.queue("b1")
    return one, two


def test_session_list_round_trip_over_the_wire(
    client: DatabaseClient, server: DatabaseServer
) -> None:
    one, two = two_sessions(server)
    listed = server.build_client_session_list()
    # What the server sends: one line per session; the client splits it into four strings.
    wire = "\n".join(" ".join(map(str, entry)) for entry in listed)
    client.update_session_list([line.split() for line in wire.split("\n")])
    (_, start2, _, _), (_, start1, end1, _) = listed
    assert session_rows(client) == [(one, start1, end1, 3, False), (two, start2, None, 1, False)]
    client.update_session_list(listed)  # the lists themselves work as well
    assert session_rows(client) == [(one, start1, end1, 3, False), (two, start2, None, 1, False)]


def test_sync_copies_sessions_and_readings(client: DatabaseClient, server: DatabaseServer) -> None:
    one, two = two_sessions(server)
    assert client.sync_from_server(server) == {one: 3, two: 1}
    (_, start2, _, _), (_, start1, end1, _) = server.build_client_session_list()
    assert session_rows(client) == [(one, start1, end1, 3, True), (two, start2, None, 1, True)]
    assert [r.value for r in client.get_session_readings(one)] == ["a1", "a2", "a3"]
    raw = client.get(Category, {"variableName": "raw"})
    assert {r.categoryId for r in client.all(Reading)} == {raw.id}


def test_sync_is_idempotent_and_follows_a_running_session(
    client: DatabaseClient, server: DatabaseServer
) -> None:
    one, two = two_sessions(server)
    client.sync_from_server(server)
    before = session_rows(client)
    assert client.sync_from_server(server) == {one: 0, two: 0}
    assert session_rows(client) == before and reading_count(client) == 4
    server.queue("b2")
    assert client.sync_from_server(server) == {one: 0, two: 2}
    assert [r.value for r in client.get_session_readings(two)] == ["b1", "b2"]
    assert reading_count(client) == 5
    server.stop_session()
    client.sync_from_server(server)
    assert client.get(Session, {"ref_id": two}).timeStopped is not None


def test_a_new_session_under_a_stored_number_replaces_its_readings(
    client: DatabaseClient, server: DatabaseServer
) -> None:
    one, _ = two_sessions(server)
    client.sync_from_server(server)
    server.flush()  # the server numbers its sessions from 1 again
    again = server.start_session()
    server.queue_many(["c1", "c2", "c3"])  # as many messages as the stored session 1
    server.stop_session()
    assert again == one
    assert client.sync_from_server(server) == {one: 3}
    assert [r.value for r in client.get_session_readings(one)] == ["c1", "c2", "c3"]
    assert reading_count(client) == 4  # session 2's reading is left alone


def test_sync_of_an_empty_server_changes_nothing(
    client: DatabaseClient, server: DatabaseServer
) -> None:
    client.update_session_list([[7, 1, 2, 0]])
    assert client.sync_from_server(server) == {}
    assert session_rows(client) == [(7, 1, 2, 0, False)]


def test_hundred_thousand_readings_round_trip(
    client: DatabaseClient, server: DatabaseServer
) -> None:
    session = server.start_session()
    messages = [f"{i:06d}:{i * 0.25}" for i in range(BIG)]
    server.queue_many(messages)
    server.stop_session()
    assert client.sync_from_server(server) == {session: BIG}
    readings = client.get_session_readings(session)
    assert [r.value for r in readings] == messages
    ids = [r.id for r in readings]
    assert ids == sorted(ids)
    assert client.get(Session, {"ref_id": session}).numberOfReadings == BIG
    assert client.sync_from_server(server) == {session: 0}
    assert reading_count(client) == BIG

"""DatabaseClient on every SQL backend: every documented method, its errors, the fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dblayer.core import Database, DuplicateEntry, InvalidQuery, InvalidValue, NotFound
from dblayer.stores.blitz import (
    CATEGORY_FIXTURES,
    CONFIG_FIXTURES,
    Cache,
    Category,
    Config,
    DatabaseClient,
    Notification,
    Reading,
    Session,
    blitz_timestamp,
    database_url,
    generate_objects,
)
from tests.conftest import backend_url


def count(client: DatabaseClient, model: type) -> int:
    with client.db.transaction(readonly=True) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def sessions(client: DatabaseClient) -> list[tuple]:
    with client.db.transaction(readonly=True) as conn:
        table = Session.__table__
        stmt = sa.select(
            table.c.ref_id,
            table.c.timeStarted,
            table.c.timeStopped,
            table.c.numberOfReadings,
            table.c.available,
        ).order_by(table.c.ref_id)
        return [tuple(r) for r in conn.execute(stmt)]


# -- add / add_many ---------------------------------------------------------------------------


def test_add_returns_the_item_loaded_with_its_id(client: DatabaseClient) -> None:
    category = Category(variableName="temp")
    added = client.add(category)
    assert added is category
    assert isinstance(added.id, int)
    assert added.to_dict() == {"id": added.id, "variableName": "temp"}
    assert client.get_by_id(Category, added.id).variableName == "temp"


def test_add_many_populates_ids_in_order_and_stores_text(client: DatabaseClient) -> None:
    cat = client.get_or_create_category("speed")
    items = [
        Reading(sessionId=1, timeLogged=1000 + i, categoryId=cat, value=i / 2) for i in range(5)
    ]
    returned = client.add_many(items)
    assert returned == items
    ids = [r.id for r in returned]
    assert ids == sorted(ids) and len(set(ids)) == 5
    stored = client.get_session_readings(1)
    assert [r.id for r in stored] == ids
    assert [r.value for r in stored] == ["0.0", "0.5", "1.0", "1.5", "2.0"]
    assert returned[1].value == "0.5" and returned[1].timeLogged == 1001


def test_add_many_mixed_models_and_defaults(client: DatabaseClient) -> None:
    category, session = Category(variableName="v"), Session(ref_id=7)
    config = Config(key="k", value=3)
    client.add_many([session, config, category])
    assert session.available is False  # the column default, readable after the call
    assert config.value == "3"
    assert {c.key for c in client.all(Config)} == {"k"}
    assert client.get(Session, {"ref_id": 7}).available is False
    assert client.get(Category, {"variableName": "v"}).id == category.id


def test_add_many_with_explicit_ids(client: DatabaseClient) -> None:
    given, fresh = Notification(id=50, severity=2, description="x"), Notification(severity=1)
    client.add_many([given, fresh])
    assert given.id == 50 and fresh.id not in (None, 50)
    assert sorted(n.id for n in client.all(Notification)) == sorted([50, fresh.id])


def test_add_of_a_stored_object_saves_its_changes(client: DatabaseClient) -> None:
    config = client.add(Config(key="port", value="1"))
    config.value = "2"
    client.add(config)
    assert count(client, Config) == 1
    assert client.get_config("port").value == "2"


def test_add_many_with_related_objects_goes_through_the_orm(client: DatabaseClient) -> None:
    reading = Reading(sessionId=4, value="1", category=Category(variableName="rel"))
    client.add(reading)
    assert reading.id is not None and reading.categoryId == reading.category.id
    assert client.get(Category, {"variableName": "rel"}).id == reading.categoryId


def test_add_many_failure_keeps_nothing(client: DatabaseClient) -> None:
    first, second = Category(variableName="dup"), Category(variableName="dup")
    with pytest.raises(DuplicateEntry):
        client.add_many([Config(key="a", value="b"), first, second])
    assert count(client, Category) == 0 and count(client, Config) == 0
    assert first.id is None and second.id is None


@pytest.mark.parametrize("bad", [None, "text", [1], [Reading(), object()], {"a": 1}])
def test_add_many_rejects_non_models(client: DatabaseClient, bad: object) -> None:
    with pytest.raises(InvalidValue):
        client.add_many(bad)  # type: ignore[arg-type]
    assert count(client, Reading) == 0


# -- all / find / get ----------------------------------------------------------------------------


def test_all_find_get(client: DatabaseClient) -> None:
    client.load_fixtures(testing=True)
    assert len(client.all(Reading)) == 6
    assert all(isinstance(r, Reading) for r in client.all(Reading))
    cat_two = client.get(Category, {"variableName": "adc_channel_two"})
    found = client.find(Reading, {"categoryId": cat_two.id})
    assert found.count() == 3 and len(found) == 3 and bool(found)
    ids = [r.id for r in found]
    assert ids == sorted(ids)
    assert found[0].id == ids[0] and found[2].id == ids[2] and found[-1].id == ids[-1]
    assert [r.id for r in found[1:]] == ids[1:]
    assert found.first().id == ids[0] and [r.id for r in found.all()] == ids
    with pytest.raises(IndexError):
        found[3]
    assert client.find(Reading, {"categoryId": cat_two.id, "value": "nope"}).count() == 0
    assert not client.find(Reading, {"value": "nope"})
    assert client.get(Session, {"available": True}).numberOfReadings == 6
    assert client.find(Session, {"available": False})[0].ref_id == 2
    assert client.get(Reading, {"value": "nope"}) is None
    assert client.get_by_id(Category, cat_two.id).variableName == "adc_channel_two"
    assert client.get_by_id(Category, 10**6) is None
    assert client.find(Session, {"timeStopped": None})[0].ref_id == 2


def test_find_unknown_field_and_bad_model(client: DatabaseClient) -> None:
    with pytest.raises(InvalidQuery, match="nope"):
        client.find(Reading, {"nope": 1})
    with pytest.raises(InvalidQuery):
        client.get(Reading, ["id", 1])  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery):
        client.all(dict)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery):
        client.find("Reading", {})  # type: ignore[arg-type]


# -- config, categories, errors --------------------------------------------------------------


def test_config(client: DatabaseClient) -> None:
    assert client.get_config("sampleRate") is None
    assert client.set_config("sampleRate", 50) is None
    assert client.get_config("sampleRate").value == "50"
    client.set_config("sampleRate", "100")
    assert client.get_config("sampleRate").value == "100"
    client.set_config("sampleRate", "1", do_update=False)
    assert client.get_config("sampleRate").value == "100"
    assert count(client, Config) == 1
    with pytest.raises(InvalidValue):
        client.set_config(5, "x")  # type: ignore[arg-type]
    assert count(client, Config) == 1


def test_get_or_create_category(client: DatabaseClient) -> None:
    first = client.get_or_create_category("adc")
    assert isinstance(first, int)
    assert client.get_or_create_category("adc") == first
    assert client.get_or_create_category("ADC") != first
    assert count(client, Category) == 2
    with pytest.raises(InvalidValue):
        client.get_or_create_category(None)  # type: ignore[arg-type]


def test_errors(client: DatabaseClient) -> None:
    before = blitz_timestamp()
    note = client.log_error("board lost")
    assert note.severity == 1 and note.description == "board lost" and note.id is not None
    assert before <= note.timeLogged <= blitz_timestamp()
    other = client.log_error("overheat", severity=3)
    client.handle_error(note.id)
    assert [n.id for n in client.all(Notification)] == [other.id]
    client.handle_error(10**6)  # a missing id changes nothing
    assert count(client, Notification) == 1
    with pytest.raises(InvalidValue):
        client.log_error("x", severity="high")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        client.handle_error("one")  # type: ignore[arg-type]
    client.clear_errors()
    assert client.all(Notification) == []


# -- readings and cache ----------------------------------------------------------------------


def test_add_reading_and_cache(client: DatabaseClient) -> None:
    cat = client.get_or_create_category("x")
    reading = client.add_reading(3, 1000, cat, 5.2)
    assert isinstance(reading, Reading) and reading.value == "5.2" and reading.id is not None
    assert client.get_by_id(Reading, reading.id).to_dict() == {
        "id": reading.id,
        "sessionId": 3,
        "timeLogged": 1000.0,
        "categoryId": cat,
        "value": "5.2",
    }
    cache = client.add_cache(2000, cat, 7)
    assert isinstance(cache, Cache) and cache.value == "7"
    assert client.get_by_id(Cache, cache.id).timeLogged == 2000
    with pytest.raises(InvalidValue):
        client.add_reading(3, "noon", cat, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        client.add_cache(1, "cat", 1)  # type: ignore[arg-type]
    assert count(client, Reading) == 1 and count(client, Cache) == 1
    assert client.clear_cache() is None
    assert count(client, Cache) == 0 and count(client, Reading) == 1


def test_get_cache_limits_to_fifty_newest_per_variable(client: DatabaseClient) -> None:
    client.add_many([Cache(timeLogged=t, categoryId=2, value=str(t)) for t in range(1, 61)])
    client.add_many([Cache(timeLogged=t, categoryId=1, value=str(t)) for t in (5, 30, 10)])
    groups = client.get_cache()
    assert [[c.categoryId for c in g][:1] for g in groups] == [[1], [2]]
    assert [c.timeLogged for c in groups[0]] == [30, 10, 5]
    assert [c.timeLogged for c in groups[1]] == list(range(60, 10, -1))
    since = client.get_cache(since=10)
    assert [c.timeLogged for c in since[0]] == [30, 10]
    assert [c.timeLogged for c in since[1]][-1] == 11
    assert client.get_cache(since=100) == []
    with pytest.raises(InvalidValue):
        client.get_cache(since="yesterday")  # type: ignore[arg-type]


def test_cache_and_session_variables(client: DatabaseClient) -> None:
    client.load_fixtures(testing=True)
    one = client.get(Category, {"variableName": "adc_channel_one"})
    two = client.get(Category, {"variableName": "adc_channel_two"})
    cached = client.get_cache_variables()
    assert [c.categoryId for c in cached] == [one.id, two.id]
    assert all(isinstance(c, Cache) for c in cached)
    assert [c.value for c in cached] == ["5.2", "2.4"]  # each variable's newest value
    variables = client.get_session_variables(1)
    assert [r.categoryId for r in variables] == [one.id, two.id]
    assert [r.category.variableName for r in variables] == ["adc_channel_one", "adc_channel_two"]
    assert client.get_session_variables(99) == []
    readings = client.get_session_readings(1)
    assert [r.value for r in readings] == ["3.75", "9.12", "5.2", "4.3", "1.7", "2.4"]
    assert client.get_session_readings(99) == []


# -- sessions --------------------------------------------------------------------------------


def test_update_session_list_wire_format(client: DatabaseClient) -> None:
    client.add_reading(2, 1, None, "x")
    wire = "1 1700000000000 1700000001000 10\n2 1700000002000 None 3"
    client.update_session_list([line.split() for line in wire.splitlines()])
    assert sessions(client) == [
        (1, 1700000000000, 1700000001000, 10, False),
        (2, 1700000002000, None, 3, True),
    ]
    assert client.get(Session, {"ref_id": 2}).to_dict()["timeStopped"] == 0.0
    # The list is replaced, and whole strings and ints are accepted too.
    client.update_session_list(["5 10 20 0", [6, 30, None, 1]])
    assert sessions(client) == [(5, 10, 20, 0, False), (6, 30, None, 1, False)]
    client.update_session_list([])
    assert sessions(client) == []


@pytest.mark.parametrize(
    "bad",
    [
        [["1", "2", "3"]],
        [["x", "1", "2", "3"]],
        [["1", "1.5", "2", "3"]],
        [["None", "1", "2", "3"]],
        [[1, 2, 3, 4], [1, 5, 6, 7]],
        [[True, 2, 3, 4]],
        "1 2 3 4",
        None,
    ],
)
def test_update_session_list_rejects_bad_entries(client: DatabaseClient, bad: object) -> None:
    client.update_session_list([[9, 1, 2, 3]])
    with pytest.raises(InvalidValue):
        client.update_session_list(bad)  # type: ignore[arg-type]
    assert sessions(client) == [(9, 1, 2, 3, False)]


def test_update_session_availability(client: DatabaseClient) -> None:
    client.update_session_list([[1, 1, 2, 1]])
    assert client.get(Session, {"ref_id": 1}).available is False
    client.add_reading(1, 5, None, "v")
    client.update_session_availability(1)
    assert client.get(Session, {"ref_id": 1}).available is True
    with pytest.raises(NotFound):
        client.update_session_availability(2)
    with pytest.raises(InvalidValue):
        client.update_session_availability("one")  # type: ignore[arg-type]


def test_clear_session_data(client: DatabaseClient) -> None:
    client.load_fixtures(testing=True)
    client.add_reading(2, 5, None, "other")
    client.clear_session_data(1)
    assert client.get_session_readings(1) == []
    assert [r.value for r in client.get_session_readings(2)] == ["other"]
    assert client.get(Session, {"ref_id": 1}).available is False
    client.clear_session_data(42)  # no such session: nothing to clear, no error


def test_delete_session_is_committed(client: DatabaseClient, backend: str, run_dir: Path) -> None:
    client.load_fixtures(testing=True)
    client.delete_session(1)
    assert client.get(Session, {"ref_id": 1}) is None
    assert client.get_session_readings(1) == []
    assert [s.ref_id for s in client.all(Session)] == [2]
    if backend != "sqlite_memory":  # seen from another connection: really committed
        with Database(backend_url(backend, run_dir)) as other, other.transaction() as conn:
            table = Session.__table__
            assert list(conn.execute(sa.select(table.c.ref_id)).scalars()) == [2]


# -- fixtures and schema -----------------------------------------------------------------------


def test_load_fixtures(client: DatabaseClient) -> None:
    client.set_config("loggerPort", "1234")
    client.load_fixtures()
    configs = {c.key: c.value for c in client.all(Config)}
    expected = {f["key"]: f["value"] for f in CONFIG_FIXTURES}
    assert configs == {**expected, "loggerPort": "1234"}
    assert count(client, Reading) == count(client, Category) == 0
    client.load_fixtures(testing=True)
    assert count(client, Config) == 6
    assert [c.variableName for c in client.all(Category)] == [
        f["variableName"] for f in CATEGORY_FIXTURES
    ]
    assert count(client, Reading) == 6 and count(client, Cache) == 6
    assert [(s.ref_id, s.available) for s in client.all(Session)] == [(1, True), (2, False)]
    two = client.get(Category, {"variableName": "adc_channel_two"})
    assert client.find(Reading, {"categoryId": two.id}).count() == 3


def test_generate_objects() -> None:
    objects = generate_objects(Config, CONFIG_FIXTURES)
    assert [o.key for o in objects] == [f["key"] for f in CONFIG_FIXTURES]


def test_create_tables_force_drop(client: DatabaseClient) -> None:
    client.set_config("a", "b")
    client.create_tables()
    assert count(client, Config) == 1
    client.create_tables(force_drop=True)
    assert count(client, Config) == 0
    assert {"reading", "session", "config", "category", "cache", "notifications"} <= set(
        client.db.table_names()
    )


def test_paths(tmp_path: Path) -> None:
    memory = DatabaseClient()
    memory.set_config("a", "b")
    assert memory.get_config("a").value == "b"
    memory.close()
    path = tmp_path / "blitz.db"
    on_file = DatabaseClient(verbose=False, path=str(path))
    on_file.set_config("a", "c")
    on_file.close()
    again = DatabaseClient(path=str(path))
    assert again.get_config("a").value == "c"
    again.close()
    assert database_url(":memory:") == "sqlite://"
    with pytest.raises(InvalidValue):
        DatabaseClient(path=5)  # type: ignore[arg-type]


def test_to_dict_and_str() -> None:
    session = Session(id=3, ref_id=9, available=True, timeStarted=10, timeStopped=None)
    assert session.to_dict() == {
        "id": 9,
        "sql_id": 3,
        "available": True,
        "timeStarted": 10.0,
        "timeStopped": 0.0,
        "numberOfReadings": None,
    }
    assert '"sql_id": 3' in str(session)
    note = Notification(id=1, timeLogged=5, severity=2, description="d")
    assert note.to_dict() == {"id": 1, "timeLogged": 5.0, "severity": 2, "description": "d"}
    assert Config(id=1, key="k", value="v").to_dict() == {"id": 1, "key": "k", "value": "v"}
    assert Cache(id=1, timeLogged=2, categoryId=3, value=4).to_dict() == {
        "id": 1,
        "timeLogged": 2.0,
        "categoryId": 3,
        "value": "4",
    }

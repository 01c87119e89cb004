"""Instance actions and their events (nova notes §3.5), on every backend."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, models
from dblayer.stores.nova.context import RequestContext
from tests.stores.nova.conftest import make_instance
from tests.stores.nova.conftest import table_rows as rows


def soft_delete(db: Database, model, row_id: int) -> None:
    with db.transaction() as conn:
        table = model.__table__
        # As nova's soft delete: updated_at kept.
        stmt = sa.update(table).where(table.c.id == row_id)
        conn.execute(stmt.values(deleted=row_id, updated_at=table.c.updated_at))


def start(ctx, instance_uuid: str, request_id: str = "req-1", **values):
    return nova.action_start(
        ctx,
        {"instance_uuid": instance_uuid, "request_id": request_id, "action": "reboot", **values},
    )


def start_event(ctx, instance_uuid: str, request_id: str = "req-1", event: str = "compute_reboot"):
    return nova.action_event_start(
        ctx, {"instance_uuid": instance_uuid, "request_id": request_id, "event": event}
    )


# -- actions ---------------------------------------------------------------------------------


def test_action_start_stores_the_action(nova_db, ctx):
    inst = make_instance(nova_db)
    action = start(ctx, inst, user_id="user1", project_id="project1")
    assert action["action"] == "reboot" and action.instance_uuid == inst
    assert isinstance(action.start_time, dt.datetime) and action.finish_time is None
    [stored] = rows(nova_db, models.InstanceAction)
    assert stored["id"] == action.id and stored["request_id"] == "req-1"
    assert stored["user_id"] == "user1" and stored["deleted"] == 0


def test_action_start_parses_nova_time_strings_and_drops_the_zone(nova_db, ctx):
    inst = make_instance(nova_db)
    aware = dt.datetime(2014, 7, 23, 10, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    a1 = start(ctx, inst, "r1", start_time="2014-07-23T10:11:12.000013")
    a2 = start(ctx, inst, "r2", start_time=aware)
    assert a1.start_time == dt.datetime(2014, 7, 23, 10, 11, 12, 13)
    # nova took incoming times as UTC and dropped the zone without converting.
    assert a2.start_time == dt.datetime(2014, 7, 23, 10, 0, 0, 5)
    stored = {r["request_id"]: r["start_time"] for r in rows(nova_db, models.InstanceAction)}
    assert stored == {"r1": a1.start_time, "r2": a2.start_time}


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"request_id": "r", "bogus": 1}, InvalidQuery),
        ({"request_id": "r", "start_time": "yesterday"}, InvalidQuery),
        ({"request_id": "r", "action": "x" * 256}, InvalidValue),
        ({"request_id": 5}, InvalidValue),
        ("not a dict", InvalidQuery),
    ],
)
def test_action_start_rejects_bad_values_and_stores_nothing(nova_db, ctx, values, error):
    with pytest.raises(error):
        nova.action_start(ctx, values)
    assert rows(nova_db, models.InstanceAction) == []


def test_action_start_for_an_unknown_instance_is_instance_not_found(nova_db, ctx):
    with pytest.raises(exception.InstanceNotFound):
        start(ctx, str(uuid.uuid4()))
    assert rows(nova_db, models.InstanceAction) == []


def test_action_calls_make_no_access_check(nova_db):
    # nova's action_* functions took any context, even one with no user or project.
    anonymous = RequestContext(None, None)
    inst = make_instance(nova_db)
    start(anonymous, inst)
    start_event(anonymous, inst)
    assert nova.action_get_by_request_id(anonymous, inst, "req-1") is not None
    assert len(nova.actions_get(anonymous, inst)) == 1


def test_action_finish_updates_the_action(nova_db, ctx):
    inst = make_instance(nova_db)
    action = start(ctx, inst)
    finish = dt.datetime(2014, 7, 23, 12, 0, 0, 1)
    done = nova.action_finish(
        ctx, {"instance_uuid": inst, "request_id": "req-1", "finish_time": finish, "message": "ok"}
    )
    assert done.id == action.id and done.finish_time == finish and done.message == "ok"
    [stored] = rows(nova_db, models.InstanceAction)
    assert stored["finish_time"] == finish and stored["message"] == "ok"


def test_action_finish_of_an_unknown_action_changes_nothing(nova_db, ctx):
    inst = make_instance(nova_db)
    start(ctx, inst)
    before = rows(nova_db, models.InstanceAction)
    with pytest.raises(exception.InstanceActionNotFound) as err:
        nova.action_finish(ctx, {"instance_uuid": inst, "request_id": "req-other", "message": "x"})
    assert "req-other" in str(err.value)
    with pytest.raises(InvalidQuery, match="request_id"):
        nova.action_finish(ctx, {"instance_uuid": inst, "message": "x"})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.action_finish(ctx, {"instance_uuid": inst, "request_id": "req-1", "bogus": 1})
    assert rows(nova_db, models.InstanceAction) == before


def test_action_get_by_request_id_reads_as_the_context_says(nova_db, ctx):
    inst = make_instance(nova_db)
    action = start(ctx, inst)
    assert nova.action_get_by_request_id(ctx, inst, "req-1").id == action.id
    assert nova.action_get_by_request_id(ctx, inst, "req-2") is None
    assert nova.action_get_by_request_id(ctx, str(uuid.uuid4()), "req-1") is None
    soft_delete(nova_db, models.InstanceAction, action.id)
    assert nova.action_get_by_request_id(ctx, inst, "req-1") is None
    ctx.read_deleted = "yes"
    assert nova.action_get_by_request_id(ctx, inst, "req-1").id == action.id
    # A deleted action cannot be finished under read_deleted 'no'.
    ctx.read_deleted = "no"
    with pytest.raises(exception.InstanceActionNotFound):
        nova.action_finish(ctx, {"instance_uuid": inst, "request_id": "req-1"})


def test_actions_get_lists_the_instance_actions_newest_first(nova_db, ctx):
    inst, other = make_instance(nova_db), make_instance(nova_db)
    t = dt.datetime(2014, 7, 23, 10, 0, 0)
    a1 = start(ctx, inst, "r1", created_at=t)
    a2 = start(ctx, inst, "r2", created_at=t + dt.timedelta(seconds=1))
    a3 = start(ctx, inst, "r3", created_at=t)  # same time as a1: the larger id first
    start(ctx, other, "r4")
    assert [a.id for a in nova.actions_get(ctx, inst)] == [a2.id, a3.id, a1.id]
    soft_delete(nova_db, models.InstanceAction, a2.id)
    assert [a.id for a in nova.actions_get(ctx, inst)] == [a3.id, a1.id]
    ctx.read_deleted = "only"
    assert [a.id for a in nova.actions_get(ctx, inst)] == [a2.id]
    assert nova.actions_get(ctx, str(uuid.uuid4())) == []
    with pytest.raises(InvalidValue):
        nova.actions_get(ctx, 42)


# -- events ----------------------------------------------------------------------------------


def test_action_event_start_adds_an_event_to_the_action(nova_db, ctx):
    inst = make_instance(nova_db)
    action = start(ctx, inst)
    event = nova.action_event_start(
        ctx,
        {
            "instance_uuid": inst,
            "request_id": "req-1",
            "event": "compute_reboot",
            "host": "h1",
            "start_time": "2014-07-23T10:11:12.000000",
        },
    )
    assert event.action_id == action.id and event.event == "compute_reboot"
    assert event.host == "h1" and event.start_time == dt.datetime(2014, 7, 23, 10, 11, 12)
    [stored] = rows(nova_db, models.InstanceActionEvent)
    assert stored["id"] == event.id and stored["action_id"] == action.id


def test_action_event_start_without_its_action_changes_nothing(nova_db, ctx):
    inst = make_instance(nova_db)
    start(ctx, inst)
    with pytest.raises(exception.InstanceActionNotFound):
        start_event(ctx, inst, "req-2")
    with pytest.raises(InvalidQuery, match="instance_uuid"):
        nova.action_event_start(ctx, {"request_id": "req-1", "event": "e"})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.action_event_start(ctx, {"instance_uuid": inst, "request_id": "req-1", "bogus": 1})
    assert rows(nova_db, models.InstanceActionEvent) == []


def test_action_event_finish_records_the_result(nova_db, ctx):
    inst = make_instance(nova_db)
    action = start(ctx, inst)
    event = start_event(ctx, inst)
    done = nova.action_event_finish(
        ctx,
        {
            "instance_uuid": inst,
            "request_id": "req-1",
            "event": "compute_reboot",
            "result": "Success",
            "finish_time": dt.datetime(2014, 7, 23, 11, 0, 0),
        },
    )
    assert done.id == event.id and done.result == "Success"
    assert done.finish_time == dt.datetime(2014, 7, 23, 11, 0, 0)
    assert nova.action_get_by_request_id(ctx, inst, "req-1").message is None
    [stored] = rows(nova_db, models.InstanceActionEvent)
    assert stored["result"] == "Success" and stored["action_id"] == action.id


def test_an_error_result_marks_the_action(nova_db, ctx):
    inst = make_instance(nova_db)
    start(ctx, inst)
    start_event(ctx, inst)
    # nova's pack_action_event_finish adds 'message' (not an event column): dropped.
    nova.action_event_finish(
        ctx,
        {
            "instance_uuid": inst,
            "request_id": "req-1",
            "event": "compute_reboot",
            "result": "ERROR",
            "message": "boom",
            "traceback": "Traceback ...",
        },
    )
    [event] = rows(nova_db, models.InstanceActionEvent)
    assert event["result"] == "ERROR" and event["traceback"] == "Traceback ..."
    assert rows(nova_db, models.InstanceAction)[0]["message"] == "Error"


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"event": "compute_reboot"}, InvalidQuery),  # no result
        ({"event": "compute_reboot", "result": None}, InvalidQuery),
        ({"result": "Error"}, InvalidQuery),  # no event
        ({"event": "compute_reboot", "result": "Error", "bogus": 1}, InvalidQuery),
        ({"event": "other", "result": "Error"}, exception.InstanceActionEventNotFound),
        (
            {"event": "compute_reboot", "result": "Error", "request_id": "r9"},
            exception.InstanceActionNotFound,
        ),
    ],
)
def test_action_event_finish_rejected_changes_nothing(nova_db, ctx, values, error):
    inst = make_instance(nova_db)
    start(ctx, inst)
    start_event(ctx, inst)
    before = (rows(nova_db, models.InstanceAction), rows(nova_db, models.InstanceActionEvent))
    with pytest.raises(error):
        nova.action_event_finish(ctx, {"instance_uuid": inst, "request_id": "req-1", **values})
    after = (rows(nova_db, models.InstanceAction), rows(nova_db, models.InstanceActionEvent))
    assert after == before


def test_action_events_get_lists_events_newest_first(nova_db, ctx):
    inst = make_instance(nova_db)
    action = start(ctx, inst)
    other = start(ctx, inst, "req-2")
    e1, e2 = start_event(ctx, inst, event="a"), start_event(ctx, inst, event="b")
    start_event(ctx, inst, "req-2", event="c")
    with nova_db.transaction() as conn:  # one creation time: ties go to the larger id
        table = models.InstanceActionEvent.__table__
        conn.execute(sa.update(table).values(created_at=dt.datetime(2014, 1, 1)))
    assert [e.id for e in nova.action_events_get(ctx, action.id)] == [e2.id, e1.id]
    assert [e.event for e in nova.action_events_get(ctx, other.id)] == ["c"]
    soft_delete(nova_db, models.InstanceActionEvent, e2.id)
    assert [e.id for e in nova.action_events_get(ctx, action.id)] == [e1.id]
    assert nova.action_events_get(ctx, 9999) == []


def test_action_event_get_by_id(nova_db, ctx):
    inst = make_instance(nova_db)
    action, other = start(ctx, inst), start(ctx, inst, "req-2")
    event = start_event(ctx, inst)
    assert nova.action_event_get_by_id(ctx, action.id, event.id).event == "compute_reboot"
    assert nova.action_event_get_by_id(ctx, other.id, event.id) is None
    assert nova.action_event_get_by_id(ctx, action.id, event.id + 100) is None
    soft_delete(nova_db, models.InstanceActionEvent, event.id)
    assert nova.action_event_get_by_id(ctx, action.id, event.id) is None
    ctx.read_deleted = "yes"
    assert nova.action_event_get_by_id(ctx, action.id, event.id).id == event.id
    with pytest.raises(InvalidValue):
        nova.action_event_get_by_id(ctx, "one", event.id)

"""nova DB API: instance actions and their events (notes §3.5).

An action (reboot, resize, ...) is found by ``(instance_uuid, request_id)``; its
events by ``(action_id, event)``. None of these calls checks the context's rights
(nova did not); reads use the context's ``read_deleted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dblayer.core import InvalidQuery

from .. import exception, models
from ._base import api, create, fetch_all, first, model_query, parse_datetimes, update
from ._checks import clean_values, key_value, require_instance, require_keys

__all__ = [
    "action_event_finish",
    "action_event_get_by_id",
    "action_event_start",
    "action_events_get",
    "action_finish",
    "action_get_by_request_id",
    "action_start",
    "actions_get",
]

_TIMES = ("start_time", "finish_time")
# Keys nova's callers put in event values that are not event columns: the action's
# lookup keys, and the exception text pack_action_event_finish adds. nova dropped them.
_EVENT_EXTRA_KEYS = frozenset({"instance_uuid", "request_id", "message"})


def _action_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Checked instance_actions values (times parsed as nova did)."""
    return clean_values(models.InstanceAction, parse_datetimes(dict(values), _TIMES))


def _event_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Checked instance_actions_events values, without the action's lookup keys."""
    event = {k: v for k, v in values.items() if k not in _EVENT_EXTRA_KEYS}
    return clean_values(models.InstanceActionEvent, parse_datetimes(event, _TIMES))


def _find_action(context: Any, instance_uuid: Any, request_id: Any) -> Any:
    """The first action of the instance with ``request_id`` (oldest first), or None."""
    instance_uuid = key_value(models.InstanceAction, "instance_uuid", instance_uuid)
    request_id = key_value(models.InstanceAction, "request_id", request_id)
    stmt = (
        model_query(context, models.InstanceAction)
        .where(
            models.InstanceAction.instance_uuid == instance_uuid,
            models.InstanceAction.request_id == request_id,
        )
        .order_by(models.InstanceAction.id)
    )
    return first(stmt)


def _action_for(context: Any, function: str, values: Mapping[str, Any]) -> Any:
    """The action ``values`` names by instance_uuid and request_id; InstanceActionNotFound."""
    require_keys(function, values, "instance_uuid", "request_id")
    action = _find_action(context, values["instance_uuid"], values["request_id"])
    if action is None:
        raise exception.InstanceActionNotFound(
            request_id=values["request_id"], instance_uuid=values["instance_uuid"]
        )
    return action


def _newest_first(model: Any) -> tuple[Any, ...]:
    return (model.created_at.desc(), model.id.desc())


@api()
def action_start(context: Any, values: dict[str, Any]) -> Any:
    """Start an action for an instance."""
    require_keys("action_start", values)
    action = _action_values(values)
    require_instance(action.get("instance_uuid"))
    return create(models.InstanceAction, action)


@api()
def action_finish(context: Any, values: dict[str, Any]) -> Any:
    """Finish an action for an instance."""
    require_keys("action_finish", values, "instance_uuid", "request_id")
    changes = _action_values(values)
    action = _action_for(context, "action_finish", changes)
    return update(action, changes)


@api()
def action_get_by_request_id(context: Any, uuid: str, request_id: str) -> Any:
    """Get the action by request_id and given instance."""
    return _find_action(context, uuid, request_id)


@api()
def actions_get(context: Any, uuid: str) -> list[Any]:
    """Get all instance actions for the provided instance."""
    uuid = key_value(models.InstanceAction, "instance_uuid", uuid)
    stmt = (
        model_query(context, models.InstanceAction)
        .where(models.InstanceAction.instance_uuid == uuid)
        .order_by(*_newest_first(models.InstanceAction))
    )
    return fetch_all(stmt)


@api()
def action_event_start(context: Any, values: dict[str, Any]) -> Any:
    """Start an event on an instance action."""
    require_keys("action_event_start", values, "instance_uuid", "request_id")
    event = _event_values(values)
    action = _action_for(context, "action_event_start", values)
    event["action_id"] = action.id
    return create(models.InstanceActionEvent, event)


@api()
def action_event_finish(context: Any, values: dict[str, Any]) -> Any:
    """Finish an event on an instance action."""
    require_keys("action_event_finish", values, "instance_uuid", "request_id", "event", "result")
    result = values["result"]
    if not isinstance(result, str):
        raise InvalidQuery(
            f"action_event_finish: values['result'] must be a string, not {result!r}"
        )
    changes = _event_values(values)
    action = _action_for(context, "action_event_finish", values)
    stmt = (
        model_query(context, models.InstanceActionEvent)
        .where(
            models.InstanceActionEvent.action_id == action.id,
            models.InstanceActionEvent.event == values["event"],
        )
        .order_by(models.InstanceActionEvent.id)
    )
    event = first(stmt)
    if event is None:
        raise exception.InstanceActionEventNotFound(event=values["event"], action_id=action.id)
    changes.pop("action_id", None)  # the event stays on the action it was found under
    update(event, changes)
    if result.lower() == "error":
        update(action, {"message": "Error"})
    return event


@api()
def action_events_get(context: Any, action_id: int) -> list[Any]:
    """Get the events by action id."""
    action_id = key_value(models.InstanceActionEvent, "action_id", action_id)
    stmt = (
        model_query(context, models.InstanceActionEvent)
        .where(models.InstanceActionEvent.action_id == action_id)
        .order_by(*_newest_first(models.InstanceActionEvent))
    )
    return fetch_all(stmt)


@api()
def action_event_get_by_id(context: Any, action_id: int, event_id: int) -> Any:
    """Get an event of an action by its id, or None."""
    action_id = key_value(models.InstanceActionEvent, "action_id", action_id)
    event_id = key_value(models.InstanceActionEvent, "id", event_id)
    stmt = model_query(context, models.InstanceActionEvent).where(
        models.InstanceActionEvent.action_id == action_id,
        models.InstanceActionEvent.id == event_id,
    )
    return first(stmt)

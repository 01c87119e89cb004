"""Checks of values against their columns, made before any SQL is sent.

SQLite stores an over-long string, a 2**40 in an INTEGER column or the text '7' in
an integer column without complaint, where PostgreSQL and MariaDB refuse them (each
with its own error, sometimes only after part of a call has run). Checking values
against the model first gives one clear InvalidValue on every backend.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from dblayer.core import InvalidQuery, InvalidValue

from .. import exception
from ._base import check_columns, execute

_INT_RANGES = {
    sa.SmallInteger: 2**15,
    sa.BigInteger: 2**63,
    sa.Integer: 2**31,
}


def _base_type(column_type: Any) -> Any:
    """The SQLAlchemy type a column's (possibly decorated) type stores as."""
    while isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    return column_type


def _int_bound(column_type: Any) -> int:
    for kind, bound in _INT_RANGES.items():
        if isinstance(column_type, kind):
            return bound
    return 2**31


@functools.cache
def _column_facts(model: Any, key: str) -> tuple[Any, Any, str]:
    """Column ``key`` of ``model``, the type it stores as, and its name for messages (looked
    up once: clean_value runs for every value written)."""
    column = sa.inspect(model).columns[key]
    return column, _base_type(column.type), f"{model.__tablename__}.{key}"


def clean_value(model: Any, key: str, value: Any, *, lookup: bool = False) -> Any:
    """``value`` as column ``key`` of ``model`` stores it (0/1 become bools for a Boolean
    column); InvalidValue when the column cannot hold it the same way on every backend.

    ``lookup``: the value is compared with the column, not stored: None is always fine
    (IS NULL), and a string too long or an integer too large simply matches nothing.
    """
    column, kind, where = _column_facts(model, key)
    if value is None:
        if not lookup and not column.nullable and not column.primary_key:
            raise InvalidValue(f"{where} cannot be None")
        return value
    if isinstance(kind, sa.Boolean):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise InvalidValue(f"{where} takes True or False, not {value!r}")
    if isinstance(kind, sa.Integer):
        bound = 2**63 if lookup else _int_bound(kind)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidValue(f"{where} takes an integer, not {value!r}")
        if not -bound <= value < bound:
            raise InvalidValue(
                f"{where} takes an integer from {-bound} to {bound - 1}, not {value}"
            )
        return value
    if isinstance(kind, sa.Float):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidValue(f"{where} takes a number, not {value!r}")
        return value
    if isinstance(kind, sa.DateTime):
        if not isinstance(value, dt.datetime):
            raise InvalidValue(f"{where} takes a datetime, not {value!r}")
        return value
    if isinstance(kind, sa.Enum):
        if value not in kind.enums:
            raise InvalidValue(f"{where} takes one of {', '.join(kind.enums)}, not {value!r}")
        return value
    if isinstance(kind, sa.String):  # Text too
        if not isinstance(value, str):
            raise InvalidValue(f"{where} takes a string, not {value!r}")
        if not lookup and kind.length is not None and len(value) > kind.length:
            raise InvalidValue(f"{where} takes at most {kind.length} characters, got {len(value)}")
        return value
    return value


def key_value(model: Any, key: str, value: Any) -> Any:
    """``value`` checked for comparison with column ``key`` of ``model`` (InvalidValue when
    its type does not fit: PostgreSQL would refuse the comparison, SQLite find nothing)."""
    return clean_value(model, key, value, lookup=True)


def clean_values(model: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` checked against ``model``: unknown keys are InvalidQuery,
    values a column cannot hold InvalidValue (see ``clean_value``)."""
    check_columns(model, values)
    return {key: clean_value(model, key, value) for key, value in values.items()}


def require_keys(function: str, values: Mapping[str, Any], *keys: str) -> None:
    """InvalidQuery unless ``values`` is a dict holding every one of ``keys``."""
    if not isinstance(values, Mapping):
        raise InvalidQuery(f"{function}: values must be a dict, got {values!r}")
    missing = [key for key in keys if key not in values]
    if missing:
        raise InvalidQuery(f"{function}: values must give {', '.join(repr(k) for k in missing)}")


def require_instance(instance_uuid: Any, *, lock: bool = False) -> None:
    """InstanceNotFound unless an instance row (live or deleted) has ``instance_uuid``.

    Checked before inserting a child row, so a bad uuid is the same clear error on every
    backend instead of a foreign-key violation that leaves a PostgreSQL transaction aborted.
    ``lock`` holds the instance row (FOR UPDATE) until the unit of work ends, so that
    writers of the same instance's children take turns.
    """
    if instance_uuid is None:
        return
    from .. import models

    stmt = sa.select(models.Instance.id).where(models.Instance.uuid == instance_uuid).limit(1)
    if lock:
        stmt = stmt.with_for_update()
    if execute(stmt).first() is None:
        raise exception.InstanceNotFound(instance_id=instance_uuid)


INT32 = (-(2**31), 2**31 - 1)


def integer_id(value: Any) -> int | None:
    """``value`` (an int or its digits) as an int, None when no 32-bit id can match;
    InvalidID when it is not a number (what nova raised on PostgreSQL, here everywhere)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value)
    else:
        raise exception.InvalidID(id=value)
    return number if INT32[0] <= number <= INT32[1] else None

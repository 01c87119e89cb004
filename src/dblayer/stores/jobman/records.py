"""Preparing records to save: one generated function per record type.

It fills in every field of each record, runs the fields' ``default`` and ``auto_update``
hooks, checks and converts each value, and builds the row the database is sent (JSON
as its text, encoded once), in one pass: a bulk save spends its time here, and a loop
over field descriptions cost it half again as much as a hand-written one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from dblayer.core import InvalidValue
from dblayer.core.types import json_dumps_sorted

from .fields import INT_RANGE, KEY_LENGTH, Refused, json_pair_slowly, scan_json
from .utils import generate_timestamp


class Field(NamedTuple):
    """What the generated code needs of one field."""

    name: str
    kind: str  # TEXT, INTEGER, FLOAT, JSON or BLOB
    is_key: bool
    convert: Callable[[Any], Any]  # the value as the field stores it, else Refused
    default: Callable[[], Any] | None
    auto_update: Callable[..., Any] | None


Prepare = Callable[[Iterable[Any]], tuple[list[dict[str, Any]], list[tuple[Any, ...]]]]

# Per kind, when a value needs its converter (``c{i}``): the common values of each type
# are taken as they are, without a call.
_NEEDS_CONVERTING = {
    "TEXT": "type(v{i}) is not str and v{i} is not None",
    "INTEGER": "v{i} is not None and (type(v{i}) is not int or not lo <= v{i} <= hi)",
    "FLOAT": "v{i} is not None and (type(v{i}) is not float or not isfinite(v{i}))",
    "BLOB": "type(v{i}) is not bytes and v{i} is not None",
}
_KEY_TEXT_NEEDS_CONVERTING = "type(v{i}) is not str or len(v{i}) > key_length"


def _missing() -> None:
    raise Refused("a value (it is the primary key)")


def _field_source(i: int, field: Field) -> list[str]:
    lines = [f"v{i} = r[n{i}]"]
    if field.is_key:
        lines.append(f"if v{i} is None: missing()")
    if field.kind == "JSON":
        # json_pair(v), inline: this is half of a bulk save's time.
        lines += [
            f"if v{i} is not None:",
            "    try:",
            f"        text = json_dumps_sorted(v{i})",
            "    except InvalidValue:",
            f"        r[n{i}], v{i} = json_pair_slowly(v{i})",
            "    else:",
            f"        r[n{i}] = scan_json(text, 0)[0]",
            f"        v{i} = text",
        ]
        return lines
    test = _NEEDS_CONVERTING[field.kind]
    if field.is_key and field.kind == "TEXT":
        test = _KEY_TEXT_NEEDS_CONVERTING
    lines.append(f"if {test.format(i=i)}: v{i} = r[n{i}] = c{i}(v{i})")
    return lines


def record_preparer(
    fields: Sequence[Field],
    not_a_record: Callable[[Any], None],
    refusal: Callable[[dict[str, Any]], None],
) -> Prepare:
    """A function taking records (mappings) to (the records as stored, their rows).

    A record is a dict of every field (a missing one None, keys that are not fields
    left out); its row holds the same values in ``fields`` order, JSON as text.
    ``not_a_record(obj)`` raises for an item that is not a mapping; ``refusal(record)``
    raises the error naming the field whose value its converter refused.

    The text holds only the identifiers n0.., v0.., c0.., d0.., u0..: names and hooks
    are passed in as values.
    """
    namespace: dict[str, Any] = {
        "Mapping": Mapping,
        "Refused": Refused,
        "not_a_record": not_a_record,
        "refusal": refusal,
        "missing": _missing,
        "time": time,
        "InvalidValue": InvalidValue,
        "json_dumps_sorted": json_dumps_sorted,
        "json_pair_slowly": json_pair_slowly,
        "scan_json": scan_json,
        "isfinite": math.isfinite,
        "lo": INT_RANGE[0],
        "hi": INT_RANGE[1],
        "key_length": KEY_LENGTH,
    }
    for i, field in enumerate(fields):
        namespace[f"n{i}"] = field.name
        namespace[f"c{i}"] = field.convert
    hooks = []
    # Hooks run field by field in name order, as jobman ran them; each sees the record
    # (but the timestamp hook, which ignores it: that is time.time() written out).
    for i, field in sorted(enumerate(fields), key=lambda pair: pair[1].name):
        if field.default is generate_timestamp:
            hooks.append(f"if r[n{i}] is None: r[n{i}] = time.time()")
        elif field.default is not None:
            namespace[f"d{i}"] = field.default
            hooks.append(f"if r[n{i}] is None: r[n{i}] = d{i}()")
        if field.auto_update is not None:
            if field.auto_update is generate_timestamp:
                hooks.append(f"r[n{i}] = time.time()")
            else:
                namespace[f"u{i}"] = field.auto_update
                hooks.append(f"r[n{i}] = u{i}(record=r)")
    checks = [line for i, field in enumerate(fields) for line in _field_source(i, field)]
    source = (
        "def prepare(objs):\n"
        "    records = []\n"
        "    rows = []\n"
        "    add_record = records.append\n"
        "    add_row = rows.append\n"
        "    for obj in objs:\n"
        "        if type(obj) is not dict and not isinstance(obj, Mapping):\n"
        "            not_a_record(obj)\n"
        "        get = obj.get\n"
        f"        r = {{{', '.join(f'n{i}: get(n{i})' for i in range(len(fields)))}}}\n"
        + "".join(f"        {line}\n" for line in hooks)
        + "        try:\n"
        + "".join(f"            {line}\n" for line in checks)
        + "        except Refused:\n"
        "            refusal(r)\n"
        "            raise\n"
        "        add_record(r)\n"
        f"        add_row(({''.join(f'v{i}, ' for i in range(len(fields)))}))\n"
        "    return records, rows\n"
    )
    exec(source, namespace)  # noqa: S102 - generated from indices only, see above
    return namespace["prepare"]  # type: ignore[no-any-return]

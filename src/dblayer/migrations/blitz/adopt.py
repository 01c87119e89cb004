"""blitz's client database (seed 003), the SQLite file ``DatabaseClient`` kept, for
``migrations.adopt``.

Six tables with camelCase columns, INTEGER timestamps (ms) and length-less VARCHAR text.
SQLite let the original store what the wire brought: digit strings in INTEGER columns
(stored as numbers by the column's affinity) and the text ``"None"`` as a running
session's stop time. Adopting keeps every row and makes those values what dblayer's
columns hold: integers, NULL for ``"None"``, text for values; anything else is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dblayer.core.migrations import Original, OriginalTable
from dblayer.stores.blitz.models import as_text


def integer(value: Any) -> int | None:
    """An INTEGER column's value as blitz wrote it: a number, a digit string, or "None"."""
    if value is None or value == "None":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)
        number = float(text)  # "1396000000000.0"; anything else raises ValueError
        if number.is_integer():
            return int(number)
    raise ValueError("not an integer")


def _table(name: str, columns: Mapping[str, str]) -> OriginalTable:
    convert = {
        column: integer if kind == "integer" and column != "id" else as_text
        for column, kind in columns.items()
        if kind in ("integer", "text") and column != "id"
    }
    return OriginalTable(name, {"id": "integer", **columns}, convert=convert)


def original(dialect: str, params: Mapping[str, Any]) -> Original:
    """blitz's client tables as ``create_tables`` made them."""
    return Original(
        "blitz's client database (tables category, reading, session, config, cache, notifications)",
        (
            _table("category", {"variableName": "text"}),
            _table(
                "reading",
                {
                    "sessionId": "integer",
                    "timeLogged": "integer",
                    "categoryId": "integer",
                    "value": "text",
                },
            ),
            _table(
                "session",
                {
                    "ref_id": "integer",
                    "available": "boolean",
                    "timeStarted": "integer",
                    "timeStopped": "integer",
                    "numberOfReadings": "integer",
                },
            ),
            _table("config", {"key": "text", "value": "text"}),
            _table("cache", {"timeLogged": "integer", "categoryId": "integer", "value": "text"}),
            _table(
                "notifications",
                {"timeLogged": "integer", "severity": "integer", "description": "text"},
            ),
        ),
    )

"""blitz.data.fixtures: the configuration every client starts with, and test data.

Test rows refer to categories by position (``categoryId`` 1 is the first of
CATEGORY_FIXTURES); ``load_fixtures`` maps them onto the ids the database gave,
since after deletes a server's ids no longer start at 1. Times are offsets in ms
before the moment the fixtures are loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CONFIG_FIXTURES: list[dict[str, str]] = [
    {"key": "loggerPort", "value": "8989"},
    {"key": "loggerIp", "value": "192.168.1.79"},
    {"key": "clientPort", "value": "8988"},
    {"key": "clientIp", "value": "192.168.1.79"},
    {"key": "sampleRate", "value": "50"},
    {"key": "clientRefreshRate", "value": "2"},
]

CATEGORY_FIXTURES: list[dict[str, str]] = [
    {"variableName": "adc_channel_one"},
    {"variableName": "adc_channel_two"},
    {"variableName": "adc_channel_three"},
]

# (ms before now, category position, value)
_VALUES = [
    (5, 1, "3.75"),
    (4, 1, "9.12"),
    (3, 1, "5.2"),
    (2, 2, "4.3"),
    (1, 2, "1.7"),
    (0, 2, "2.4"),
]

READING_FIXTURES: list[dict[str, Any]] = [
    {"sessionId": 1, "timeOffset": ago, "categoryId": cat, "value": value}
    for ago, cat, value in _VALUES
]

CACHE_FIXTURES: list[dict[str, Any]] = [
    {"timeOffset": ago, "categoryId": cat, "value": value} for ago, cat, value in _VALUES
]

SESSION_FIXTURES: list[dict[str, Any]] = [
    {"ref_id": 1, "available": True, "startOffset": 5, "stopOffset": 0, "numberOfReadings": 6},
    {"ref_id": 2, "available": False, "startOffset": 0, "stopOffset": None, "numberOfReadings": 0},
]


def resolve(
    fixtures: Iterable[Mapping[str, Any]], now: int, category_ids: list[int]
) -> list[dict[str, Any]]:
    """Fixture rows as column values: offsets become timestamps, category positions ids."""
    rows = []
    for fixture in fixtures:
        row = dict(fixture)
        if "timeOffset" in row:
            row["timeLogged"] = now - row.pop("timeOffset")
        for offset, column in (("startOffset", "timeStarted"), ("stopOffset", "timeStopped")):
            if offset in row:
                ago = row.pop(offset)
                row[column] = None if ago is None else now - ago
        if "categoryId" in row:
            row["categoryId"] = category_ids[row["categoryId"] - 1]
        rows.append(row)
    return rows


def generate_objects(model: type, fixtures: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Instances of ``model`` built from column-value dicts (as the original's helper)."""
    return [model(**fixture) for fixture in fixtures]

"""TopChef's own database (seed 001), as its ``DatabaseSchema`` created it, for
``migrations.adopt``.

``services``, ``job_sets`` and ``jobs``: UUIDs as CHAR(32) hex (PostgreSQL: its UUID
type), JSON as length-less VARCHAR on SQLite and as the native JSON type on PostgreSQL
and MariaDB/MySQL, ``status`` as the member names (VARCHAR(10), a ``jobstatus`` enum
type on PostgreSQL, an inline ENUM on MariaDB/MySQL).

On the native JSON types the original encoded every value twice (the column holds a JSON
string whose text is the document): adopting decodes it once more, so the column holds
the document itself, as dblayer writes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dblayer.core.migrations import Original, OriginalTable

# Dialects on which the original's JSON type was a native JSON column (double-encoded).
_NATIVE_JSON = ("postgresql", "mysql", "mariadb")


def _decode(text: Any) -> Any:
    """A JSON value the original stored as text."""
    return None if text is None else json.loads(text)


def _decode_twice(text: Any) -> Any:
    """A JSON value the original stored as a JSON string holding its text."""
    value = _decode(text)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:  # a plain string value, encoded once
            return value
    return value


def original(dialect: str, params: Mapping[str, Any]) -> Original:
    """TopChef's tables as its schema created them on ``dialect``."""
    decode = _decode_twice if dialect in _NATIVE_JSON else _decode
    services_json = ("job_registration_schema", "job_result_schema")
    jobs_json = ("parameters", "results")
    return Original(
        "TopChef's database (tables services, jobs, job_sets)",
        (
            OriginalTable(
                "services",
                {
                    "service_id": "uuid",
                    "name": "text",
                    "description": "text",
                    "last_checked_in": "datetime",
                    "heartbeat_timeout_seconds": "integer",
                    "is_service_available": "boolean",
                    "job_registration_schema": "json",
                    "job_result_schema": "json",
                },
                convert=dict.fromkeys(services_json, decode),
                as_text=services_json,
            ),
            OriginalTable("job_sets", {"job_set_id": "uuid", "description": "text"}),
            OriginalTable(
                "jobs",
                {
                    "job_id": "uuid",
                    "service_id": "uuid",
                    "date_submitted": "datetime",
                    "status": "enum",
                    "parameters": "json",
                    "results": "json",
                    "job_set_id": "uuid",
                },
                convert=dict.fromkeys(jobs_json, decode),
                as_text=jobs_json,
            ),
        ),
    )

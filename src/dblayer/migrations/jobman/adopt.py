"""jobman's own tables (seed 002), as its ``SqliteDAO`` created them, for
``migrations.adopt``.

A DAO's tables are ``<prefix>job`` and ``<prefix>kvp`` (JobMan: ``jobman_``), one column
per schema field, declared TEXT, INTEGER or FLOAT, JSON fields as TEXT holding
``json.dumps`` text (``null`` for None). Adopting makes a JSON field a JSON column (NULL
for ``null`` or an empty text; objects with their keys sorted, as dblayer stores them).
The job schema is the DAO's (``dao``: jobman, engine or worker) plus ``extra_job_fields``;
an extra field an older table never got (jobman did not alter existing tables) is added,
NULL for the existing rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dblayer.core.migrations import Original, OriginalTable

_TIMESTAMPS = {"created": "FLOAT", "modified": "FLOAT"}
# The original's job schemas, field by field, per DAO (``key`` is the TEXT primary key).
JOB_FIELDS: dict[str, dict[str, str]] = {
    "jobman": {
        **_TIMESTAMPS,
        "key": "TEXT",
        "job_spec": "JSON",
        "status": "TEXT",
        "batchable": "INTEGER",
        "worker_key": "TEXT",
        "worker_meta": "JSON",
        "errors": "JSON",
        "source_key": "TEXT",
        "source_meta": "JSON",
        "source_tag": "TEXT",
        "purgeable": "INTEGER",
    },
    "engine": {**_TIMESTAMPS, "key": "TEXT", "status": "TEXT"},
    "worker": {
        **_TIMESTAMPS,
        "key": "TEXT",
        "status": "TEXT",
        "batchable": "INTEGER",
        "batch_meta": "JSON",
        "is_batch": "INTEGER",
        "parent_batch_key": "TEXT",
        "engine_key": "TEXT",
        "engine_meta": "JSON",
    },
}
KVP_FIELDS = {"key": "TEXT", "value": "JSON", **_TIMESTAMPS}
# A field type as the original declared its column -> the kind adopt recognises.
_KINDS = {"TEXT": "text", "JSON": "text", "INTEGER": "integer", "FLOAT": "float", "BLOB": "blob"}
_ALIASES = {"INT": "INTEGER", "REAL": "FLOAT", "DOUBLE": "FLOAT"}


def _sorted_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(sorted(pairs, key=lambda pair: pair[0]))


_decode = json.JSONDecoder(object_pairs_hook=_sorted_object).decode


def json_text(value: Any) -> Any:
    """A JSON field's text as the original stored it -> the value (None for null or '')."""
    if isinstance(value, bytes):
        value = value.decode()
    if value is None or value == "" or value == "null":
        return None
    if not isinstance(value, str):  # a number SQLite's affinity kept as one
        return value
    return _decode(value)


def _type(spec: Any) -> str:
    name = spec.get("type") if isinstance(spec, Mapping) else None
    name = name.upper() if isinstance(name, str) else ""
    return _ALIASES.get(name, name)


def _table(name: str, fields: Mapping[str, str], optional: tuple[str, ...]) -> OriginalTable:
    json_fields = [f for f, kind in fields.items() if kind == "JSON"]
    return OriginalTable(
        name,
        {f: _KINDS.get(kind, "text") for f, kind in fields.items()},
        optional=optional,
        convert=dict.fromkeys(json_fields, json_text),
    )


def original(dialect: str, params: Mapping[str, Any]) -> Original:
    """The tables of the DAO ``params`` describe, as the original created them."""
    from dblayer.migrations import jobman_options

    dao, prefix, extra = jobman_options(params)
    fields = {**JOB_FIELDS[dao], **{f: _type(spec) for f, spec in extra.items()}}
    prefix = prefix or ""
    return Original(
        f"jobman's tables {prefix}job and {prefix}kvp ({dao} DAO)",
        (
            _table(f"{prefix}job", fields, tuple(f for f in extra if f not in JOB_FIELDS[dao])),
            _table(f"{prefix}kvp", KVP_FIELDS, ()),
        ),
    )

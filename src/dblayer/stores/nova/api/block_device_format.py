"""Block device mappings in nova's two formats, and the conversion from the old one.

The legacy (EC2-style) format says what a device is through ``virtual_name``
(``swap``, ``ephemeralN``) or through which id it carries (``snapshot_id``,
``volume_id``, ``no_device``). The new format says it with ``source_type`` /
``destination_type`` / ``guest_format``. The DB API accepts legacy values by
default and stores the new format; ``prepare`` is what every write goes through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dblayer.core import InvalidQuery

from .. import exception

# Keys of the legacy format, of the new format, and the DB row's own.
LEGACY_FIELDS = frozenset(
    {
        "device_name",
        "delete_on_termination",
        "virtual_name",
        "snapshot_id",
        "volume_id",
        "volume_size",
        "no_device",
        "connection_info",
    }
)
NEW_FIELDS = frozenset(
    {
        "source_type",
        "destination_type",
        "guest_format",
        "device_type",
        "disk_bus",
        "boot_index",
        "device_name",
        "delete_on_termination",
        "snapshot_id",
        "volume_id",
        "volume_size",
        "image_id",
        "no_device",
        "connection_info",
    }
)
DB_FIELDS = frozenset({"id", "instance_uuid", "created_at", "updated_at", "deleted_at", "deleted"})

# What a legacy mapping cannot tell: left out of a converted dict, so an update
# keeps the stored values instead of overwriting them with None.
NOT_COMPUTABLE = frozenset({"boot_index", "disk_bus", "guest_format", "device_type"})

# nova's ``default_ephemeral_format`` option (default: none, the virt driver decides).
DEFAULT_EPHEMERAL_FORMAT: str | None = None

_EPHEMERAL = re.compile(r"^ephemeral(\d|[1-9]\d+)$")
_TRUE_STRINGS = frozenset({"1", "t", "true", "on", "y", "yes"})
_DEVICE_NAME_MAX = 255


def is_ephemeral(name: Any) -> bool:
    """Whether ``name`` is a legacy ephemeral disk name (``ephemeral0``, ``ephemeral12``)."""
    return isinstance(name, str) and _EPHEMERAL.match(name) is not None


def is_swap_or_ephemeral(name: Any) -> bool:
    """Whether the legacy ``virtual_name`` is ``swap`` or an ephemeral disk."""
    return name == "swap" or is_ephemeral(name)


def is_swap(bdm: Mapping[str, Any]) -> bool:
    """Whether a new-format mapping (dict or row) is a swap disk: blank, local, swap."""
    return (
        bdm.get("source_type") == "blank"
        and bdm.get("destination_type") == "local"
        and bdm.get("guest_format") == "swap"
    )


def is_safe_for_update(values: Mapping[str, Any]) -> bool:
    """Whether every key of ``values`` is a new-format or DB field: then the values mean
    the same in both formats and go to an UPDATE unconverted."""
    return set(values) <= NEW_FIELDS | DB_FIELDS


def bool_from_string(value: Any) -> bool:
    """nova's lenient truth test: bools as they are, else '1', 't', 'true', 'on', 'y',
    'yes' (any case) are True and everything else False."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE_STRINGS


def prepend_dev(name: str) -> str:
    """``name`` with exactly one leading ``/dev/``."""
    return "/dev/" + (name[len("/dev/") :] if name.startswith("/dev/") else name)


def _invalid(details: str) -> exception.InvalidBDMFormat:
    return exception.InvalidBDMFormat(details=details)


def _validate_new(bdm: dict[str, Any]) -> None:
    """Check (and normalise in place) the fields of a converted mapping, as nova's
    BlockDeviceDict did; a mapping with ``no_device`` set is taken as it is."""
    if bdm.get("no_device"):
        return
    if "delete_on_termination" in bdm:
        bdm["delete_on_termination"] = bool_from_string(bdm["delete_on_termination"])
    name = bdm.get("device_name")
    if name is not None:
        if not isinstance(name, str) or not 1 <= len(name) <= _DEVICE_NAME_MAX:
            raise _invalid("Device name empty or too long.")
        if " " in name:
            raise _invalid("Device name contains spaces.")
    size = bdm.get("volume_size")
    if size:
        try:
            size = int(str(size))
        except ValueError:
            raise _invalid("Invalid volume_size.") from None
        if size < 0:
            raise _invalid("Invalid volume_size.")
        bdm["volume_size"] = size


def from_legacy(values: Mapping[str, Any]) -> dict[str, Any]:
    """The new-format dict for legacy ``values`` (InvalidBDMFormat when it cannot tell what
    the device is, or a value is malformed).

    Keys that are neither shared by both formats nor DB fields (``virtual_name``, unknown
    keys) are dropped; every new-format field the legacy format cannot carry is None,
    except those in NOT_COMPUTABLE, which are absent unless the conversion sets them.
    """
    keep = (LEGACY_FIELDS & NEW_FIELDS) | DB_FIELDS
    bdm = {key: value for key, value in values.items() if key in keep}
    virtual_name = values.get("virtual_name")
    if virtual_name is not None and not isinstance(virtual_name, str):
        raise _invalid(f"virtual_name must be a string, not {virtual_name!r}.")
    if is_swap_or_ephemeral(virtual_name):
        bdm.update(source_type="blank", destination_type="local", delete_on_termination=True)
        bdm["guest_format"] = "swap" if virtual_name == "swap" else DEFAULT_EPHEMERAL_FORMAT
    elif values.get("snapshot_id"):
        bdm.update(source_type="snapshot", destination_type="volume")
    elif values.get("volume_id"):
        bdm.update(source_type="volume", destination_type="volume")
    elif values.get("no_device"):
        pass  # kept as it is: the device is suppressed
    else:
        raise _invalid("Unrecognized legacy format.")
    _validate_new(bdm)
    if bdm.get("device_name"):
        bdm["device_name"] = prepend_dev(bdm["device_name"])
    converted: dict[str, Any] = dict.fromkeys(NEW_FIELDS - NOT_COMPUTABLE)
    converted.update(bdm)
    return converted


def prepare(values: Any, legacy: bool, *, allow_updates: bool = False) -> dict[str, Any]:
    """The values a BDM write stores: a copy of ``values`` without an empty-string
    ``volume_size``, converted from the legacy format when ``legacy`` (unless
    ``allow_updates`` and the keys are already a safe new-format subset)."""
    if not isinstance(values, Mapping):
        raise InvalidQuery(f"values must be a dict of block device mapping fields, got {values!r}")
    values = dict(values)
    if values.get("volume_size") == "":
        del values["volume_size"]
    if not legacy or (allow_updates and is_safe_for_update(values)):
        return values
    return from_legacy(values)

"""The field types of a jobman record: the column each makes and how a value is checked.

Types (any case): TEXT (VARCHAR(255), compared byte for byte, when it is the primary
key, so that MariaDB can index it), INTEGER (64-bit), FLOAT (double precision), JSON
(the core's portable JSON type) and BLOB. A converter returns a value as its field
stores it, or raises ``Refused`` saying what the field takes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from dblayer.core import JSON, ExactString, InvalidValue
from dblayer.core.types import json_dumps, json_dumps_sorted

KEY_LENGTH = 255
INT_RANGE = (-(2**63), 2**63 - 1)


class Refused(Exception):
    """A value does not fit its field; the message says what the field takes."""


def to_text(value: Any) -> str:
    """A string as a TEXT field stores it (a str subclass as a plain str)."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise Refused("a string")


def to_key_text(value: Any) -> str:
    """A string as a TEXT primary key stores it: at most KEY_LENGTH characters."""
    if type(value) is not str:
        value = to_text(value)
    if len(value) > KEY_LENGTH:
        raise Refused(f"a string of at most {KEY_LENGTH} characters")
    return value


def to_integer(value: Any) -> int:
    """A 64-bit int (a bool as 0 or 1)."""
    if type(value) is not int:
        if not isinstance(value, int):
            raise Refused("an integer")
        value = int(value)
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise Refused("a 64-bit integer")
    return value


def to_float(value: Any) -> float:
    """A finite float (an int as a float)."""
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise Refused("a finite number") from None
        if math.isfinite(number):
            return number
    raise Refused("a finite number")


def to_blob(value: Any) -> bytes:
    """Bytes from any bytes-like value."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise Refused("bytes")


def _json_key(key: Any) -> str:
    # The names json.dumps gives non-string keys.
    if isinstance(key, str):
        return str.__str__(key)
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    if isinstance(key, int):
        return str(int(key))
    if isinstance(key, float) and math.isfinite(key):
        return repr(float(key))
    raise Refused("JSON (object keys must be strings, numbers, booleans or None)")


# Values JSON gives back as they are (a float only when finite: checked where it is met).
_SCALARS = frozenset((str, int, bool, type(None)))
_STR_ONLY = frozenset((str,))


def _json_walk(value: Any) -> Any:
    """``value`` as JSON will give it back, with object keys sorted as strings: the slow
    path, for what the C encoder refuses (keys of kinds that do not sort together) and
    to say why a value is not JSON."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict and _STR_ONLY.issuperset(map(type, value)):
        return {k: v if type(v := value[k]) in _SCALARS else _json_walk(v) for k in sorted(value)}
    if kind is list:
        return [v if type(v) in _SCALARS else _json_walk(v) for v in value]
    if isinstance(value, Mapping):
        pairs = {_json_key(k): _json_walk(v) for k, v in value.items()}
        return {k: pairs[k] for k in sorted(pairs)}
    if isinstance(value, (list, tuple)):
        return [_json_walk(v) for v in value]
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        raise Refused("JSON (NaN and Infinity are not JSON)")
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str.__str__(value)
    raise Refused(f"JSON (dict, list, string, number, bool or None; not {kind.__name__})")


# The C scanner: the encoder's text has no surrounding whitespace for json.loads to strip.
scan_json = json.JSONDecoder().scan_once


def json_pair(value: Any) -> tuple[Any, str]:
    """(``value`` as JSON gives it back, its JSON text with object keys sorted).

    One C encoding and one C decoding, where walking the value in Python took twice as
    long; the value returned is the text decoded, so the two always agree.
    """
    try:
        text = json_dumps_sorted(value)
    except InvalidValue:
        return json_pair_slowly(value)
    return scan_json(text, 0)[0], text


def json_pair_slowly(value: Any) -> tuple[Any, str]:
    """``json_pair`` of a value the C encoder refuses: one that is not JSON (Refused says
    why), or a dict whose keys do not sort together (they are sorted as strings)."""
    try:
        value = _json_walk(value)
    except RecursionError:
        raise Refused("JSON nested less deeply") from None
    return value, json_dumps(value)


def to_json(value: Any) -> Any:
    """``value`` as JSON gives it back, keys sorted (None stays None)."""
    return None if value is None else json_pair(value)[0]


def _key_type() -> Any:
    # A key compares byte for byte on every backend (MariaDB's default collation would
    # make "a" and "A" one key, and an upsert of one overwrite the other).
    return ExactString(KEY_LENGTH)


def _integer_type() -> Any:
    # 64-bit like SQLite's INTEGER; SQLite itself keeps its own INTEGER.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Double(sa.TypeDecorator):  # type: ignore[type-arg]
    """FLOAT(53): double precision, so a time.time() timestamp comes back exactly as saved.

    Values convert nothing either way: writes get floats already (``to_float`` checked
    them), and every driver returns a double as a float. (Float's own result processor
    on psycopg needs the column's type code, which core's prepared queries do not pass:
    it raises "Unknown PG numeric type".)
    """

    impl = sa.Float
    cache_ok = True

    def bind_processor(self, dialect: Any) -> None:
        return None

    def result_processor(self, dialect: Any, coltype: Any) -> None:
        return None


def _float_type() -> Any:
    return Double(53)


# type name -> (column type of a plain field, column type of a primary key, converter)
TYPES: dict[str, tuple[Callable[[], Any], Callable[[], Any], Callable[[Any], Any]]] = {
    "TEXT": (sa.Text, _key_type, to_text),
    "INTEGER": (_integer_type, _integer_type, to_integer),
    "FLOAT": (_float_type, _float_type, to_float),
    "JSON": (JSON, JSON, to_json),
    "BLOB": (sa.LargeBinary, sa.LargeBinary, to_blob),
}
ALIASES = {"INT": "INTEGER", "REAL": "FLOAT", "DOUBLE": "FLOAT"}

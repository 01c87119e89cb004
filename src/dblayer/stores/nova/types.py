"""Column types of nova's models: long text, IP addresses and CIDRs.

IP addresses and CIDRs are plain strings on every backend (not PostgreSQL INET),
so equality, LIKE, ordering and malformed values behave the same everywhere.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from dblayer.core.types import long_text

# Longest spellings: a full IPv6 address (39 characters), plus "/128" for a CIDR.
IP_LENGTH = 39
CIDR_LENGTH = 43


def MediumText() -> TypeEngine[Any]:  # noqa: N802 - nova's name for the type
    """Text up to 16 MB: MEDIUMTEXT on MariaDB/MySQL, TEXT elsewhere."""
    return long_text()


def _as_text(value: Any) -> Any:
    """ipaddress objects become their string form; anything else is left alone."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return str(value)
    return value


def shorten_ip(value: Any) -> Any:
    """An IPv6 address in its compressed form; IPv4 and unparseable strings as given."""
    value = _as_text(value)
    if not isinstance(value, str):
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return value
    return address.compressed if address.version == 6 else value


def shorten_cidr(value: Any) -> Any:
    """An IPv6 CIDR (or address) as its compressed network; IPv4 and unparseable as given."""
    value = _as_text(value)
    if not isinstance(value, str):
        return value
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return value
    return str(network) if network.version == 6 else value


def network_form(value: Any) -> Any:
    """A CIDR read back as its network ('10.0.0.5/24' -> '10.0.0.0/24', '10.0.0.1' ->
    '10.0.0.1/32'); None and unparseable values as stored."""
    if not isinstance(value, str):
        return value
    return _network_form(value)


@functools.lru_cache(maxsize=4096)
def _network_form(value: str) -> str:
    # Parsing costs about 20 µs and rules repeat the same few CIDRs on every read.
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


class IPAddress(TypeDecorator):
    """An IPv4 or IPv6 address stored as VARCHAR(39); IPv6 is stored compressed."""

    impl = sa.String
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(IP_LENGTH)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return shorten_ip(value)


class CIDR(TypeDecorator):
    """An IPv4 or IPv6 network stored as VARCHAR(43); IPv6 is stored compressed and
    every value reads back in network form."""

    impl = sa.String
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(CIDR_LENGTH)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return shorten_cidr(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return network_form(value)

"""nova's DB API (seed 004, ``nova.db.api``): every documented function, and NovaDBAPI.

Each function takes a RequestContext first and runs in one unit of work on the
database chosen by ``configure`` (see ``facade``); the modules group them by area.
"""

from __future__ import annotations

import importlib
from typing import Any

from dblayer.core import Database

from ..facade import bound_to, configure, create_schema, get_database
from ._base import MAX_INT

# The modules, one per area of nova's API.
_MODULES = tuple(
    importlib.import_module(f".{name}", __name__)
    for name in (
        "actions",
        "agent_builds",
        "aggregates",
        "archive",
        "block_devices",
        "cells",
        "certificates",
        "compute_nodes",
        "consoles",
        "dns_domains",
        "ec2",
        "fixed_ips",
        "flavors",
        "floating_ips",
        "instance_groups",
        "instance_lists",
        "instances",
        "key_pairs",
        "migrations",
        "networks",
        "pci_devices",
        "provider_fw_rules",
        "quotas",
        "security_groups",
        "services",
        "task_log",
        "usage_caches",
        "virtual_interfaces",
    )
)

# Every documented function, by name, and each one a name of this package (as nova's were).
FUNCTIONS: dict[str, Any] = {
    name: getattr(module, name) for module in _MODULES for name in module.__all__
}
globals().update(FUNCTIONS)


class NovaDBAPI:
    """nova's DB API as an object: its methods are the module's functions.

    Built with no arguments it works on the configured database, like nova's; given a
    ``url`` or a ``database`` it works on that one, whatever is configured.
    """

    def __init__(
        self,
        url: str | None = None,
        reader_url: str | None = None,
        *,
        database: Database | None = None,
    ) -> None:
        """Bind to ``database`` or a new Database for ``url``; neither: the configured one."""
        if database is None and url is not None:
            database = Database(url, reader_url=reader_url)
            create_schema(database)
        self.database = database


def _method(name: str, function: Any) -> Any:
    def method(self: NovaDBAPI, *args: Any, **kwargs: Any) -> Any:
        if self.database is None:
            return function(*args, **kwargs)
        with bound_to(self.database):
            return function(*args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"NovaDBAPI.{name}"
    method.__doc__ = function.__doc__
    return method


for _name, _function in FUNCTIONS.items():
    setattr(NovaDBAPI, _name, _method(_name, _function))

__all__ = ["FUNCTIONS", "MAX_INT", "NovaDBAPI", "configure", "get_database", *FUNCTIONS]

"""OpenStack nova's database API (seed 004, ``nova.db.api``) on dblayer's core.

Every documented function, re-exported here from ``dblayer.stores.nova.api``, takes
a ``RequestContext`` first. ``configure(url, reader_url)`` picks the database
(default: ``DBLAYER_URL``, else in-memory SQLite); ``NovaDBAPI`` offers the same
functions as methods.
"""

from . import exception
from .api import *  # noqa: F403
from .api import FUNCTIONS, MAX_INT, NovaDBAPI, configure, get_database
from .context import RequestContext, get_admin_context

__all__ = [
    "FUNCTIONS",
    "MAX_INT",
    "NovaDBAPI",
    "RequestContext",
    "configure",
    "exception",
    "get_admin_context",
    "get_database",
    *FUNCTIONS,
]

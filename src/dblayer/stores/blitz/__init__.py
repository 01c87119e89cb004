"""blitz's database layer (seed 003, ``blitz.data.database``) on dblayer's core.

``DatabaseClient`` keeps the desktop client's readings, sessions, config, categories,
cache and notifications on any SQL backend; ``DatabaseServer`` keeps the logger's live
sessions on Redis; ``DatabaseClient.sync_from_server`` copies the second into the first.
"""

from .client import CACHE_LIMIT, DatabaseClient, FindResult, database_url
from .fixtures import (
    CACHE_FIXTURES,
    CATEGORY_FIXTURES,
    CONFIG_FIXTURES,
    READING_FIXTURES,
    SESSION_FIXTURES,
    generate_objects,
)
from .models import (
    MODELS,
    BlitzBase,
    Cache,
    Category,
    Config,
    Notification,
    Reading,
    Session,
    blitz_timestamp,
)
from .server import DatabaseServer, ServerSession

__all__ = [
    "CACHE_FIXTURES",
    "CACHE_LIMIT",
    "CATEGORY_FIXTURES",
    "CONFIG_FIXTURES",
    "MODELS",
    "READING_FIXTURES",
    "SESSION_FIXTURES",
    "BlitzBase",
    "Cache",
    "Category",
    "Config",
    "DatabaseClient",
    "DatabaseServer",
    "FindResult",
    "Notification",
    "Reading",
    "ServerSession",
    "Session",
    "blitz_timestamp",
    "database_url",
    "generate_objects",
]

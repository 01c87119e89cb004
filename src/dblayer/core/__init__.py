"""dblayer's core: the engine room every store builds on. It never imports a store."""

from .archive import archive_deleted_rows, archive_table, create_shadow_tables, purge_shadow_tables
from .claims import claim
from .conditions import Constraint, conditional_update, constraint, equal_any, not_equal
from .database import Database, DialectFacts, RetryPolicy, url_for_path
from .errors import (
    CompareAndSetFailed,
    ConflictError,
    ConstraintNotMet,
    DatabaseError,
    DBConnectionError,
    DBLayerError,
    DeadlockError,
    DuplicateEntry,
    ForeignKeyViolation,
    InvalidQuery,
    InvalidValue,
    LockTimeout,
    MarkerNotFound,
    NotFound,
    TransientError,
    translate,
)
from .kv import ABSENT, KeyValueStore, canonical_json, kv_table
from .models import (
    Base,
    DictMixin,
    SoftDeleteMixin,
    TimestampMixin,
    live,
    new_metadata,
    soft_delete,
)
from .pagination import InvalidSortKey, SortKey, paginate, sort_keys
from .prepared import PreparedQuery
from .query import compile_query, equality, fetch_query, select_query, where_query
from .row_objects import RowObjects
from .types import JSON, UUID, ExactString, UTCDateTime, utcnow
from .upsert import insert_ignore, insert_many, upsert

__all__ = [
    "ABSENT",
    "Base",
    "CompareAndSetFailed",
    "ConflictError",
    "Constraint",
    "ConstraintNotMet",
    "DBConnectionError",
    "DBLayerError",
    "Database",
    "DatabaseError",
    "DeadlockError",
    "DialectFacts",
    "DictMixin",
    "DuplicateEntry",
    "ExactString",
    "ForeignKeyViolation",
    "InvalidQuery",
    "InvalidSortKey",
    "InvalidValue",
    "JSON",
    "KeyValueStore",
    "LockTimeout",
    "MarkerNotFound",
    "NotFound",
    "PreparedQuery",
    "RetryPolicy",
    "RowObjects",
    "SoftDeleteMixin",
    "SortKey",
    "TimestampMixin",
    "TransientError",
    "UTCDateTime",
    "UUID",
    "archive_deleted_rows",
    "archive_table",
    "canonical_json",
    "claim",
    "compile_query",
    "conditional_update",
    "constraint",
    "create_shadow_tables",
    "equal_any",
    "equality",
    "fetch_query",
    "insert_ignore",
    "insert_many",
    "kv_table",
    "live",
    "new_metadata",
    "not_equal",
    "paginate",
    "purge_shadow_tables",
    "select_query",
    "soft_delete",
    "sort_keys",
    "translate",
    "upsert",
    "url_for_path",
    "utcnow",
    "where_query",
]

"""nova DB API: key pairs (notes §2.21, §3.17).

A key pair's name is unique per user among live rows (``uniq_key_pairs0user_id0name0deleted``).
Reading, listing, counting and destroying check ``authorize_user_context`` (a user
context may only name its own user); creating does not, as in nova.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dblayer.core import DuplicateEntry

from .. import exception
from ..context import authorize_user_context
from ..models import KeyPair
from ._base import (
    USER,
    api,
    create,
    execute,
    fetch_all,
    first,
    model_query,
    savepoint,
    soft_delete_where,
)
from ._checks import clean_values, key_value, require_keys

__all__ = [
    "key_pair_count_by_user",
    "key_pair_create",
    "key_pair_destroy",
    "key_pair_get",
    "key_pair_get_all_by_user",
]


def _owner(context: Any, user_id: Any) -> Any:
    """``user_id`` after the user check (Forbidden for another user's context)."""
    authorize_user_context(context, user_id)
    return key_value(KeyPair, "user_id", user_id)


@api(USER)
def key_pair_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a key_pair from the values dictionary."""
    require_keys("key_pair_create", values)
    pair = clean_values(KeyPair, values)
    try:
        # A savepoint: a refused duplicate leaves an enclosing transaction usable.
        with savepoint():
            return create(KeyPair, pair)
    except DuplicateEntry:
        raise exception.KeyPairExists(key_name=pair.get("name")) from None


@api(USER)
def key_pair_destroy(context: Any, user_id: str, name: str) -> None:
    """Destroy the key_pair or raise if it does not exist."""
    user_id = _owner(context, user_id)
    name = key_value(KeyPair, "name", name)
    table = KeyPair.__table__
    if not soft_delete_where(KeyPair, table.c.user_id == user_id, table.c.name == name):
        raise exception.KeypairNotFound(user_id=user_id, name=name)


@api(USER)
def key_pair_get(context: Any, user_id: str, name: str) -> Any:
    """Get a key_pair or raise if it does not exist."""
    user_id = _owner(context, user_id)
    name = key_value(KeyPair, "name", name)
    stmt = model_query(context, KeyPair).where(KeyPair.user_id == user_id, KeyPair.name == name)
    # With deleted rows visible, the live pair (deleted = 0) comes before deleted ones.
    row = first(stmt.order_by(KeyPair.deleted, KeyPair.id))
    if row is None:
        raise exception.KeypairNotFound(user_id=user_id, name=name)
    return row


@api(USER)
def key_pair_get_all_by_user(context: Any, user_id: str) -> list[Any]:
    """Get all key_pairs by user."""
    user_id = _owner(context, user_id)
    stmt = model_query(context, KeyPair, read_deleted="no").where(KeyPair.user_id == user_id)
    return fetch_all(stmt.order_by(KeyPair.id))


@api()
def key_pair_count_by_user(context: Any, user_id: str) -> int:
    """Count number of key pairs for the given user ID."""
    user_id = _owner(context, user_id)
    stmt = model_query(context, KeyPair, sa.func.count(KeyPair.id), read_deleted="no")
    return int(execute(stmt.where(KeyPair.user_id == user_id)).scalar_one())

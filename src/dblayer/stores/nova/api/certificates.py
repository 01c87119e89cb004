"""nova DB API: x509 certificates (notes §3.27). Every call is admin-only; lookups see
live rows."""

from __future__ import annotations

from typing import Any

from ..models import Certificate
from ._base import ADMIN, api, columns_only, create, fetch_all, model_query
from ._checks import clean_values, key_value, require_keys

__all__ = [
    "certificate_create",
    "certificate_get_all_by_project",
    "certificate_get_all_by_user",
    "certificate_get_all_by_user_and_project",
]


@api(ADMIN)
def certificate_create(context: Any, values: dict[str, Any]) -> Any:
    """Create a certificate from the values dictionary."""
    require_keys("certificate_create", values)
    # nova set every key on the row object; keys that are not columns were never stored.
    return create(Certificate, clean_values(Certificate, columns_only(Certificate, values)))


def _live(context: Any, **where: Any) -> list[Any]:
    stmt = model_query(context, Certificate, read_deleted="no")
    for column, value in where.items():
        stmt = stmt.where(getattr(Certificate, column) == key_value(Certificate, column, value))
    return fetch_all(stmt.order_by(Certificate.id))


@api(ADMIN)
def certificate_get_all_by_project(context: Any, project_id: str) -> list[Any]:
    """Get all certificates for a project."""
    return _live(context, project_id=project_id)


@api(ADMIN)
def certificate_get_all_by_user(context: Any, user_id: str) -> list[Any]:
    """Get all certificates for a user."""
    return _live(context, user_id=user_id)


@api(ADMIN)
def certificate_get_all_by_user_and_project(
    context: Any, user_id: str, project_id: str
) -> list[Any]:
    """Get all certificates for a user and project."""
    return _live(context, user_id=user_id, project_id=project_id)

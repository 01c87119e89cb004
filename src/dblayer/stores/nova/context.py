"""nova's request context and the access checks every DB API call makes.

A context says who is calling (user, project, admin or not) and which rows
reads see by default (``read_deleted``). The checks mirror nova's: admin-only
calls raise AdminRequired for anyone else, user calls raise Forbidden for a
context that is neither admin nor a complete user context.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import exception

F = TypeVar("F", bound=Callable[..., Any])

READ_DELETED_VALUES = ("no", "yes", "only")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class RequestContext:
    """Who is calling, on behalf of which project, and which rows reads see by default."""

    def __init__(
        self,
        user_id: str | None,
        project_id: str | None,
        is_admin: bool | None = None,
        read_deleted: str = "no",
        roles: Iterable[str] | None = None,
        remote_address: str | None = None,
        timestamp: dt.datetime | str | None = None,
        request_id: str | None = None,
        auth_token: str | None = None,
        overwrite: bool = True,
        quota_class: str | None = None,
        user_name: str | None = None,
        project_name: str | None = None,
        service_catalog: list[dict[str, Any]] | None = None,
        instance_lock_checked: bool = False,
        **_ignored: Any,
    ) -> None:
        """A context; ``is_admin=None`` means admin exactly when ``roles`` has 'admin'."""
        self.user_id = user_id
        self.project_id = project_id
        self.roles = list(roles or [])
        self.is_admin = (
            ("admin" in [r.lower() for r in self.roles]) if is_admin is None else is_admin
        )
        self.read_deleted = read_deleted
        self.remote_address = remote_address
        if isinstance(timestamp, str):
            timestamp = dt.datetime.strptime(timestamp, TIMESTAMP_FORMAT)
        self.timestamp = timestamp or _utcnow()
        self.request_id = request_id or f"req-{uuid.uuid4()}"
        self.auth_token = auth_token
        self.quota_class = quota_class
        self.user_name = user_name
        self.project_name = project_name
        # Only the volume endpoints travel with a context, as in nova.
        self.service_catalog = [s for s in (service_catalog or []) if s.get("type") == "volume"]
        self.instance_lock_checked = instance_lock_checked

    @property
    def read_deleted(self) -> str:
        """Which rows reads see: 'no' (live), 'yes' (all) or 'only' (deleted)."""
        return self._read_deleted

    @read_deleted.setter
    def read_deleted(self, value: str) -> None:
        if value not in READ_DELETED_VALUES:
            raise ValueError(
                f"read_deleted can only be one of {', '.join(READ_DELETED_VALUES)}, not {value!r}"
            )
        self._read_deleted = value

    def elevated(self, read_deleted: str | None = None) -> RequestContext:
        """A copy of this context with admin rights (and optionally another read_deleted)."""
        ctx = copy.copy(self)
        ctx.is_admin = True
        ctx.roles = [*self.roles, "admin"] if "admin" not in self.roles else list(self.roles)
        if read_deleted is not None:
            ctx.read_deleted = read_deleted
        return ctx

    def to_dict(self) -> dict[str, Any]:
        """The context as a plain dict (as nova sent it over RPC)."""
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "is_admin": self.is_admin,
            "read_deleted": self.read_deleted,
            "roles": list(self.roles),
            "remote_address": self.remote_address,
            "timestamp": self.timestamp.strftime(TIMESTAMP_FORMAT),
            "request_id": self.request_id,
            "auth_token": self.auth_token,
            "quota_class": self.quota_class,
            "user_name": self.user_name,
            "project_name": self.project_name,
            "service_catalog": self.service_catalog,
            "instance_lock_checked": self.instance_lock_checked,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RequestContext:
        """A context from ``to_dict()``'s output."""
        return cls(**values)

    def __repr__(self) -> str:
        return (
            f"RequestContext(user_id={self.user_id!r}, project_id={self.project_id!r}, "
            f"is_admin={self.is_admin!r}, read_deleted={self.read_deleted!r})"
        )


def get_admin_context(read_deleted: str = "no") -> RequestContext:
    """An admin context with no user and no project."""
    return RequestContext(user_id=None, project_id=None, is_admin=True, read_deleted=read_deleted)


def is_user_context(context: Any) -> bool:
    """Whether ``context`` is a complete non-admin context (it has a user and a project)."""
    if not context or getattr(context, "is_admin", False):
        return False
    return bool(getattr(context, "user_id", None) and getattr(context, "project_id", None))


def check_admin(context: Any) -> None:
    """Raise AdminRequired unless ``context`` is an admin context."""
    if not getattr(context, "is_admin", False):
        raise exception.AdminRequired()


def check_context(context: Any) -> None:
    """Raise Forbidden unless ``context`` is an admin or a complete user context."""
    if not getattr(context, "is_admin", False) and not is_user_context(context):
        raise exception.Forbidden()


def authorize_project_context(context: Any, project_id: str | None) -> None:
    """Raise Forbidden when a user context asks for another project's rows."""
    if is_user_context(context) and context.project_id != project_id:
        raise exception.Forbidden()


def authorize_user_context(context: Any, user_id: str | None) -> None:
    """Raise Forbidden when a user context asks for another user's rows."""
    if is_user_context(context) and context.user_id != user_id:
        raise exception.Forbidden()


def authorize_quota_class_context(context: Any, class_name: str | None) -> None:
    """Raise Forbidden when a user context asks for another quota class."""
    if is_user_context(context) and context.quota_class != class_name:
        raise exception.Forbidden()


def require_admin_context(fn: F) -> F:
    """Decorator: the call's first argument must be an admin context."""

    @functools.wraps(fn)
    def checked(context: Any, *args: Any, **kwargs: Any) -> Any:
        check_admin(context)
        return fn(context, *args, **kwargs)

    return checked  # type: ignore[return-value]


def require_context(fn: F) -> F:
    """Decorator: the call's first argument must be an admin or a user context."""

    @functools.wraps(fn)
    def checked(context: Any, *args: Any, **kwargs: Any) -> Any:
        check_context(context)
        return fn(context, *args, **kwargs)

    return checked  # type: ignore[return-value]

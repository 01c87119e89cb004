"""RequestContext, get_admin_context and the access checks of nova's DB API."""

from __future__ import annotations

import datetime as dt

import pytest

from dblayer.stores.nova import exception
from dblayer.stores.nova.context import (
    RequestContext,
    authorize_project_context,
    authorize_quota_class_context,
    authorize_user_context,
    check_admin,
    check_context,
    get_admin_context,
    is_user_context,
    require_admin_context,
    require_context,
)


def test_a_user_context_carries_who_and_what():
    ctx = RequestContext("u", "p", roles=["member"], remote_address="10.0.0.1")
    assert (ctx.user_id, ctx.project_id, ctx.is_admin) == ("u", "p", False)
    assert ctx.read_deleted == "no"
    assert ctx.request_id.startswith("req-")
    assert isinstance(ctx.timestamp, dt.datetime) and ctx.timestamp.tzinfo is None
    assert ctx.remote_address == "10.0.0.1"


def test_admin_comes_from_the_roles_unless_given():
    assert RequestContext("u", "p", roles=["Admin"]).is_admin is True
    assert RequestContext("u", "p", roles=["admin"], is_admin=False).is_admin is False


def test_timestamp_strings_are_parsed():
    ctx = RequestContext("u", "p", timestamp="2014-07-23T10:11:12.000013")
    assert ctx.timestamp == dt.datetime(2014, 7, 23, 10, 11, 12, 13)


def test_read_deleted_takes_only_nova_values():
    ctx = RequestContext("u", "p", read_deleted="yes")
    ctx.read_deleted = "only"
    assert ctx.read_deleted == "only"
    with pytest.raises(ValueError, match="read_deleted"):
        ctx.read_deleted = "maybe"
    assert ctx.read_deleted == "only"
    with pytest.raises(ValueError):
        RequestContext("u", "p", read_deleted="all")


def test_service_catalog_keeps_volume_endpoints_only():
    ctx = RequestContext("u", "p", service_catalog=[{"type": "volume"}, {"type": "image"}])
    assert ctx.service_catalog == [{"type": "volume"}]


def test_elevated_is_an_admin_copy():
    ctx = RequestContext("u", "p", roles=["member"])
    admin = ctx.elevated(read_deleted="yes")
    assert admin.is_admin and "admin" in admin.roles and admin.read_deleted == "yes"
    assert (admin.user_id, admin.project_id) == ("u", "p")
    assert not ctx.is_admin and ctx.roles == ["member"] and ctx.read_deleted == "no"


def test_to_dict_round_trips():
    ctx = RequestContext("u", "p", roles=["a"], quota_class="gold", request_id="req-1")
    again = RequestContext.from_dict(ctx.to_dict())
    assert again.to_dict() == ctx.to_dict()


def test_admin_context_has_no_user_or_project():
    admin = get_admin_context(read_deleted="yes")
    assert admin.is_admin and admin.user_id is None and admin.project_id is None
    assert admin.read_deleted == "yes"


def test_user_context_needs_user_and_project():
    assert is_user_context(RequestContext("u", "p"))
    assert not is_user_context(RequestContext("u", None))
    assert not is_user_context(RequestContext(None, "p"))
    assert not is_user_context(get_admin_context())
    assert not is_user_context(None)


def test_checks_raise_nova_errors():
    user, admin, partial = RequestContext("u", "p"), get_admin_context(), RequestContext("u", None)
    check_admin(admin)
    with pytest.raises(exception.AdminRequired):
        check_admin(user)
    check_context(user)
    check_context(admin)
    with pytest.raises(exception.Forbidden):
        check_context(partial)


def test_authorize_helpers_limit_user_contexts_only():
    user = RequestContext("u", "p", quota_class="gold")
    authorize_project_context(user, "p")
    authorize_user_context(user, "u")
    authorize_quota_class_context(user, "gold")
    for check, value in (
        (authorize_project_context, "other"),
        (authorize_user_context, "other"),
        (authorize_quota_class_context, "silver"),
    ):
        with pytest.raises(exception.Forbidden):
            check(user, value)
        check(get_admin_context(), value)  # admins pass
        check(RequestContext("u", None), value)  # so does an incomplete context


def test_decorators_check_the_first_argument():
    @require_admin_context
    def admin_only(context, x):
        return x

    @require_context
    def anyone(context, x):
        return x

    assert admin_only(get_admin_context(), 1) == 1
    assert anyone(RequestContext("u", "p"), 2) == 2
    with pytest.raises(exception.AdminRequired):
        admin_only(RequestContext("u", "p"), 1)
    with pytest.raises(exception.Forbidden):
        anyone(RequestContext(None, None), 1)

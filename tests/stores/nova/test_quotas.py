"""nova's quota calls on every backend: quota classes, project and user limits, usages,
quota_reserve (limits, refreshes, OverQuota) and settling reservations (commit, rollback,
expiry), with their errors, access checks, project scoping and read_deleted."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import InvalidQuery, InvalidValue, utcnow
from dblayer.stores.nova import exception, models
from dblayer.stores.nova.api import quotas
from dblayer.stores.nova.context import RequestContext, get_admin_context
from tests.stores.nova.conftest import make_instance, table_rows

Q = models.Quota
PUQ = models.ProjectUserQuota
QC = models.QuotaClass
U = models.QuotaUsage
R = models.Reservation
NOBODY = RequestContext("user1", None)  # neither admin nor a complete user context
LIMITS = {"instances": 10, "cores": 20, "ram": 4096}
BIG = {"instances": 1000, "cores": 1000, "ram": 10**6}


def _later(seconds: float = 3600) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def _reserve(ctx: Any, deltas: dict[str, int], limits: dict[str, Any] | None = None, **kw: Any):
    limits = limits or LIMITS
    expire = kw.pop("expire", _later())
    until_refresh = kw.pop("until_refresh", 0)
    max_age = kw.pop("max_age", 0)
    resources = kw.pop("resources", None)
    user_limits = kw.pop("user_limits", limits)
    return nova.quota_reserve(
        ctx, resources, limits, user_limits, deltas, expire, until_refresh, max_age, **kw
    )


def _soft_delete(db: Any, model: Any, *where: Any) -> None:
    table = model.__table__
    with db.transaction() as conn:
        conn.execute(sa.update(table).where(*where).values(deleted=table.c.id))


def _usages(db: Any, project: str = "project1") -> dict[tuple[Any, str], dict[str, Any]]:
    """(user_id, resource) -> live usage row of ``project``."""
    return {
        (r["user_id"], r["resource"]): r
        for r in table_rows(db, U)
        if r["project_id"] == project and r["deleted"] == 0
    }


def _live_reservations(db: Any) -> list[dict[str, Any]]:
    return [r for r in table_rows(db, R) if r["deleted"] == 0]


# -- quota classes -----------------------------------------------------------------------------


def test_quota_classes(nova_db, admin, ctx):
    first = nova.quota_class_create(admin, "gold", "instances", 20)
    assert (first.class_name, first.resource, first["hard_limit"]) == ("gold", "instances", 20)
    # No uniqueness (nova's table has none): the oldest row is the one read.
    nova.quota_class_create(admin, "gold", "instances", 30)
    nova.quota_class_create(admin, "gold", "cores", None)
    nova.quota_class_create(admin, "default", "instances", 10)
    with pytest.raises(exception.AdminRequired):
        nova.quota_class_create(ctx, "gold", "ram", 1)

    assert nova.quota_class_get(ctx, "gold", "instances").id == first.id
    with pytest.raises(exception.QuotaClassNotFound) as e:
        nova.quota_class_get(ctx, "gold", "ram")
    assert e.value.kwargs["class_name"] == "gold"
    with pytest.raises(exception.Forbidden):
        nova.quota_class_get(NOBODY, "gold", "instances")

    gold = {"class_name": "gold", "instances": 20, "cores": None}
    assert nova.quota_class_get_all_by_name(admin, "gold") == gold
    assert (
        nova.quota_class_get_all_by_name(RequestContext("u", "p", quota_class="gold"), "gold")
        == gold
    )
    # A user context may read only its own quota class.
    with pytest.raises(exception.Forbidden):
        nova.quota_class_get_all_by_name(ctx, "gold")
    assert nova.quota_class_get_all_by_name(admin, "silver") == {"class_name": "silver"}
    # The defaults: no access check at all.
    assert nova.quota_class_get_default(NOBODY) == {"class_name": "default", "instances": 10}

    # Updating sets every live row of the class and resource.
    assert nova.quota_class_update(admin, "gold", "instances", 50) is None
    assert [r["hard_limit"] for r in table_rows(nova_db, QC) if r["resource"] == "instances"] == [
        50,
        50,
        10,
    ]
    assert nova.quota_class_get_all_by_name(admin, "gold")["instances"] == 50
    with pytest.raises(exception.QuotaClassNotFound):
        nova.quota_class_update(admin, "gold", "ram", 1)
    with pytest.raises(exception.AdminRequired):
        nova.quota_class_update(ctx, "gold", "instances", 1)
    with pytest.raises(InvalidValue):
        nova.quota_class_update(admin, "gold", "instances", "many")
    with pytest.raises(InvalidValue):
        nova.quota_class_create(admin, "gold", "ram", 2**40)

    # Deleted rows are never read nor updated, whatever the context's read_deleted.
    _soft_delete(nova_db, QC, QC.resource == "cores")
    everything = get_admin_context(read_deleted="yes")
    with pytest.raises(exception.QuotaClassNotFound):
        nova.quota_class_get(everything, "gold", "cores")
    with pytest.raises(exception.QuotaClassNotFound):
        nova.quota_class_update(everything, "gold", "cores", 5)
    assert "cores" not in nova.quota_class_get_all_by_name(everything, "gold")
    assert len(table_rows(nova_db, QC)) == 4


# -- project and user limits -------------------------------------------------------------------


def test_quota_create_and_get(nova_db, admin, ctx):
    project = nova.quota_create(admin, "project1", "instances", 10)
    assert isinstance(project, Q) and project.hard_limit == 10
    user = nova.quota_create(admin, "project1", "instances", 5, user_id="user1")
    assert isinstance(user, PUQ) and (user.user_id, user.hard_limit) == ("user1", 5)
    # A per-project resource is limited per project even when a user is named.
    fixed = nova.quota_create(admin, "project1", "fixed_ips", 7, user_id="user1")
    assert isinstance(fixed, Q)

    with pytest.raises(exception.QuotaExists) as e:
        nova.quota_create(admin, "project1", "instances", 11)
    assert e.value.kwargs == {"project_id": "project1", "resource": "instances", "code": 500}
    with pytest.raises(exception.QuotaExists):
        nova.quota_create(admin, "project1", "instances", 6, user_id="user1")
    with pytest.raises(exception.AdminRequired):
        nova.quota_create(ctx, "project1", "ram", 1)
    with pytest.raises(InvalidValue):
        nova.quota_create(admin, None, "ram", 1, user_id="user1")  # a user limit needs a project
    with pytest.raises(InvalidValue):
        nova.quota_create(admin, "project1", "ram", "lots")
    assert len(table_rows(nova_db, Q)) == 2 and len(table_rows(nova_db, PUQ)) == 1

    assert nova.quota_get(ctx, "project1", "instances").id == project.id
    assert nova.quota_get(ctx, "project1", "instances", user_id="user1").id == user.id
    with pytest.raises(exception.ProjectQuotaNotFound) as e:
        nova.quota_get(ctx, "project1", "ram")
    assert e.value.kwargs["project_id"] == "project1"
    # With a user, nova always looked among the user limits, even for fixed_ips.
    with pytest.raises(exception.ProjectUserQuotaNotFound) as e:
        nova.quota_get(ctx, "project1", "fixed_ips", user_id="user1")
    assert (e.value.kwargs["project_id"], e.value.kwargs["user_id"]) == ("project1", "user1")
    with pytest.raises(exception.Forbidden):
        nova.quota_get(NOBODY, "project1", "instances")

    # quota_get follows the context's read_deleted.
    _soft_delete(nova_db, Q, Q.id == project.id)
    with pytest.raises(exception.ProjectQuotaNotFound):
        nova.quota_get(ctx, "project1", "instances")
    deleted = nova.quota_get(
        RequestContext("user1", "project1", read_deleted="yes"), "project1", "instances"
    )
    assert deleted.id == project.id and deleted.deleted == project.id
    # Once deleted, the limit can be created again.
    assert nova.quota_create(admin, "project1", "instances", 12).hard_limit == 12


def test_quota_lists_and_their_scoping(nova_db, admin, ctx, other_ctx):
    nova.quota_create(admin, "project1", "instances", 10)
    nova.quota_create(admin, "project1", "cores", None)
    nova.quota_create(admin, "project2", "instances", 3)
    a = nova.quota_create(admin, "project1", "instances", 4, user_id="user1")
    b = nova.quota_create(admin, "project1", "ram", 512, user_id="user1")
    c = nova.quota_create(admin, "project1", "instances", 6, user_id="user9")
    nova.quota_create(admin, "project2", "instances", 1, user_id="user2")

    assert nova.quota_get_all_by_project(ctx, "project1") == {
        "project_id": "project1",
        "instances": 10,
        "cores": None,
    }
    assert nova.quota_get_all_by_project(admin, "project2") == {
        "project_id": "project2",
        "instances": 3,
    }
    assert nova.quota_get_all_by_project(admin, "nobody") == {"project_id": "nobody"}
    assert nova.quota_get_all_by_project_and_user(ctx, "project1", "user1") == {
        "project_id": "project1",
        "user_id": "user1",
        "instances": 4,
        "ram": 512,
    }
    assert [q.id for q in nova.quota_get_all(ctx, "project1")] == [a.id, b.id, c.id]
    for call, args in (
        (nova.quota_get_all, ("project1",)),
        (nova.quota_get_all_by_project, ("project1",)),
        (nova.quota_get_all_by_project_and_user, ("project1", "user1")),
    ):
        # Another project's limits are Forbidden to a user context; an admin reads any.
        with pytest.raises(exception.Forbidden):
            call(other_ctx, *args)
        call(admin, *args)
        with pytest.raises(exception.Forbidden):
            call(NOBODY, *args)

    # read_deleted: forced live for the project dict; the context's for the user lists.
    _soft_delete(nova_db, Q, Q.resource == "cores")
    _soft_delete(nova_db, PUQ, PUQ.id == b.id)
    everything = RequestContext("user1", "project1", read_deleted="yes")
    assert "cores" not in nova.quota_get_all_by_project(everything, "project1")
    assert "ram" not in nova.quota_get_all_by_project_and_user(ctx, "project1", "user1")
    assert nova.quota_get_all_by_project_and_user(everything, "project1", "user1")["ram"] == 512
    assert [q.id for q in nova.quota_get_all(ctx, "project1")] == [a.id, c.id]
    assert [q.id for q in nova.quota_get_all(everything, "project1")] == [a.id, b.id, c.id]
    only = RequestContext("user1", "project1", read_deleted="only")
    assert [q.id for q in nova.quota_get_all(only, "project1")] == [b.id]
    # A live limit wins over a deleted one of the same resource.
    nova.quota_create(admin, "project1", "ram", 1024, user_id="user1")
    assert nova.quota_get_all_by_project_and_user(everything, "project1", "user1")["ram"] == 1024


def test_quota_update(nova_db, admin, ctx):
    project = nova.quota_create(admin, "project1", "instances", 10)
    user = nova.quota_create(admin, "project1", "instances", 5, user_id="user1")
    fixed = nova.quota_create(admin, "project1", "fixed_ips", 5)

    assert nova.quota_update(admin, "project1", "instances", 20) is None
    assert nova.quota_update(admin, "project1", "instances", 8, user_id="user1") is None
    nova.quota_update(admin, "project1", "fixed_ips", 9, user_id="user1")  # per project
    limits = {r["id"]: r["hard_limit"] for r in table_rows(nova_db, Q)}
    assert limits[project.id] == 20 and limits[fixed.id] == 9
    assert nova.quota_get(ctx, "project1", "instances", user_id="user1").hard_limit == 8
    assert [r["hard_limit"] for r in table_rows(nova_db, PUQ) if r["id"] == user.id] == [8]

    with pytest.raises(exception.ProjectQuotaNotFound):
        nova.quota_update(admin, "project1", "ram", 1)
    with pytest.raises(exception.ProjectUserQuotaNotFound) as e:
        nova.quota_update(admin, "project1", "ram", 1, user_id="user1")
    assert e.value.kwargs["user_id"] == "user1"
    with pytest.raises(exception.AdminRequired):
        nova.quota_update(ctx, "project1", "instances", 1)
    with pytest.raises(InvalidValue):
        nova.quota_update(admin, "project1", "instances", 1.5)
    # The context's read_deleted decides whether a deleted limit is found.
    _soft_delete(nova_db, Q, Q.id == project.id)
    with pytest.raises(exception.ProjectQuotaNotFound):
        nova.quota_update(admin, "project1", "instances", 1)
    nova.quota_update(get_admin_context(read_deleted="yes"), "project1", "instances", 1)
    assert {r["id"]: r["hard_limit"] for r in table_rows(nova_db, Q)}[project.id] == 1


def test_quota_destroy_all(nova_db, admin, ctx):
    nova.quota_create(admin, "project1", "instances", 10)
    nova.quota_create(admin, "project1", "instances", 5, user_id="user1")
    nova.quota_create(admin, "project1", "instances", 5, user_id="user2")
    nova.quota_create(admin, "project2", "instances", 10)
    _reserve(ctx, {"instances": 1, "fixed_ips": 1}, {**LIMITS, "fixed_ips": 5})
    _reserve(RequestContext("user2", "project1"), {"instances": 2})
    _reserve(RequestContext("user2", "project2"), {"instances": 3})
    with pytest.raises(exception.AdminRequired):
        nova.quota_destroy_all_by_project(ctx, "project1")
    with pytest.raises(exception.AdminRequired):
        nova.quota_destroy_all_by_project_and_user(ctx, "project1", "user1")

    # One user: their limits, usages and reservations; not the project's (nor NULL-user rows).
    assert nova.quota_destroy_all_by_project_and_user(admin, "project1", "user1") is None
    live = {
        (r["user_id"], r["resource"])
        for r in table_rows(nova_db, U)
        if r["deleted"] == 0 and r["project_id"] == "project1"
    }
    assert ("user1", "instances") not in live and (None, "fixed_ips") in live
    assert ("user2", "instances") in live
    assert [r["user_id"] for r in table_rows(nova_db, PUQ) if r["deleted"] == 0] == ["user2"]
    assert {(r["user_id"], r["project_id"]) for r in _live_reservations(nova_db)} == {
        ("user2", "project1"),
        ("user2", "project2"),
    }
    assert len([r for r in table_rows(nova_db, Q) if r["deleted"] == 0]) == 2

    # The whole project: all four kinds, soft-deleted (rows kept); project2 untouched.
    assert nova.quota_destroy_all_by_project(admin, "project1") is None
    for model in (Q, PUQ, U, R):
        rows = table_rows(nova_db, model)
        assert all(r["deleted"] == r["id"] for r in rows if r["project_id"] == "project1")
        assert all(r["deleted"] == 0 for r in rows if r["project_id"] == "project2")
        assert any(r["project_id"] == "project1" for r in rows)
    assert nova.quota_get_all_by_project(admin, "project1") == {"project_id": "project1"}
    assert nova.quota_usage_get_all_by_project(admin, "project1") == {"project_id": "project1"}


# -- usages ------------------------------------------------------------------------------------


def test_quota_usage_reads(nova_db, admin, ctx, other_ctx):
    fixed = {**LIMITS, "fixed_ips": 10}
    _reserve(ctx, {"instances": 2, "fixed_ips": 3}, fixed)
    _reserve(RequestContext("user2", "project1"), {"instances": 1})
    _reserve(other_ctx, {"instances": 4})

    mine = nova.quota_usage_get(ctx, "project1", "instances", user_id="user1")
    assert (mine.user_id, mine.in_use, mine.reserved) == ("user1", 0, 2)
    # A per-project resource's usage is the project's row, whoever asks.
    shared = nova.quota_usage_get(ctx, "project1", "fixed_ips", user_id="user2")
    assert (shared.user_id, shared.reserved) == (None, 3)
    # Without a user: any row of the project and resource.
    assert nova.quota_usage_get(ctx, "project1", "instances").project_id == "project1"
    with pytest.raises(exception.QuotaUsageNotFound) as e:
        nova.quota_usage_get(ctx, "project1", "instances", user_id="user7")
    assert e.value.kwargs["project_id"] == "project1"
    with pytest.raises(exception.QuotaUsageNotFound):
        nova.quota_usage_get(ctx, "project1", "floating_ips")
    with pytest.raises(exception.Forbidden):
        nova.quota_usage_get(NOBODY, "project1", "instances")

    assert nova.quota_usage_get_all_by_project(ctx, "project1") == {
        "project_id": "project1",
        "instances": {"in_use": 0, "reserved": 3},
        "cores": {"in_use": 0, "reserved": 0},
        "ram": {"in_use": 0, "reserved": 0},
        "fixed_ips": {"in_use": 0, "reserved": 3},
    }
    assert nova.quota_usage_get_all_by_project_and_user(ctx, "project1", "user2") == {
        "project_id": "project1",
        "user_id": "user2",
        "instances": {"in_use": 0, "reserved": 1},
        "cores": {"in_use": 0, "reserved": 0},
        "ram": {"in_use": 0, "reserved": 0},
        "fixed_ips": {"in_use": 0, "reserved": 3},
    }
    for call, args in (
        (nova.quota_usage_get_all_by_project, ("project1",)),
        (nova.quota_usage_get_all_by_project_and_user, ("project1", "user1")),
    ):
        with pytest.raises(exception.Forbidden):
            call(other_ctx, *args)
        assert call(admin, *args)["project_id"] == "project1"

    # Deleted usage rows are never read.
    _soft_delete(nova_db, U, U.user_id == "user2")
    everything = RequestContext("user1", "project1", read_deleted="yes")
    assert nova.quota_usage_get_all_by_project(everything, "project1")["instances"] == {
        "in_use": 0,
        "reserved": 2,
    }
    with pytest.raises(exception.QuotaUsageNotFound):
        nova.quota_usage_get(everything, "project1", "instances", user_id="user2")


def test_quota_usage_update(nova_db, admin, ctx):
    _reserve(ctx, {"instances": 2, "fixed_ips": 1}, {**LIMITS, "fixed_ips": 10})
    before = _usages(nova_db)
    assert (
        nova.quota_usage_update(
            admin, "project1", "user1", "instances", in_use=5, until_refresh=3, color="red"
        )
        is None
    )
    row = _usages(nova_db)[("user1", "instances")]
    assert (row["in_use"], row["reserved"], row["until_refresh"]) == (5, 2, 3)
    assert row["updated_at"] >= before[("user1", "instances")]["updated_at"]
    # The user's row or the project's (NULL user) row of the resource.
    nova.quota_usage_update(admin, "project1", "user1", "fixed_ips", reserved=0)
    assert _usages(nova_db)[(None, "fixed_ips")]["reserved"] == 0
    with pytest.raises(exception.QuotaUsageNotFound):
        nova.quota_usage_update(admin, "project1", "user1", "ram_disks", in_use=1)
    with pytest.raises(exception.QuotaUsageNotFound):
        nova.quota_usage_update(admin, "project9", "user1", "instances")
    with pytest.raises(exception.AdminRequired):
        nova.quota_usage_update(ctx, "project1", "user1", "instances", in_use=0)
    with pytest.raises(InvalidValue):
        nova.quota_usage_update(admin, "project1", "user1", "instances", in_use=None)
    assert _usages(nova_db)[("user1", "instances")]["in_use"] == 5


# -- quota_reserve -----------------------------------------------------------------------------


def test_quota_reserve_writes_reservations(nova_db, admin, ctx):
    expire = _later(600)
    uuids = _reserve(
        ctx,
        {"instances": 2, "fixed_ips": 1, "ram": -512},
        {**LIMITS, "fixed_ips": 5},
        expire=expire,
    )
    assert len(uuids) == 3 and len(set(uuids)) == 3
    usages = _usages(nova_db)
    rows = {r["uuid"]: r for r in _live_reservations(nova_db)}
    assert [rows[u]["resource"] for u in uuids] == ["instances", "fixed_ips", "ram"]
    for u, delta in zip(uuids, (2, 1, -512), strict=True):
        r = rows[u]
        assert (r["project_id"], r["user_id"], r["delta"], r["expire"]) == (
            "project1",
            "user1",
            delta,
            expire,
        )
        owner = None if r["resource"] == "fixed_ips" else "user1"
        assert r["usage_id"] == usages[(owner, r["resource"])]["id"]
    # Only positive deltas are held back.
    assert usages[("user1", "instances")]["reserved"] == 2
    assert usages[(None, "fixed_ips")]["reserved"] == 1
    assert usages[("user1", "ram")]["reserved"] == 0
    assert usages[("user1", "instances")]["updated_at"] is not None

    # An admin names the project and user; the rows are that user's.
    more = nova.quota_reserve(
        admin, None, LIMITS, LIMITS, {"instances": 1}, expire, 0, 0, "project1", "user1"
    )
    assert _usages(nova_db)[("user1", "instances")]["reserved"] == 3
    assert {r["uuid"] for r in _live_reservations(nova_db)} == {*uuids, *more}
    # No deltas: nothing to reserve.
    assert _reserve(ctx, {}) == []
    with pytest.raises(exception.Forbidden):
        _reserve(NOBODY, {"instances": 1})


def test_quota_reserve_checks_user_and_project_limits(nova_db, ctx):
    _reserve(ctx, {"instances": 8})
    with pytest.raises(exception.OverQuota) as e:
        _reserve(ctx, {"instances": 3, "cores": 1})
    kwargs = e.value.kwargs
    assert kwargs["overs"] == ["instances"]
    assert kwargs["quotas"] == LIMITS
    # Equal project and user limits: the project's usages are reported.
    assert kwargs["usages"]["instances"] == {"in_use": 0, "reserved": 8}
    assert kwargs["headroom"] == {"instances": 2, "cores": 20, "ram": 4096}
    assert "instances" in str(e.value)
    assert len(_live_reservations(nova_db)) == 1
    assert _usages(nova_db)[("user1", "instances")]["reserved"] == 8

    # The project's limit counts every user's usage.
    user2 = RequestContext("user2", "project1")
    with pytest.raises(exception.OverQuota):
        _reserve(user2, {"instances": 3})
    _reserve(user2, {"instances": 2})
    # A user's own limit, below the project's: the user's usages are reported.
    user3 = RequestContext("user3", "project1")
    with pytest.raises(exception.OverQuota) as e:
        _reserve(user3, {"instances": 2}, {"instances": 100}, user_limits={"instances": 1})
    assert e.value.kwargs["usages"]["instances"] == {"in_use": 0, "reserved": 0}
    assert e.value.kwargs["headroom"] == {"instances": 1}
    # The project's limit holds even when the user's is unlimited (nova skipped it then).
    with pytest.raises(exception.OverQuota):
        _reserve(user3, {"instances": 1}, LIMITS, user_limits={**LIMITS, "instances": -1})
    # An unlimited project with a limited user: the user's limit alone (nova refused all).
    _reserve(user3, {"instances": 1}, {"instances": -1}, user_limits={"instances": 1})
    # Unlimited: None or negative.
    huge = {"instances": 10**6}
    _reserve(RequestContext("user1", "project5"), huge, {"instances": None})
    _reserve(RequestContext("user1", "project6"), huge, {"instances": -1})

    # Reductions always pass, even over quota; a zero delta over quota does not.
    nova.quota_usage_update(get_admin_context(), "project1", "user1", "instances", in_use=50)
    _reserve(ctx, {"instances": -5})
    with pytest.raises(exception.OverQuota):
        _reserve(ctx, {"instances": 0})


def test_over_quota_headroom_and_kept_usage_rows(nova_db, ctx):
    # Unlimited cores or ram: their headroom follows the instances' (nova's report).
    _reserve(ctx, {"instances": 8})
    limits = {"instances": 10, "cores": -1, "ram": -1}
    with pytest.raises(exception.OverQuota) as e:
        _reserve(ctx, {"instances": 3, "cores": 6, "ram": 0}, limits)
    assert e.value.kwargs["headroom"] == {"instances": 2, "cores": 4, "ram": 2}

    # A refused reservation still keeps the usage rows it made (and their refresh).
    fresh = RequestContext("user1", "project7")
    make_instance(nova_db, project_id="project7", vcpus=2, memory_mb=64)
    with pytest.raises(exception.OverQuota):
        _reserve(fresh, {"instances": 11})
    usage = nova.quota_usage_get(fresh, "project7", "instances", user_id="user1")
    assert (usage.in_use, usage.reserved) == (1, 0)
    assert nova.quota_usage_get(fresh, "project7", "cores", user_id="user1").in_use == 2
    assert _live_reservations(nova_db) != [] and all(
        r["project_id"] == "project1" for r in _live_reservations(nova_db)
    )


def test_quota_reserve_refreshes_usages(nova_db, admin, ctx):
    for vcpus in (1, 2):
        make_instance(nova_db, vcpus=vcpus, memory_mb=256)
    make_instance(nova_db, user_id="user2", vcpus=4, memory_mb=1024)
    gone = make_instance(nova_db, vcpus=8, memory_mb=8)
    _soft_delete(nova_db, models.Instance, models.Instance.uuid == gone)

    # A new usage row is refreshed: the user's live instances, cores and ram.
    _reserve(ctx, {"instances": 1}, BIG, until_refresh=2)
    usages = _usages(nova_db)
    assert [usages[("user1", r)]["in_use"] for r in ("instances", "cores", "ram")] == [2, 3, 512]
    assert usages[("user1", "instances")]["until_refresh"] == 2

    # until_refresh counts down on each reservation, and refreshes when it reaches 0.
    make_instance(nova_db, vcpus=1, memory_mb=1)
    _reserve(ctx, {"instances": 1}, BIG, until_refresh=2)
    row = _usages(nova_db)[("user1", "instances")]
    assert (row["in_use"], row["until_refresh"]) == (2, 1)
    _reserve(ctx, {"instances": 1}, BIG, until_refresh=2)
    row = _usages(nova_db)[("user1", "instances")]
    assert (row["in_use"], row["reserved"], row["until_refresh"]) == (3, 3, 2)
    assert _usages(nova_db)[("user1", "cores")]["in_use"] == 4  # refreshed with instances

    # A negative in_use is refreshed.
    nova.quota_usage_update(admin, "project1", "user1", "instances", in_use=-4, until_refresh=None)
    _reserve(ctx, {"instances": 1}, BIG)
    assert _usages(nova_db)[("user1", "instances")]["in_use"] == 3

    # max_age: only a usage not refreshed for max_age seconds (nova's test was inverted).
    nova.quota_usage_update(admin, "project1", "user1", "instances", in_use=7)
    _reserve(ctx, {"instances": 1}, BIG, max_age=60)
    assert _usages(nova_db)[("user1", "instances")]["in_use"] == 7
    with nova_db.transaction() as conn:
        conn.execute(
            sa.update(U.__table__)
            .where(U.user_id == "user1", U.resource == "instances")
            .values(updated_at=utcnow() - dt.timedelta(seconds=61))
        )
    _reserve(ctx, {"instances": 1}, BIG, max_age=60)
    assert _usages(nova_db)[("user1", "instances")]["in_use"] == 3


def test_quota_reserve_sync_routines(nova_db, monkeypatch):
    ctx = RequestContext("user1", "project1")
    mine = make_instance(nova_db)
    theirs = make_instance(nova_db, project_id="project2")
    with nova_db.session() as s:
        for i, (project, auto) in enumerate(
            [("project1", False), ("project1", False), ("project1", True), ("project2", False)]
        ):
            s.add(
                models.FloatingIp(
                    address=f"192.0.2.{i + 1}", project_id=project, auto_assigned=auto
                )
            )
        for i, owner in enumerate([mine, mine, theirs, None]):
            s.add(models.FixedIp(address=f"10.0.0.{i + 1}", instance_uuid=owner))
        for name, user, project in [
            ("a", "user1", "project1"),
            ("b", "user1", "project1"),
            ("c", "user2", "project1"),
            ("d", "user1", "project2"),
        ]:
            s.add(models.SecurityGroup(name=name, user_id=user, project_id=project))
    limits = {"floating_ips": 50, "fixed_ips": 50, "security_groups": 50}
    _reserve(ctx, {"floating_ips": 1, "fixed_ips": 1, "security_groups": 1}, limits)
    usages = _usages(nova_db)
    assert usages[(None, "floating_ips")]["in_use"] == 2
    assert usages[(None, "fixed_ips")]["in_use"] == 2
    assert usages[("user1", "security_groups")]["in_use"] == 2

    # A caller's own sync: by name in the registry, or the routine itself.
    calls = []

    def widgets(context, project_id, user_id, session):
        calls.append((context.is_admin, project_id, user_id, session is not None))
        return {"widgets": 5}

    monkeypatch.setitem(quotas.QUOTA_SYNC_FUNCTIONS, "_sync_widgets", widgets)
    resources = {
        "widgets": quotas.ReservableResource("widgets", "_sync_widgets"),
        "gadgets": lambda *args: {"gadgets": 3},
    }
    _reserve(ctx, {"widgets": 1, "gadgets": 1}, {"widgets": 9, "gadgets": 9}, resources=resources)
    assert calls == [(True, "project1", "user1", True)]
    usages = _usages(nova_db)
    assert (usages[("user1", "widgets")]["in_use"], usages[("user1", "gadgets")]["in_use"]) == (
        5,
        3,
    )
    # A usage that needs no refresh needs no sync.
    _reserve(ctx, {"widgets": 1}, {"widgets": 9}, resources={})

    # No sync for a usage that needs one: refused before anything is written.
    before = table_rows(nova_db, U)
    with pytest.raises(InvalidQuery, match="sprockets"):
        _reserve(ctx, {"sprockets": 1}, {"sprockets": 9}, resources={})
    with pytest.raises(InvalidQuery, match="_sync_nothing"):
        _reserve(
            ctx,
            {"sprockets": 1},
            {"sprockets": 9},
            resources={"sprockets": quotas.ReservableResource("sprockets", "_sync_nothing")},
        )
    with pytest.raises(InvalidQuery):
        _reserve(ctx, {"sprockets": 1}, {"sprockets": 9}, resources={"sprockets": 42})
    assert table_rows(nova_db, U) == before


def test_quota_reserve_uses_a_usage_row_made_meanwhile(nova_db, admin, ctx, monkeypatch):
    """A usage row first seen missing, then found made by another caller once this one
    inserted its own (what a MariaDB creator can meet), is the one used and is not
    refreshed; the row this call inserted is removed."""
    limits = {"fixed_ips": 10}
    _reserve(ctx, {"fixed_ips": 2}, limits)
    nova.quota_usage_update(admin, "project1", None, "fixed_ips", in_use=5)
    real, reads = quotas._lock_usages, []

    def first_read_misses_it(conn, project_id, *args):
        reads.append(project_id)
        return [] if len(reads) == 1 else real(conn, project_id, *args)

    monkeypatch.setattr(quotas, "_lock_usages", first_read_misses_it)
    _reserve(ctx, {"fixed_ips": 1}, limits)
    assert len(reads) == 2
    (row,) = [r for r in table_rows(nova_db, U) if r["resource"] == "fixed_ips"]
    assert (row["user_id"], row["in_use"], row["reserved"]) == (None, 5, 3)
    assert {r["usage_id"] for r in _live_reservations(nova_db)} == {row["id"]}


def test_quota_reserve_rejects_bad_input(nova_db, admin, ctx):
    bad_calls = [
        lambda: _reserve(ctx, ["instances"]),
        lambda: _reserve(ctx, {"instances": "1"}),
        lambda: _reserve(ctx, {"instances": True}),
        lambda: _reserve(ctx, {"instances": 2**40}),
        lambda: _reserve(ctx, {"x" * 256: 1}, {"x" * 256: 1}),
        lambda: _reserve(ctx, {"floating_ips": 1}),  # no limit given for it
        lambda: _reserve(ctx, {"instances": 1}, {"instances": "10"}),
        lambda: _reserve(ctx, {"instances": 1}, user_limits=[]),
        lambda: _reserve(ctx, {"instances": 1}, expire="tomorrow"),
        lambda: _reserve(ctx, {"instances": 1}, max_age=-1),
        lambda: _reserve(ctx, {"instances": 1}, until_refresh="2"),
        lambda: _reserve(ctx, {"instances": 1}, resources=["instances"]),
        lambda: _reserve(admin, {"instances": 1}),  # no project: neither given nor the context's
    ]
    for call in bad_calls:
        with pytest.raises((InvalidQuery, InvalidValue)):
            call()
    assert table_rows(nova_db, U) == [] and table_rows(nova_db, R) == []


# -- settling reservations ---------------------------------------------------------------------


def test_reservation_commit_and_rollback(nova_db, admin, ctx, other_ctx):
    first = _reserve(ctx, {"instances": 2, "ram": -256})
    nova.quota_usage_update(admin, "project1", "user1", "ram", in_use=1024)
    assert nova.reservation_commit(ctx, first) is None
    usages = _usages(nova_db)
    assert (
        usages[("user1", "instances")]["in_use"],
        usages[("user1", "instances")]["reserved"],
    ) == (2, 0)
    assert (usages[("user1", "ram")]["in_use"], usages[("user1", "ram")]["reserved"]) == (768, 0)
    assert _live_reservations(nova_db) == []
    assert all(r["deleted"] == r["id"] and r["deleted_at"] for r in table_rows(nova_db, R))
    # A second commit, or a rollback after it, changes nothing.
    nova.reservation_commit(ctx, first)
    nova.reservation_rollback(ctx, first)
    assert _usages(nova_db) == usages

    second = _reserve(ctx, {"instances": 3, "ram": -100})
    nova.reservation_rollback(ctx, second)
    row = _usages(nova_db)[("user1", "instances")]
    assert (row["in_use"], row["reserved"]) == (2, 0)
    assert _usages(nova_db)[("user1", "ram")]["in_use"] == 768
    nova.reservation_commit(ctx, second)
    assert _usages(nova_db)[("user1", "instances")]["in_use"] == 2

    # Only the project's (and the user's) reservations; unknown uuids are ignored.
    third = _reserve(ctx, {"instances": 1})
    nova.reservation_commit(other_ctx, third)
    nova.reservation_commit(RequestContext("user2", "project1"), third)
    nova.reservation_commit(ctx, ["00000000-0000-0000-0000-000000000000", "not a uuid"])
    nova.reservation_commit(ctx, [])
    assert len(_live_reservations(nova_db)) == 1
    # An admin names the project (any of its users when no user is known).
    nova.reservation_commit(admin, third, project_id="project1")
    assert _usages(nova_db)[("user1", "instances")]["in_use"] == 3
    fourth = _reserve(ctx, {"instances": 1})
    nova.reservation_rollback(admin, fourth, project_id="project1", user_id="user1")
    assert _live_reservations(nova_db) == []

    for call in (nova.reservation_commit, nova.reservation_rollback):
        with pytest.raises(exception.Forbidden):
            call(NOBODY, fourth)
        with pytest.raises(InvalidQuery):
            call(ctx, fourth[0])  # a string, not a list
        with pytest.raises(InvalidQuery):
            call(ctx, [1, 2])
        with pytest.raises(InvalidQuery):
            call(admin, fourth)  # no project


def test_reservation_expire(nova_db, admin, ctx):
    old = _reserve(ctx, {"instances": 2, "ram": -10}, expire=_later(-5))
    current = _reserve(ctx, {"instances": 3}, expire=_later(600))
    forever = _reserve(ctx, {"instances": 1}, expire=None)
    assert _usages(nova_db)[("user1", "instances")]["reserved"] == 6
    with pytest.raises(exception.AdminRequired):
        nova.reservation_expire(ctx)

    assert nova.reservation_expire(admin) is None
    row = _usages(nova_db)[("user1", "instances")]
    assert (row["in_use"], row["reserved"]) == (0, 4)
    assert {r["uuid"] for r in _live_reservations(nova_db)} == {*current, *forever}
    # Expired is settled: a late commit changes nothing, nor does expiring again.
    nova.reservation_commit(ctx, old)
    nova.reservation_expire(admin)
    assert _usages(nova_db)[("user1", "instances")] == row
    nova.reservation_commit(ctx, current + forever)
    assert _usages(nova_db)[("user1", "instances")]["in_use"] == 4

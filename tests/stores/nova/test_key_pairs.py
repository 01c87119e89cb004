"""Key pairs (nova notes §2.21, §3.17) on every backend: unique names per user among live
rows, the user check on every call but create, soft deletes."""

from __future__ import annotations

import pytest

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import RequestContext, exception, models
from tests.stores.nova.conftest import table_rows


def rows(db: Database) -> list[dict]:
    return table_rows(db, models.KeyPair)


def make(context, user_id="user1", name="key", **values):
    values = {"user_id": user_id, "name": name, "public_key": "ssh-rsa AAA", **values}
    return nova.key_pair_create(context, values)


def test_create_get_and_list(nova_db, ctx, admin):
    pair = make(ctx, fingerprint="fp")
    assert pair.id and pair.name == "key" and pair["fingerprint"] == "fp" and pair.deleted == 0
    got = nova.key_pair_get(ctx, "user1", "key")
    assert got.id == pair.id and dict(got)["public_key"] == "ssh-rsa AAA"
    second = make(ctx, name="other")
    make(admin, user_id="user2")
    assert [p.id for p in nova.key_pair_get_all_by_user(ctx, "user1")] == [pair.id, second.id]
    assert nova.key_pair_count_by_user(ctx, "user1") == 2
    assert nova.key_pair_count_by_user(admin, "user2") == 1
    assert nova.key_pair_count_by_user(admin, "nobody") == 0


def test_a_duplicate_name_is_refused_per_user(nova_db, ctx, other_ctx):
    make(ctx)
    before = rows(nova_db)
    with pytest.raises(exception.KeyPairExists) as caught:
        make(ctx, public_key="another")
    assert "key" in str(caught.value)
    assert rows(nova_db) == before
    # Another user may use the name; a destroyed pair frees it.
    make(other_ctx, user_id="user2")
    nova.key_pair_destroy(ctx, "user1", "key")
    again = make(ctx, public_key="new")
    assert nova.key_pair_get(ctx, "user1", "key").id == again.id


def test_create_rejects_bad_values_and_stores_nothing(nova_db, ctx):
    with pytest.raises(InvalidQuery, match="bogus"):
        make(ctx, bogus=1)
    with pytest.raises(InvalidValue):
        make(ctx, name="k" * 256)
    with pytest.raises(InvalidValue):
        make(ctx, name=7)
    with pytest.raises(InvalidQuery):
        nova.key_pair_create(ctx, None)
    assert rows(nova_db) == []


def test_destroy_soft_deletes_and_counts_fall(nova_db, ctx):
    pair = make(ctx)
    make(ctx, name="kept")
    assert nova.key_pair_destroy(ctx, "user1", "key") is None
    stored = {r["name"]: r for r in rows(nova_db)}
    assert stored["key"]["deleted"] == pair.id and stored["key"]["deleted_at"] is not None
    assert stored["kept"]["deleted"] == 0
    assert nova.key_pair_count_by_user(ctx, "user1") == 1
    assert [p.name for p in nova.key_pair_get_all_by_user(ctx, "user1")] == ["kept"]
    with pytest.raises(exception.KeypairNotFound) as caught:
        nova.key_pair_destroy(ctx, "user1", "key")
    assert "user1" in str(caught.value) and "key" in str(caught.value)
    with pytest.raises(exception.KeypairNotFound):
        nova.key_pair_get(ctx, "user1", "key")


def test_get_follows_read_deleted_and_prefers_the_live_pair(nova_db, ctx):
    old = make(ctx, public_key="old")
    nova.key_pair_destroy(ctx, "user1", "key")
    with_deleted = RequestContext("user1", "project1", read_deleted="yes")
    assert nova.key_pair_get(with_deleted, "user1", "key").id == old.id
    new = make(ctx, public_key="new")
    assert nova.key_pair_get(with_deleted, "user1", "key").id == new.id
    only_deleted = RequestContext("user1", "project1", read_deleted="only")
    assert nova.key_pair_get(only_deleted, "user1", "key").id == old.id
    # Listing and counting are always of live pairs.
    assert [p.id for p in nova.key_pair_get_all_by_user(with_deleted, "user1")] == [new.id]
    assert nova.key_pair_count_by_user(with_deleted, "user1") == 1


def test_a_user_context_may_only_name_its_own_user(nova_db, ctx, other_ctx, admin):
    make(ctx)
    before = rows(nova_db)
    calls = [
        lambda: nova.key_pair_get(other_ctx, "user1", "key"),
        lambda: nova.key_pair_get_all_by_user(other_ctx, "user1"),
        lambda: nova.key_pair_count_by_user(other_ctx, "user1"),
        lambda: nova.key_pair_destroy(other_ctx, "user1", "key"),
    ]
    for call in calls:
        with pytest.raises(exception.Forbidden):
            call()
    assert rows(nova_db) == before
    # Create has no ownership check (nova's neither); admins may name anyone.
    make(other_ctx, name="planted")
    assert nova.key_pair_count_by_user(admin, "user1") == 2
    assert nova.key_pair_get(admin, "user1", "planted").name == "planted"


def test_access_checks(nova_db, ctx):
    make(ctx)
    # A non-admin context without a project is neither admin nor a user context.
    half = RequestContext("user1", None)
    for call in (
        lambda: nova.key_pair_create(half, {"user_id": "user1", "name": "x"}),
        lambda: nova.key_pair_get(half, "user1", "key"),
        lambda: nova.key_pair_get_all_by_user(half, "user1"),
        lambda: nova.key_pair_destroy(half, "user1", "key"),
    ):
        with pytest.raises(exception.Forbidden):
            call()
    # Counting has no role check, and the user check passes a non-user context.
    assert nova.key_pair_count_by_user(half, "user1") == 1

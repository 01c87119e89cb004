"""nova's instance lists: instance_get_all, instance_get_all_by_filters, the by-host readers,
instance_get_all_hung_in_rebooting and instance_get_active_by_window_joined, on every backend.

Instances and their child rows are inserted directly (Core INSERTs), so these tests do
not depend on instance_create.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import uuid

import pytest
import sqlalchemy as sa

from dblayer.core import Database, InvalidQuery, InvalidSortKey, soft_delete, utcnow
from dblayer.stores import nova
from dblayer.stores.nova import exception
from dblayer.stores.nova.context import RequestContext, get_admin_context
from dblayer.stores.nova.models import (
    BlockDeviceMapping,
    ComputeNode,
    Instance,
    InstanceInfoCache,
    InstanceMetadata,
    InstanceSystemMetadata,
    PciDevice,
    SecurityGroup,
    SecurityGroupInstanceAssociation,
    Service,
)

BASE = dt.datetime(2014, 7, 23, 10, 0, 0)
_clock = itertools.count()

# -- direct inserts ----------------------------------------------------------------------------


def add_instances(db: Database, *rows: dict) -> list[str]:
    """Insert instances (project1/user1 unless given) in one INSERT; their uuids in order."""
    full = []
    for row in rows:
        values = {
            "uuid": str(uuid.uuid4()),
            "project_id": "project1",
            "user_id": "user1",
            "created_at": BASE + dt.timedelta(seconds=next(_clock)),
            **row,
        }
        full.append(values)
    insert_rows(db, Instance, full)
    return [r["uuid"] for r in full]


def insert_rows(db: Database, model: type, rows: list[dict]) -> None:
    """One INSERT per run of rows naming the same columns (column defaults fill the rest)."""
    with db.transaction() as conn:
        for _, run in itertools.groupby(rows, key=lambda r: tuple(sorted(r))):
            conn.execute(sa.insert(model.__table__), list(run))


def add(db: Database, model: type, *rows: dict) -> None:
    """Insert ``rows`` into ``model``'s table."""
    insert_rows(db, model, list(rows))


def add_one(db: Database, model: type, **values: object) -> int:
    """Insert one row; its id."""
    with db.transaction() as conn:
        return conn.execute(sa.insert(model.__table__).values(**values)).inserted_primary_key[0]


def delete(db: Database, model: type, *where: sa.ColumnElement[bool]) -> None:
    """Soft-delete the rows of ``model`` matching ``where`` (deleted = id)."""
    with db.transaction() as conn:
        soft_delete(conn, model, *where)


def delete_instances(db: Database, *uuids: str) -> None:
    delete(db, Instance, Instance.uuid.in_(uuids))


def uuids(result: list[dict]) -> list[str]:
    return [r["uuid"] for r in result]


def found(result: list[dict]) -> set[str]:
    return set(uuids(result))


def by_filters(context, filters, **kwargs) -> set[str]:
    return found(nova.instance_get_all_by_filters(context, filters, **kwargs))


def add_compute_node(db: Database) -> int:
    service = add_one(db, Service, host="h1", binary="nova-compute", topic="compute")
    return add_one(
        db,
        ComputeNode,
        service_id=service,
        vcpus=1,
        memory_mb=1,
        local_gb=1,
        vcpus_used=0,
        memory_mb_used=0,
        local_gb_used=0,
        hypervisor_type="qemu",
        hypervisor_version=1,
        cpu_info="{}",
    )


def add_pci(db: Database, node: int, instance: str, address: str, status: str) -> None:
    add(
        db,
        PciDevice,
        {
            "compute_node_id": node,
            "address": address,
            "vendor_id": "8086",
            "product_id": "1520",
            "dev_type": "type-VF",
            "label": "label",
            "status": status,
            "instance_uuid": instance,
        },
    )


@pytest.fixture
def world(nova_db: Database) -> dict:
    """Three instances with the usual children: one with everything, one bare, one deleted."""
    full, bare, gone, other = add_instances(
        nova_db,
        {"host": "h1", "node": "n1", "display_name": "full"},
        {"host": "h1", "node": "n2", "display_name": "bare"},
        {"host": "h1", "node": "n1", "display_name": "gone"},
        {"host": "h2", "project_id": "project2", "user_id": "user2", "display_name": "other"},
    )
    add(nova_db, InstanceMetadata, {"instance_uuid": full, "key": "a", "value": "1"})
    add(nova_db, InstanceMetadata, {"instance_uuid": full, "key": "old", "value": "x"})
    delete(nova_db, InstanceMetadata, InstanceMetadata.key == "old")
    add(nova_db, InstanceSystemMetadata, {"instance_uuid": full, "key": "s", "value": "2"})
    add(nova_db, InstanceInfoCache, {"instance_uuid": full, "network_info": "[]"})
    group = add_one(nova_db, SecurityGroup, name="default", project_id="project1")
    add(
        nova_db,
        SecurityGroupInstanceAssociation,
        {"instance_uuid": full, "security_group_id": group},
    )
    add(nova_db, BlockDeviceMapping, {"instance_uuid": full, "device_name": "/dev/vda"})
    node = add_compute_node(nova_db)
    add_pci(nova_db, node, full, "0000:00:01.1", "allocated")
    add_pci(nova_db, node, full, "0000:00:01.2", "claimed")
    delete_instances(nova_db, gone)
    return {"full": full, "bare": bare, "gone": gone, "other": other}


# -- what a listed instance looks like ---------------------------------------------------------


def test_instances_are_dicts_of_columns_name_joins_and_metadata(world, admin):
    listed = {r["uuid"]: r for r in nova.instance_get_all(admin)}
    assert set(listed) == {world["full"], world["bare"], world["other"]}
    full = listed[world["full"]]
    assert type(full) is dict
    assert full["display_name"] == "full" and full["host"] == "h1" and full["deleted"] == 0
    assert full["name"] == f"instance-{full['id']:08x}"
    # Default joins: info cache and security groups (their rules not loaded).
    assert full["info_cache"]["network_info"] == "[]"
    assert [g["name"] for g in full["security_groups"]] == ["default"]
    assert full["security_groups"][0].rules == []
    # Metadata kinds as lists of live rows; nothing else joined.
    assert [(m["key"], m["value"]) for m in full["metadata"]] == [("a", "1")]
    assert [(m.key, m.value) for m in full["system_metadata"]] == [("s", "2")]
    assert "pci_devices" not in full and "block_device_mapping" not in full
    bare = listed[world["bare"]]
    assert bare["info_cache"] is None and bare["security_groups"] == []
    assert bare["metadata"] == [] and bare["system_metadata"] == []


def test_columns_to_join_picks_joins_and_fills_without_being_changed(world, admin):
    asked = ["metadata", "pci_devices", "block_device_mapping"]
    kept = list(asked)
    full = next(r for r in nova.instance_get_all(admin, asked) if r["uuid"] == world["full"])
    assert asked == kept
    assert [m["key"] for m in full["metadata"]] == ["a"]
    assert full["system_metadata"] == []  # not asked for: an empty list, not a missing key
    assert [p["address"] for p in full["pci_devices"]] == ["0000:00:01.1"]  # allocated only
    assert [b["device_name"] for b in full["block_device_mapping"]] == ["/dev/vda"]
    assert "info_cache" not in full and "security_groups" not in full

    none = next(r for r in nova.instance_get_all(admin, []) if r["uuid"] == world["full"])
    assert none["metadata"] == [] and none["system_metadata"] == []
    assert "info_cache" not in none and "pci_devices" not in none

    with pytest.raises(InvalidQuery, match="allowed: .*info_cache"):
        nova.instance_get_all(admin, ["metdata"])
    with pytest.raises(InvalidQuery):
        nova.instance_get_all(admin, "metadata")


# -- instance_get_all ---------------------------------------------------------------------------


def test_get_all_scopes_users_to_their_project_and_follows_read_deleted(
    world, admin, ctx, other_ctx
):
    assert found(nova.instance_get_all(ctx)) == {world["full"], world["bare"]}
    assert found(nova.instance_get_all(other_ctx)) == {world["other"]}
    everything = {world["full"], world["bare"], world["gone"], world["other"]}
    assert found(nova.instance_get_all(get_admin_context("yes"))) == everything
    assert found(nova.instance_get_all(get_admin_context("only"))) == {world["gone"]}
    mine_deleted = RequestContext("user1", "project1", read_deleted="only")
    assert found(nova.instance_get_all(mine_deleted)) == {world["gone"]}


def test_user_functions_refuse_an_incomplete_context(world):
    nobody = RequestContext(None, None)
    with pytest.raises(exception.Forbidden):
        nova.instance_get_all(nobody)
    with pytest.raises(exception.Forbidden):
        nova.instance_get_all_by_filters(nobody, {})
    with pytest.raises(exception.Forbidden):
        nova.instance_get_active_by_window_joined(nobody, BASE)


def test_admin_functions_refuse_a_user_context(world, ctx):
    with pytest.raises(exception.AdminRequired):
        nova.instance_get_all_by_host(ctx, "h1")
    with pytest.raises(exception.AdminRequired):
        nova.instance_get_all_by_host_and_node(ctx, "h1", "n1")
    with pytest.raises(exception.AdminRequired):
        nova.instance_get_all_by_host_and_not_type(ctx, "h1")
    with pytest.raises(exception.AdminRequired):
        nova.instance_get_all_hung_in_rebooting(ctx, 10)


# -- instance_get_all_by_filters: deleted, cleaned, changes-since -------------------------------


def test_by_filters_lists_deleted_instances_unless_told_not_to(nova_db, admin):
    live, soft, gone, no_state = add_instances(
        nova_db,
        {"vm_state": "active"},
        {"vm_state": "soft-delete"},
        {"vm_state": "deleted"},
        {"vm_state": None},
    )
    delete_instances(nova_db, gone)
    # nova's list ignores read_deleted: without a 'deleted' filter every row is there.
    assert by_filters(admin, {}) == {live, soft, gone, no_state}
    assert by_filters(get_admin_context("no"), {}) == {live, soft, gone, no_state}
    assert by_filters(admin, {"deleted": True}) == {soft, gone}
    assert by_filters(admin, {"deleted": True, "soft_deleted": False}) == {gone}
    assert by_filters(admin, {"deleted": False}) == {live, no_state}
    assert by_filters(admin, {"deleted": False, "soft_deleted": True}) == {live, soft, no_state}
    assert by_filters(admin, {"soft_deleted": False}) == {live, soft, gone, no_state}
    with pytest.raises(InvalidQuery, match="deleted"):
        nova.instance_get_all_by_filters(admin, {"deleted": "False"})


def test_by_filters_cleaned(nova_db, admin):
    dirty, clean = add_instances(nova_db, {"cleaned": 0}, {"cleaned": 1})
    assert by_filters(admin, {"cleaned": True}) == {clean}
    assert by_filters(admin, {"cleaned": False}) == {dirty}


def test_by_filters_changes_since(nova_db, admin):
    now = utcnow().replace(microsecond=500)
    old, new, never = add_instances(
        nova_db,
        {"updated_at": now - dt.timedelta(hours=1)},
        {"updated_at": now},
        {"updated_at": None},
    )
    assert by_filters(admin, {"changes-since": now}) == {new}
    assert by_filters(admin, {"changes-since": now - dt.timedelta(hours=2)}) == {old, new}
    # A zone-aware time is converted to UTC first: 12:00+02:00 is 10:00 UTC.
    two_hours_east = dt.timezone(dt.timedelta(hours=2))
    aware = (now - dt.timedelta(minutes=30)).replace(tzinfo=dt.UTC).astimezone(two_hours_east)
    assert by_filters(admin, {"changes-since": aware}) == {new}
    assert by_filters(admin, {"changes-since": aware.isoformat()}) == {new}
    assert never not in by_filters(admin, {"changes-since": BASE})
    with pytest.raises(InvalidQuery, match="changes-since"):
        nova.instance_get_all_by_filters(admin, {"changes-since": "yesterday"})


# -- exact filters, project scoping -------------------------------------------------------------


def test_by_filters_exact_matches(nova_db, admin):
    a, b, c = add_instances(
        nova_db,
        {"host": "h1", "vm_state": "active", "instance_type_id": 1, "image_ref": "img"},
        {"host": "h2", "vm_state": "active", "instance_type_id": 2, "task_state": "spawning"},
        {"host": None, "vm_state": "stopped", "instance_type_id": 3},
    )
    assert by_filters(admin, {"host": "h1"}) == {a}
    assert by_filters(admin, {"host": "H1"}) == set()  # exact: case counts everywhere
    assert by_filters(admin, {"host": "h"}) == set()  # exact: no substring match
    assert by_filters(admin, {"host": None}) == {c}
    assert by_filters(admin, {"host": ["h1", "h2"]}) == {a, b}
    assert by_filters(admin, {"host": ("h2",)}) == {b}
    assert by_filters(admin, {"host": {"h1", None}}) == {a, c}
    assert by_filters(admin, {"host": []}) == set()
    assert by_filters(admin, {"vm_state": "active", "host": "h2"}) == {b}
    assert by_filters(admin, {"task_state": None}) == {a, c}
    assert by_filters(admin, {"image_ref": "img"}) == {a}
    assert by_filters(admin, {"uuid": [a, c]}) == {a, c}
    assert by_filters(admin, {"instance_type_id": 2}) == {b}
    assert by_filters(admin, {"instance_type_id": "3"}) == {c}
    assert by_filters(admin, {"instance_type_id": [1, "2"]}) == {a, b}
    with pytest.raises(InvalidQuery, match="instance_type_id"):
        nova.instance_get_all_by_filters(admin, {"instance_type_id": "three"})
    with pytest.raises(InvalidQuery, match="host"):
        nova.instance_get_all_by_filters(admin, {"host": 5})


def test_by_filters_limits_a_user_to_its_project_whatever_it_asks(nova_db, admin, ctx):
    mine, theirs = add_instances(nova_db, {}, {"project_id": "project2", "user_id": "user2"})
    assert by_filters(ctx, {}) == {mine}
    assert by_filters(ctx, {"project_id": "project2"}) == {mine}
    assert by_filters(admin, {"project_id": "project2"}) == {theirs}
    assert by_filters(admin, {"user_id": ["user1", "user2"]}) == {mine, theirs}


def test_by_filters_never_changes_the_filters(nova_db, ctx):
    add_instances(nova_db, {"host": "h1"})
    filters = {
        "deleted": False,
        "soft_deleted": False,
        "cleaned": False,
        "host": ["h1"],
        "metadata": {"a": "1"},
        "display_name": "x",
        "changes-since": BASE,
        "filter": [{"name": "tag:a", "value": "1"}],
    }
    before = copy.deepcopy(filters)
    nova.instance_get_all_by_filters(ctx, filters)
    assert filters == before


# -- metadata filters ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["metadata", "system_metadata"])
def test_metadata_filters_match_key_and_value_in_one_row(nova_db, admin, kind):
    model = InstanceMetadata if kind == "metadata" else InstanceSystemMetadata
    exact, crossed, both, stale = add_instances(nova_db, {}, {}, {}, {})
    add(
        nova_db,
        model,
        {"instance_uuid": exact, "key": "a", "value": "1"},
        # a=2, b=1: nova's independent key/value tests matched this one too.
        {"instance_uuid": crossed, "key": "a", "value": "2"},
        {"instance_uuid": crossed, "key": "b", "value": "1"},
        {"instance_uuid": both, "key": "a", "value": "1"},
        {"instance_uuid": both, "key": "b", "value": "2"},
        {"instance_uuid": stale, "key": "a", "value": "1"},
    )
    delete(nova_db, model, model.instance_uuid == stale)
    assert by_filters(admin, {kind: {"a": "1"}}) == {exact, both}
    assert by_filters(admin, {kind: {"a": "1", "b": "2"}}) == {both}
    assert by_filters(admin, {kind: [{"a": "1"}, {"b": "2"}]}) == {both}
    assert by_filters(admin, {kind: {"a": "2"}}) == {crossed}
    assert by_filters(admin, {kind: {"A": "1"}}) == set()
    assert by_filters(admin, {kind: {}}) == {exact, crossed, both, stale}
    with pytest.raises(InvalidQuery, match=kind):
        nova.instance_get_all_by_filters(admin, {kind: "a=1"})


# -- regex filters ------------------------------------------------------------------------------


@pytest.fixture
def named(nova_db: Database) -> dict:
    names = ["Web-1", "web-2", "db-10", "Web\\1", None]
    rows = [
        {"display_name": "Web-1", "launch_index": 4, "locked": True, "launched_at": BASE},
        {"display_name": "web-2", "launch_index": 14, "locked": False},
        {"display_name": "db-10", "launch_index": 40, "locked": None},
        {"display_name": "Web\\1", "launch_index": None, "access_ip_v4": "10.0.0.1"},
        {"display_name": None, "launched_at": BASE + dt.timedelta(microseconds=25)},
    ]
    return dict(zip(names, add_instances(nova_db, *rows), strict=True))


def test_regex_filters_are_case_sensitive_and_anchored_the_same_everywhere(named, admin):
    def match(filters):
        return {name for name, u in named.items() if u in by_filters(admin, filters)}

    assert match({"display_name": "web"}) == {"web-2"}  # search, not a full match
    assert match({"display_name": "Web"}) == {"Web-1", "Web\\1"}
    assert match({"display_name": "^web-"}) == {"web-2"}
    assert match({"display_name": "-1$"}) == {"Web-1"}
    assert match({"display_name": "^(db|web)-[0-9]+$"}) == {"web-2", "db-10"}
    assert match({"display_name": "[Ww]eb.[0-9]"}) == {"Web-1", "web-2", "Web\\1"}
    assert match({"display_name": "\\\\"}) == {"Web\\1"}  # a literal backslash
    assert match({"display_name": "."}) == {"Web-1", "web-2", "db-10", "Web\\1"}  # NULL never
    assert match({"display_name": None}) == {None}
    assert match({"display_name": "^(?:db|web)-(?!2)"}) == {"db-10"}
    assert match({"display_name": "(?<=-)1"}) == {"Web-1", "db-10"}
    assert match({"display_name": "\\d{2}$"}) == {"db-10"}
    assert match({"access_ip_v4": "^10\\.0\\."}) == {"Web\\1"}


def test_regex_filters_on_numbers_booleans_and_times(named, admin):
    def match(filters):
        return {name for name, u in named.items() if u in by_filters(admin, filters)}

    assert match({"launch_index": "^4"}) == {"Web-1", "db-10"}
    assert match({"launch_index": 4}) == {"Web-1", "web-2", "db-10"}  # 4, 14, 40
    assert match({"launch_index": "^4$"}) == {"Web-1"}
    # Booleans read as Python's str(): 'True' / 'False'.
    assert match({"locked": True}) == {"Web-1"}
    assert match({"locked": "False"}) == {"web-2"}
    assert match({"locked": "true"}) == set()
    assert match({"launched_at": "^2014-07-23 10:00:00"}) == {"Web-1", None}
    assert match({"launched_at": "\\.000025$"}) == {None}


def test_regex_filters_reject_bad_patterns_and_skip_unknown_keys(named, admin):
    with pytest.raises(InvalidQuery, match="display_name"):
        nova.instance_get_all_by_filters(admin, {"display_name": "(unclosed"})
    with pytest.raises(InvalidQuery, match="display_name"):
        nova.instance_get_all_by_filters(admin, {"display_name": ["a", "b"]})
    # Constructs the backends' regex dialects read differently are refused everywhere.
    for pattern in ("\\bweb", "(?i)web", "(?P<n>web)", "[[:alpha:]]", "b{,3}"):
        with pytest.raises(InvalidQuery, match="every database"):
            nova.instance_get_all_by_filters(admin, {"display_name": pattern})
    everyone = set(named.values())
    # Not columns of instances: ignored, as nova did.
    for key in ("name", "ip", "security_groups", "info_cache", "no_such_key"):
        assert by_filters(admin, {key: "zzz"}) == everyone


# -- tag filters --------------------------------------------------------------------------------


def test_tag_filters(nova_db, admin):
    red, blue, plain, old = add_instances(nova_db, {}, {}, {}, {})
    add(
        nova_db,
        InstanceMetadata,
        {"instance_uuid": red, "key": "color", "value": "red"},
        {"instance_uuid": red, "key": "size", "value": "big"},
        {"instance_uuid": blue, "key": "color", "value": "blue"},
        {"instance_uuid": plain, "key": "owner", "value": "me"},
        {"instance_uuid": old, "key": "color", "value": "red"},
    )
    delete(nova_db, InstanceMetadata, InstanceMetadata.instance_uuid == old)

    def tags(*blocks):
        return by_filters(admin, {"filter": list(blocks)})

    assert tags({"name": "tag-key", "value": "color"}) == {red, blue}
    assert tags({"name": "tag-value", "value": ["me", "big"]}) == {red, plain}
    # tag-key and tag-value entries are OR-ed together.
    assert tags({"name": "tag-key", "value": "owner"}, {"name": "tag-value", "value": "blue"}) == {
        plain,
        blue,
    }
    assert tags({"name": "tag:color", "value": "red"}) == {red}
    assert tags({"name": "tag:color", "value": ["red", "blue"]}) == {red, blue}
    assert tags({"name": "tag:color", "value": {"x": "blue"}}) == {blue}
    # tag:<key> entries are AND-ed.
    assert tags({"name": "tag:color", "value": "red"}, {"name": "tag:size", "value": "big"}) == {
        red
    }
    assert (
        tags({"name": "tag:color", "value": "blue"}, {"name": "tag:size", "value": "big"}) == set()
    )
    # Entries that are not dicts, have no name, or another prefix are skipped.
    assert tags("junk", {"value": "x"}, {"name": "other", "value": "x"}) == {red, blue, plain, old}
    with pytest.raises(exception.InvalidParameterValue, match="color"):
        tags({"name": "tag-color", "value": "red"})


# -- sorting, limits and markers ----------------------------------------------------------------


def test_sort_key_and_direction(nova_db, admin):
    b, a, c, none = add_instances(
        nova_db,
        {"display_name": "b"},
        {"display_name": "a"},
        {"display_name": "c"},
        {"display_name": None},
    )
    # Default: created_at descending (then id).
    assert uuids(nova.instance_get_all_by_filters(admin, {})) == [none, c, a, b]
    listed = nova.instance_get_all_by_filters(admin, {}, sort_key="display_name", sort_dir="asc")
    assert uuids(listed) == [none, a, b, c]  # NULL is the smallest on every backend
    listed = nova.instance_get_all_by_filters(admin, {}, "display_name", "desc")
    assert uuids(listed) == [c, b, a, none]
    with pytest.raises(InvalidSortKey, match="allowed: .*display_name"):
        nova.instance_get_all_by_filters(admin, {}, sort_key="name")
    with pytest.raises(InvalidSortKey, match="asc, desc"):
        nova.instance_get_all_by_filters(admin, {}, sort_dir="sideways")


def test_limit_and_marker(nova_db, admin, ctx):
    first, second, third, theirs = add_instances(nova_db, {}, {}, {}, {"project_id": "project2"})
    asc = {"sort_key": "created_at", "sort_dir": "asc"}
    assert uuids(nova.instance_get_all_by_filters(admin, {}, limit=2, **asc)) == [first, second]
    assert uuids(nova.instance_get_all_by_filters(admin, {}, marker=first, **asc)) == [
        second,
        third,
        theirs,
    ]
    assert uuids(nova.instance_get_all_by_filters(ctx, {}, marker=second, **asc)) == [third]
    assert nova.instance_get_all_by_filters(admin, {}, limit=0) == []
    assert nova.instance_get_all_by_filters(admin, {}, limit=0, marker=str(uuid.uuid4())) == []
    with pytest.raises(InvalidQuery, match="limit"):
        nova.instance_get_all_by_filters(admin, {}, limit=-1)
    # The marker is looked up as the caller sees instances.
    with pytest.raises(exception.MarkerNotFound):
        nova.instance_get_all_by_filters(ctx, {}, marker=theirs)
    with pytest.raises(exception.MarkerNotFound):
        nova.instance_get_all_by_filters(admin, {}, marker="no-such-instance")
    delete_instances(nova_db, first)
    with pytest.raises(exception.MarkerNotFound):
        nova.instance_get_all_by_filters(admin, {}, marker=first, **asc)
    listed = nova.instance_get_all_by_filters(get_admin_context("yes"), {}, marker=first, **asc)
    assert uuids(listed) == [second, third, theirs]


def test_by_filters_joins_use_slave_and_leaves_columns_to_join_alone(world, admin):
    asked = ["pci_devices", "info_cache"]
    listed = nova.instance_get_all_by_filters(
        admin, {"uuid": world["full"]}, columns_to_join=asked, use_slave=True
    )
    assert asked == ["pci_devices", "info_cache"]
    (full,) = listed
    assert full["info_cache"]["network_info"] == "[]"
    assert [p["status"] for p in full["pci_devices"]] == ["allocated"]
    assert full["metadata"] == [] and "security_groups" not in full
    (gone,) = nova.instance_get_all_by_filters(admin, {"uuid": world["gone"]})
    assert gone["deleted"] == gone["id"]
    with pytest.raises(InvalidQuery, match="filters"):
        nova.instance_get_all_by_filters(admin, ["host", "h1"])


# -- by host --------------------------------------------------------------------------------------


def test_get_all_by_host(nova_db, world, admin):
    listed = {r["uuid"]: r for r in nova.instance_get_all_by_host(admin, "h1")}
    assert set(listed) == {world["full"], world["bare"]}
    full = listed[world["full"]]
    assert full["info_cache"] is not None and len(full["security_groups"]) == 1
    assert [m["key"] for m in full["metadata"]] == ["a"]
    assert [m["key"] for m in full["system_metadata"]] == ["s"]
    # columns_to_join only picks which of metadata / system_metadata / pci_devices to fill.
    (full,) = [
        r
        for r in nova.instance_get_all_by_host(admin, "h1", ["pci_devices"], use_slave=True)
        if r["uuid"] == world["full"]
    ]
    assert full["metadata"] == [] and full["system_metadata"] == []
    assert [p["address"] for p in full["pci_devices"]] == ["0000:00:01.1"]
    assert full["info_cache"] is not None
    assert found(nova.instance_get_all_by_host(get_admin_context("yes"), "h1")) == {
        world["full"],
        world["bare"],
        world["gone"],
    }
    assert nova.instance_get_all_by_host(admin, "nowhere") == []
    (homeless,) = add_instances(nova_db, {"host": None})
    assert found(nova.instance_get_all_by_host(admin, None)) == {homeless}


def test_get_all_by_host_and_node(world, admin):
    listed = nova.instance_get_all_by_host_and_node(admin, "h1", "n1")
    assert found(listed) == {world["full"]}
    (full,) = listed
    # Nothing joined, nothing filled.
    assert full["metadata"] == [] and full["system_metadata"] == []
    assert "info_cache" not in full and "security_groups" not in full
    assert found(nova.instance_get_all_by_host_and_node(admin, "h1", "n2")) == {world["bare"]}
    deleted_too = get_admin_context("yes")
    assert found(nova.instance_get_all_by_host_and_node(deleted_too, "h1", "n1")) == {
        world["full"],
        world["gone"],
    }


def test_get_all_by_host_and_not_type(nova_db, admin):
    one, two, untyped, elsewhere = add_instances(
        nova_db,
        {"host": "h1", "instance_type_id": 1},
        {"host": "h1", "instance_type_id": 2},
        {"host": "h1", "instance_type_id": None},
        {"host": "h2", "instance_type_id": 2},
    )
    add(nova_db, InstanceMetadata, {"instance_uuid": two, "key": "k", "value": "v"})
    listed = nova.instance_get_all_by_host_and_not_type(admin, "h1", 1)
    assert found(listed) == {two}  # SQL's !=: an untyped instance is left out, as in nova
    assert [m["key"] for m in listed[0]["metadata"]] == ["k"]
    assert "info_cache" in listed[0] and "security_groups" in listed[0]
    assert found(nova.instance_get_all_by_host_and_not_type(admin, "h1")) == {one, two}
    with pytest.raises(InvalidQuery, match="type_id"):
        nova.instance_get_all_by_host_and_not_type(admin, "h1", "one")
    assert untyped and elsewhere


# -- hung in rebooting --------------------------------------------------------------------------


def test_get_all_hung_in_rebooting(nova_db, admin):
    now = utcnow()
    hung, recent, idle, never, gone = add_instances(
        nova_db,
        {"task_state": "rebooting", "updated_at": now - dt.timedelta(minutes=10)},
        {"task_state": "rebooting", "updated_at": now},
        {"task_state": None, "updated_at": now - dt.timedelta(minutes=10)},
        {"task_state": "rebooting", "updated_at": None},
        {"task_state": "rebooting", "updated_at": now - dt.timedelta(minutes=10)},
    )
    add(nova_db, InstanceMetadata, {"instance_uuid": hung, "key": "k", "value": "v"})
    delete_instances(nova_db, gone)
    listed = nova.instance_get_all_hung_in_rebooting(admin, 300)
    assert found(listed) == {hung}
    assert listed[0]["metadata"] == [] and "info_cache" not in listed[0]
    assert found(nova.instance_get_all_hung_in_rebooting(get_admin_context("yes"), 300.5)) == {
        hung,
        gone,
    }
    assert found(nova.instance_get_all_hung_in_rebooting(admin, 3600)) == set()
    with pytest.raises(InvalidQuery, match="reboot_window"):
        nova.instance_get_all_hung_in_rebooting(admin, "300")
    assert recent and idle and never


# -- active by window ---------------------------------------------------------------------------


def test_get_active_by_window_joined(nova_db, admin, ctx):
    t = BASE
    running, ended_late, ended_early, late_start, theirs, gone = add_instances(
        nova_db,
        {"launched_at": t, "terminated_at": None, "host": "h1"},
        {"launched_at": t, "terminated_at": t + dt.timedelta(hours=2), "host": "h2"},
        {"launched_at": t, "terminated_at": t - dt.timedelta(hours=1)},
        {"launched_at": t + dt.timedelta(hours=5)},
        {"launched_at": t, "project_id": "project2", "user_id": "user2"},
        {"launched_at": t, "terminated_at": t + dt.timedelta(hours=3)},
    )
    add(nova_db, InstanceSystemMetadata, {"instance_uuid": gone, "key": "s", "value": "1"})
    delete_instances(nova_db, gone)
    begin, end = t + dt.timedelta(hours=1), t + dt.timedelta(hours=4)
    window = nova.instance_get_active_by_window_joined(admin, begin, end)
    # Deleted instances count (they were active in the window), whatever read_deleted says.
    assert found(window) == {running, ended_late, theirs, gone}
    (gone_row,) = [r for r in window if r["uuid"] == gone]
    assert [m["key"] for m in gone_row["system_metadata"]] == ["s"]
    assert gone_row["security_groups"] == [] and gone_row["info_cache"] is None
    assert found(nova.instance_get_active_by_window_joined(admin, begin)) == {
        running,
        ended_late,
        late_start,
        theirs,
        gone,
    }
    assert found(nova.instance_get_active_by_window_joined(admin, begin, end, "project2")) == {
        theirs
    }
    assert found(nova.instance_get_active_by_window_joined(admin, begin, end, host="h2")) == {
        ended_late
    }
    # Zone-aware bounds are converted to UTC.
    aware = begin.replace(tzinfo=dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert found(nova.instance_get_active_by_window_joined(admin, aware, end)) == found(window)
    # Unlike nova, a user sees only its own project's instances in the window.
    assert found(nova.instance_get_active_by_window_joined(ctx, begin, end)) == {
        running,
        ended_late,
        gone,
    }
    assert found(nova.instance_get_active_by_window_joined(ctx, begin, end, "project1")) == {
        running,
        ended_late,
        gone,
    }
    with pytest.raises(exception.Forbidden):
        nova.instance_get_active_by_window_joined(ctx, begin, end, "project2")
    with pytest.raises(InvalidQuery, match="begin"):
        nova.instance_get_active_by_window_joined(admin, None)
    assert ended_early

"""Security groups, their rules, default rules and instance membership (nova notes §2.20,
§3.6) on every backend: returns and what they load, errors (and that a rejected call
changes nothing), access checks, project scoping and read_deleted."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

import dblayer.stores.nova as nova
from dblayer.core import Database, InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, models
from dblayer.stores.nova.context import RequestContext
from tests.stores.nova.conftest import make_instance, table_rows

Group = models.SecurityGroup
Rule = models.SecurityGroupIngressRule
DefaultRule = models.SecurityGroupIngressDefaultRule
Link = models.SecurityGroupInstanceAssociation


def _group(ctx: Any, name: str, **more: Any) -> Any:
    values = {"name": name, "description": f"{name} group"}
    values.update(project_id=ctx.project_id, user_id=ctx.user_id)
    values.update(more)
    return nova.security_group_create(ctx, values)


def _rule(ctx: Any, parent: int, grantee: int | None = None, port: int = 22) -> Any:
    values = {"parent_group_id": parent, "protocol": "tcp", "from_port": port, "to_port": port}
    if grantee is None:
        values["cidr"] = "10.0.0.0/8"
    else:
        values["group_id"] = grantee
    return nova.security_group_rule_create(ctx, values)


def _link(db: Database, instance_uuid: str, group_id: int, deleted: bool = False) -> None:
    with db.transaction() as conn:
        result = conn.execute(
            sa.insert(Link.__table__).values(
                instance_uuid=instance_uuid, security_group_id=group_id, deleted=0
            )
        )
        if deleted:
            new_id = result.inserted_primary_key[0]
            conn.execute(sa.update(Link.__table__).where(Link.id == new_id).values(deleted=new_id))


def _live_ids(db: Database, model: Any) -> list[int]:
    return [r["id"] for r in table_rows(db, model) if r["deleted"] == 0]


def _settled(obj: Any, seen: set[int] | None = None) -> bool:
    """Whether ``obj`` and every object it holds have all their relationships loaded."""
    seen = set() if seen is None else seen
    if obj is None or id(obj) in seen:
        return True
    seen.add(id(obj))
    state = sa.inspect(obj)
    relationships = {r.key for r in state.mapper.relationships}
    if relationships & state.unloaded:
        return False
    for key in relationships:
        value = state.dict[key]
        for child in value if isinstance(value, list) else [value]:
            if not _settled(child, seen):
                return False
    return True


# -- groups ----------------------------------------------------------------------------------


def test_create_and_get(nova_db, ctx, other_ctx, admin):
    web = _group(ctx, "web")
    assert (web.name, web.description, web.project_id, web.user_id) == (
        "web",
        "web group",
        "project1",
        "user1",
    )
    assert web.rules == [] and web.instances == [] and web.deleted == 0
    assert web["name"] == "web" and _settled(web)

    # The same name again in the project: SecurityGroupExists (400), nothing written.
    with pytest.raises(exception.SecurityGroupExists) as caught:
        _group(ctx, "web", description="again")
    assert isinstance(caught.value, exception.Invalid) and caught.value.kwargs["code"] == 400
    assert "project1" in str(caught.value) and "web" in str(caught.value)
    assert _live_ids(nova_db, Group) == [web.id]
    # ... but fine in another project, and once the first is deleted.
    other = _group(other_ctx, "web")
    nova.security_group_destroy(ctx, web.id)
    again = _group(ctx, "web")
    assert _live_ids(nova_db, Group) == [other.id, again.id]

    # Values are checked before any SQL.
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.security_group_create(ctx, {"name": "x", "bogus": 1})
    with pytest.raises(InvalidValue, match="255"):
        nova.security_group_create(ctx, {"name": "x" * 256})
    with pytest.raises(InvalidValue):
        nova.security_group_create(ctx, {"name": 7})
    assert len(table_rows(nova_db, Group)) == 3

    # get: the rules, each with its grantee group; the instances only when asked.
    rule = _rule(ctx, again.id, grantee=other.id)
    inst = make_instance(nova_db)
    _link(nova_db, inst, again.id)
    got = nova.security_group_get(ctx, again.id)
    assert [r.id for r in got.rules] == [rule.id]
    assert got.rules[0].grantee_group.id == other.id and got.instances == []
    assert _settled(got)
    joined = nova.security_group_get(
        ctx, again.id, columns_to_join=["instances.info_cache", "rules", "anything-else"]
    )
    assert [i.uuid for i in joined.instances] == [inst] and _settled(joined)
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.security_group_get(ctx, again.id, columns_to_join=["instances.bogus"])
    with pytest.raises(InvalidQuery):
        nova.security_group_get(ctx, again.id, columns_to_join="instances")

    # Scoped to a user's project (another's group is not found); admins see every group.
    with pytest.raises(exception.SecurityGroupNotFound) as caught:
        nova.security_group_get(ctx, other.id)
    assert caught.value.kwargs["security_group_id"] == other.id
    assert nova.security_group_get(admin, other.id).project_id == "project2"
    with pytest.raises(exception.SecurityGroupNotFound):
        nova.security_group_get(ctx, 10**6)
    with pytest.raises(InvalidValue):
        nova.security_group_get(ctx, "one")
    # A deleted group: not found, unless the context reads deleted rows.
    with pytest.raises(exception.SecurityGroupNotFound):
        nova.security_group_get(ctx, web.id)
    gone = nova.security_group_get(ctx.elevated(read_deleted="yes"), web.id)
    assert gone.id == web.id and gone.deleted == web.id
    only = RequestContext("user1", "project1", read_deleted="only")
    assert nova.security_group_get(only, web.id).id == web.id
    with pytest.raises(exception.SecurityGroupNotFound):
        nova.security_group_get(only, again.id)


def test_update(nova_db, ctx, other_ctx):
    web = _group(ctx, "web")
    db_group = _group(ctx, "db")
    rule = _rule(ctx, web.id, grantee=db_group.id)
    inst = make_instance(nova_db)
    _link(nova_db, inst, web.id)

    updated = nova.security_group_update(ctx, web.id, {"description": "new"}, ["instances"])
    assert (updated.id, updated.name, updated.description) == (web.id, "web", "new")
    assert updated.updated_at is not None
    assert [r.id for r in updated.rules] == [rule.id]
    assert updated.rules[0].grantee_group.name == "db"
    assert [i.uuid for i in updated.instances] == [inst] and _settled(updated)
    assert nova.security_group_update(ctx, web.id, {"name": "www"}).instances == []
    # Called inside another unit of work that holds the group already: read afresh.
    with nova.get_database().session():
        held = nova.security_group_get(ctx, web.id)
        assert nova.security_group_update(ctx, web.id, {"description": "inner"}) is held
        assert held.description == "inner" and [r.id for r in held.rules] == [rule.id]
    nova.security_group_update(ctx, web.id, {"description": "new"})

    # A name the project already has: SecurityGroupExists, nothing changed.
    with pytest.raises(exception.SecurityGroupExists) as caught:
        nova.security_group_update(ctx, web.id, {"name": "db", "description": "x"})
    assert caught.value.kwargs["security_group_name"] == "db"
    assert caught.value.kwargs["project_id"] == "project1"
    row = next(r for r in table_rows(nova_db, Group) if r["id"] == web.id)
    assert (row["name"], row["description"]) == ("www", "new")

    with pytest.raises(exception.SecurityGroupNotFound):
        nova.security_group_update(ctx, 10**6, {"description": "x"})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.security_group_update(ctx, web.id, {"bogus": 1})
    with pytest.raises(InvalidQuery, match="nothing"):
        nova.security_group_update(ctx, web.id, {"description": "x"}, ["nothing"])
    assert next(r for r in table_rows(nova_db, Group) if r["id"] == web.id)["description"] == "new"

    # Not scoped (nova left that to its API layer); a deleted group only with read_deleted.
    assert nova.security_group_update(other_ctx, web.id, {"description": "o"}).description == "o"
    nova.security_group_destroy(ctx, db_group.id)
    with pytest.raises(exception.SecurityGroupNotFound):
        nova.security_group_update(ctx, db_group.id, {"description": "x"})
    yes = ctx.elevated(read_deleted="yes")
    assert nova.security_group_update(yes, db_group.id, {"description": "x"}).description == "x"


def test_listings(nova_db, ctx, other_ctx, admin):
    web = _group(ctx, "web")
    dead = _group(ctx, "dead")
    theirs = _group(other_ctx, "theirs")
    nobody = nova.security_group_create(admin, {"name": "nobody's"})
    rule = _rule(ctx, web.id, grantee=theirs.id)
    nova.security_group_destroy(ctx, dead.id)

    # get_all: the context's read_deleted, every project's groups, rules loaded.
    everything = nova.security_group_get_all(ctx)
    assert [g.id for g in everything] == [web.id, theirs.id, nobody.id]
    assert [r.id for r in everything[0].rules] == [rule.id]
    assert everything[0].rules[0].grantee_group is everything[1]
    assert all(_settled(g) for g in everything)
    with_deleted = nova.security_group_get_all(ctx.elevated(read_deleted="yes"))
    assert [g.id for g in with_deleted] == [web.id, dead.id, theirs.id, nobody.id]
    only = RequestContext("user1", "project1", read_deleted="only")
    assert [g.id for g in nova.security_group_get_all(only)] == [dead.id]

    # get_by_project: live groups of that project (None: the groups of no project).
    mine = nova.security_group_get_by_project(ctx, "project1")
    assert [g.id for g in mine] == [web.id] and [r.id for r in mine[0].rules] == [rule.id]
    assert [g.id for g in nova.security_group_get_by_project(ctx, "project2")] == [theirs.id]
    assert [g.id for g in nova.security_group_get_by_project(admin, None)] == [nobody.id]
    assert nova.security_group_get_by_project(ctx.elevated(read_deleted="yes"), "nope") == []

    # get_by_name: live only, with instances and rules whatever columns_to_join says.
    inst = make_instance(nova_db)
    _link(nova_db, inst, web.id)
    found = nova.security_group_get_by_name(ctx, "project1", "web", columns_to_join=[])
    assert found.id == web.id and [i.uuid for i in found.instances] == [inst]
    assert [r.id for r in found.rules] == [rule.id] and _settled(found)
    assert nova.security_group_get_by_name(admin, None, "nobody's").id == nobody.id
    for project, name in (("project1", "dead"), ("project1", "theirs"), ("project1", "Web")):
        with pytest.raises(exception.SecurityGroupNotFoundForProject) as caught:
            nova.security_group_get_by_name(ctx.elevated(read_deleted="yes"), project, name)
        assert caught.value.kwargs["security_group_id"] == name
        assert caught.value.kwargs["project_id"] == project
        assert isinstance(caught.value, exception.SecurityGroupNotFound)

    # get_by_instance: live groups through live links of the live instance, each once.
    other_inst = make_instance(nova_db)
    _link(nova_db, inst, web.id)
    _link(nova_db, inst, theirs.id, deleted=True)
    _link(nova_db, inst, dead.id)
    _link(nova_db, other_inst, theirs.id)
    groups = nova.security_group_get_by_instance(ctx, inst)
    assert [g.id for g in groups] == [web.id] and [r.id for r in groups[0].rules] == [rule.id]
    assert [g.id for g in nova.security_group_get_by_instance(ctx, other_inst)] == [theirs.id]
    assert nova.security_group_get_by_instance(ctx, str(uuid.uuid4())) == []
    with nova.get_database().session() as session:
        session.scalars(
            sa.select(models.Instance).where(models.Instance.uuid == inst)
        ).one().soft_delete(session)
    assert nova.security_group_get_by_instance(ctx.elevated(read_deleted="yes"), inst) == []
    with pytest.raises(InvalidValue):
        nova.security_group_get_by_instance(ctx, 12)


def test_membership_in_use_and_destroy(nova_db, ctx, other_ctx):
    web = _group(ctx, "web")
    other = _group(ctx, "other")
    inst = make_instance(nova_db)
    other_inst = make_instance(nova_db, project_id="project2")
    assert nova.security_group_in_use(ctx, web.id) is False

    # instance_add_security_group has no access check and no duplicate check (as nova).
    nobody = RequestContext(None, None)
    assert nova.instance_add_security_group(nobody, inst, web.id) is None
    nova.instance_add_security_group(ctx, inst, web.id)
    nova.instance_add_security_group(ctx, other_inst, other.id)
    links = table_rows(nova_db, Link)
    assert [(r["instance_uuid"], r["security_group_id"]) for r in links] == [
        (inst, web.id),
        (inst, web.id),
        (other_inst, other.id),
    ]
    assert nova.security_group_in_use(ctx, web.id) is True
    # Unknown instance or group: nova's error, nothing written.
    with pytest.raises(exception.InstanceNotFound):
        nova.instance_add_security_group(ctx, str(uuid.uuid4()), web.id)
    with pytest.raises(exception.SecurityGroupNotFound):
        nova.instance_add_security_group(ctx, inst, 10**6)
    with pytest.raises(InvalidValue):
        nova.instance_add_security_group(ctx, None, web.id)
    with pytest.raises(InvalidValue):
        nova.instance_add_security_group(ctx, inst, "web")
    assert len(table_rows(nova_db, Link)) == 3

    # instance_remove_security_group: every matching live link, never an error.
    with pytest.raises(exception.Forbidden):
        nova.instance_remove_security_group(nobody, inst, web.id)
    only = RequestContext("user1", "project1", read_deleted="only")
    nova.instance_remove_security_group(only, inst, web.id)  # shows no live link: no change
    assert nova.security_group_in_use(ctx, web.id) is True
    nova.instance_remove_security_group(ctx, inst, web.id)
    nova.instance_remove_security_group(ctx, inst, web.id)
    nova.instance_remove_security_group(ctx, str(uuid.uuid4()), 10**6)
    assert _live_ids(nova_db, Link) == [links[2]["id"]]
    assert nova.security_group_in_use(ctx, web.id) is False
    assert nova.security_group_in_use(ctx, other.id) is True
    # A deleted instance does not keep its group in use.
    with nova.get_database().transaction() as conn:
        conn.execute(
            sa.update(models.Instance.__table__)
            .where(models.Instance.uuid == other_inst)
            .values(deleted=models.Instance.id)
        )
    assert nova.security_group_in_use(ctx, other.id) is False
    assert nova.security_group_in_use(ctx, 10**6) is False

    # security_group_destroy: the group, its links, its rules, the rules granting to it.
    nova.instance_add_security_group(ctx, inst, web.id)
    in_web = _rule(ctx, web.id)
    to_web = _rule(ctx, other.id, grantee=web.id)
    other_rule = _rule(ctx, other.id, port=80)
    before = {r["id"]: r for r in table_rows(nova_db, Rule)}
    nova.security_group_destroy(ctx, web.id)
    assert _live_ids(nova_db, Group) == [other.id]
    assert _live_ids(nova_db, Link) == [links[2]["id"]]
    assert _live_ids(nova_db, Rule) == [other_rule.id]
    after = {r["id"]: r for r in table_rows(nova_db, Rule)}
    for rule_id in (in_web.id, to_web.id):
        assert after[rule_id]["deleted"] == rule_id and after[rule_id]["deleted_at"] is not None
        assert after[rule_id]["updated_at"] == before[rule_id]["updated_at"]
    # No error for a group that is gone or never was; nothing else changes.
    nova.security_group_destroy(ctx, web.id)
    nova.security_group_destroy(ctx, 10**6)
    assert table_rows(nova_db, Rule) == list(after.values())
    with pytest.raises(InvalidValue):
        nova.security_group_destroy(ctx, None)


# -- rules -----------------------------------------------------------------------------------


def test_rules(nova_db, ctx, other_ctx):
    web = _group(ctx, "web")
    db_group = _group(ctx, "db")
    inst = nova.instance_create(ctx, {"system_metadata": {"k": "v"}}).uuid
    nova.instance_add_security_group(ctx, inst, db_group.id)

    by_cidr = _rule(ctx, web.id)
    assert (by_cidr.protocol, by_cidr.from_port, by_cidr.cidr, by_cidr.group_id) == (
        "tcp",
        22,
        "10.0.0.0/8",
        None,
    )
    assert by_cidr.parent_group.id == web.id and by_cidr.grantee_group is None
    assert _settled(by_cidr)
    by_group = _rule(ctx, web.id, grantee=db_group.id, port=5432)
    assert by_group.grantee_group.name == "db"
    # Groups that do not exist: nova's error, nothing written.
    with pytest.raises(exception.SecurityGroupNotFound):
        _rule(ctx, 10**6)
    with pytest.raises(exception.SecurityGroupNotFound):
        _rule(ctx, web.id, grantee=10**6)
    with pytest.raises(InvalidValue):
        nova.security_group_rule_create(ctx, {"parent_group_id": web.id, "from_port": "22"})
    with pytest.raises(InvalidQuery, match="bogus"):
        nova.security_group_rule_create(ctx, {"parent_group_id": web.id, "bogus": 1})
    assert _live_ids(nova_db, Rule) == [by_cidr.id, by_group.id]

    # get: by id, the context's read_deleted.
    got = nova.security_group_rule_get(other_ctx, by_group.id)
    assert (got.id, got.parent_group.name, got.grantee_group.name) == (by_group.id, "web", "db")
    with pytest.raises(exception.SecurityGroupNotFoundForRule) as caught:
        nova.security_group_rule_get(ctx, 10**6)
    assert caught.value.kwargs["rule_id"] == 10**6
    assert isinstance(caught.value, exception.SecurityGroupNotFound)

    # The rules of a group: by default each grantee group's instances with their system
    # metadata and info cache.
    rules = nova.security_group_rule_get_by_security_group(ctx, web.id)
    assert [r.id for r in rules] == [by_cidr.id, by_group.id]
    (grantee_inst,) = rules[1].grantee_group.instances
    assert grantee_inst.uuid == inst
    assert [(m.key, m.value) for m in grantee_inst.system_metadata] == [("k", "v")]
    assert grantee_inst.info_cache is not None and all(_settled(r) for r in rules)
    plain = nova.security_group_rule_get_by_security_group(ctx, web.id, columns_to_join=[])
    assert plain[1].grantee_group.name == "db" and plain[1].grantee_group.instances == []
    with pytest.raises(InvalidQuery, match="grantee"):
        nova.security_group_rule_get_by_security_group(ctx, web.id, ["grantee"])
    assert nova.security_group_rule_get_by_security_group(ctx, db_group.id) == []

    # Rules granting to a group; rule counts (live rules only).
    grantees = nova.security_group_rule_get_by_security_group_grantee(ctx, db_group.id)
    assert [r.id for r in grantees] == [by_group.id] and grantees[0].parent_group.name == "web"
    assert nova.security_group_rule_count_by_group(ctx, web.id) == 2
    assert nova.security_group_rule_count_by_group(ctx, db_group.id) == 0

    # destroy: soft delete; a missing or deleted rule is SecurityGroupNotFoundForRule.
    nova.security_group_rule_destroy(ctx, by_cidr.id)
    assert _live_ids(nova_db, Rule) == [by_group.id]
    for rule_id in (by_cidr.id, 10**6):
        with pytest.raises(exception.SecurityGroupNotFoundForRule):
            nova.security_group_rule_destroy(ctx, rule_id)
    # read_deleted 'yes' shows the deleted rule (no error, no change).
    yes = ctx.elevated(read_deleted="yes")
    nova.security_group_rule_destroy(yes, by_cidr.id)
    assert nova.security_group_rule_count_by_group(yes, web.id) == 1
    with pytest.raises(exception.SecurityGroupNotFoundForRule):
        nova.security_group_rule_get(ctx, by_cidr.id)
    assert nova.security_group_rule_get(yes, by_cidr.id).deleted == by_cidr.id
    assert [r.id for r in nova.security_group_rule_get_by_security_group(yes, web.id)] == [
        by_cidr.id,
        by_group.id,
    ]
    only = RequestContext("user1", "project1", read_deleted="only")
    assert [
        r.id for r in nova.security_group_rule_get_by_security_group_grantee(only, db_group.id)
    ] == []
    with pytest.raises(exception.SecurityGroupNotFoundForRule):
        nova.security_group_rule_destroy(only, by_group.id)
    assert _live_ids(nova_db, Rule) == [by_group.id]


def test_default_rules(nova_db, ctx, admin):
    with pytest.raises(exception.AdminRequired):
        nova.security_group_default_rule_create(ctx, {"protocol": "tcp"})
    ssh = nova.security_group_default_rule_create(
        admin, {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "0.0.0.9/0"}
    )
    icmp = nova.security_group_default_rule_create(admin, {"protocol": "icmp", "cidr": "::/0"})
    assert (ssh.protocol, ssh.from_port, ssh.to_port, ssh.cidr) == ("tcp", 22, 22, "0.0.0.0/0")
    with pytest.raises(InvalidValue, match="5"):
        nova.security_group_default_rule_create(admin, {"protocol": "tcp-long"})
    with pytest.raises(InvalidQuery, match="group_id"):
        nova.security_group_default_rule_create(admin, {"group_id": 1})
    assert [r.id for r in nova.security_group_default_rule_list(ctx)] == [ssh.id, icmp.id]
    assert nova.security_group_default_rule_get(ctx, icmp.id).cidr == "::/0"

    # Not found is a 400 (nova's class), with a readable message.
    with pytest.raises(exception.SecurityGroupDefaultRuleNotFound) as caught:
        nova.security_group_default_rule_get(ctx, 10**6)
    assert isinstance(caught.value, exception.Invalid) and caught.value.kwargs["code"] == 400
    assert str(caught.value) == f"Security group default rule {10**6} could not be found."

    with pytest.raises(exception.AdminRequired):
        nova.security_group_default_rule_destroy(ctx, ssh.id)
    nova.security_group_default_rule_destroy(admin, ssh.id)
    with pytest.raises(exception.SecurityGroupDefaultRuleNotFound):
        nova.security_group_default_rule_destroy(admin, ssh.id)
    assert _live_ids(nova_db, DefaultRule) == [icmp.id]
    with pytest.raises(exception.SecurityGroupDefaultRuleNotFound):
        nova.security_group_default_rule_get(ctx, ssh.id)
    yes = ctx.elevated(read_deleted="yes")
    assert nova.security_group_default_rule_get(yes, ssh.id).deleted == ssh.id
    assert [r.id for r in nova.security_group_default_rule_list(yes)] == [ssh.id, icmp.id]

    # A new default group gets a copy of the live default rules, each grantee loaded.
    group = nova.security_group_ensure_default(ctx)
    assert [(r.protocol, r.cidr, r.grantee_group) for r in group.rules] == [("icmp", "::/0", None)]
    self_rule = _rule(ctx, group.id, grantee=group.id)
    again = nova.security_group_ensure_default(ctx)
    assert again.id == group.id and _settled(again)
    assert [(r.id, r.grantee_group) for r in again.rules][1] == (self_rule.id, again)


def test_access_checks(nova_db, ctx):
    group = _group(ctx, "web")
    nobody = RequestContext(None, "project1")
    user_calls = [
        lambda c: nova.security_group_create(c, {"name": "x"}),
        lambda c: nova.security_group_get(c, group.id),
        lambda c: nova.security_group_get_all(c),
        lambda c: nova.security_group_get_by_instance(c, str(uuid.uuid4())),
        lambda c: nova.security_group_get_by_name(c, "project1", "web"),
        lambda c: nova.security_group_get_by_project(c, "project1"),
        lambda c: nova.security_group_in_use(c, group.id),
        lambda c: nova.security_group_update(c, group.id, {"name": "y"}),
        lambda c: nova.security_group_destroy(c, group.id),
        lambda c: nova.security_group_rule_create(c, {"parent_group_id": group.id}),
        lambda c: nova.security_group_rule_get(c, 1),
        lambda c: nova.security_group_rule_get_by_security_group(c, group.id),
        lambda c: nova.security_group_rule_get_by_security_group_grantee(c, group.id),
        lambda c: nova.security_group_rule_destroy(c, 1),
        lambda c: nova.security_group_rule_count_by_group(c, group.id),
        lambda c: nova.security_group_default_rule_get(c, 1),
        lambda c: nova.security_group_default_rule_list(c),
    ]
    for call in user_calls:
        with pytest.raises(exception.Forbidden):
            call(nobody)
    # ensure_default has no check of its own: the context's (here missing) user is recorded.
    assert nova.security_group_ensure_default(nobody).user_id is None
    assert [g["name"] for g in table_rows(nova_db, Group)] == ["web", "default"]
    assert table_rows(nova_db, Rule) == []

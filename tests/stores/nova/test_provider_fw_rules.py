"""Provider firewall rules (nova notes §3.6) on every backend: admin only, create returns the
row, the listing follows read_deleted, destroy soft-deletes and never complains."""

from __future__ import annotations

import pytest

import dblayer.stores.nova as nova
from dblayer.core import InvalidQuery, InvalidValue
from dblayer.stores.nova import exception, models
from dblayer.stores.nova.context import RequestContext
from tests.stores.nova.conftest import table_rows

Rule = models.ProviderFirewallRule


def test_provider_fw_rules(nova_db, admin, ctx):
    ssh = nova.provider_fw_rule_create(
        admin, {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.1.2.3/16"}
    )
    assert (ssh.protocol, ssh.from_port, ssh.to_port, ssh.cidr) == ("tcp", 22, 22, "10.1.0.0/16")
    assert ssh.id is not None and ssh.deleted == 0 and ssh["protocol"] == "tcp"
    udp = nova.provider_fw_rule_create(admin, {"protocol": "udp", "cidr": "2001:db8::/32"})

    # Values are checked before any SQL: nothing is written.
    with pytest.raises(InvalidValue, match="5"):
        nova.provider_fw_rule_create(admin, {"protocol": "icmpv6"})
    with pytest.raises(InvalidValue):
        nova.provider_fw_rule_create(admin, {"from_port": "22"})
    with pytest.raises(InvalidQuery, match="group_id"):
        nova.provider_fw_rule_create(admin, {"group_id": 1})
    assert [r["id"] for r in table_rows(nova_db, Rule)] == [ssh.id, udp.id]

    assert [r.id for r in nova.provider_fw_rule_get_all(admin)] == [ssh.id, udp.id]

    # destroy: soft delete (updated_at kept); a missing or deleted rule is no error.
    before = table_rows(nova_db, Rule)[0]
    nova.provider_fw_rule_destroy(admin, ssh.id)
    after = table_rows(nova_db, Rule)[0]
    assert after["deleted"] == ssh.id and after["deleted_at"] is not None
    assert after["updated_at"] == before["updated_at"]
    nova.provider_fw_rule_destroy(admin, ssh.id)
    nova.provider_fw_rule_destroy(admin, 10**6)
    assert table_rows(nova_db, Rule)[0] == after
    with pytest.raises(InvalidValue):
        nova.provider_fw_rule_destroy(admin, "one")

    # The listing follows the context's read_deleted.
    assert [r.id for r in nova.provider_fw_rule_get_all(admin)] == [udp.id]
    yes = admin.elevated(read_deleted="yes")
    assert [r.id for r in nova.provider_fw_rule_get_all(yes)] == [ssh.id, udp.id]
    only = admin.elevated(read_deleted="only")
    assert [r.id for r in nova.provider_fw_rule_get_all(only)] == [ssh.id]

    # Admin only, user contexts included.
    for context in (ctx, RequestContext(None, None)):
        with pytest.raises(exception.AdminRequired):
            nova.provider_fw_rule_create(context, {"protocol": "tcp"})
        with pytest.raises(exception.AdminRequired):
            nova.provider_fw_rule_get_all(context)
        with pytest.raises(exception.AdminRequired):
            nova.provider_fw_rule_destroy(context, udp.id)
    assert [r["deleted"] for r in table_rows(nova_db, Rule)] == [ssh.id, 0]

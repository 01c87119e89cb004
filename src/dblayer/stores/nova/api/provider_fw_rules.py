"""nova DB API: provider firewall rules, applied by every host to every instance (notes §3.6).

All three calls are admin-only. The listing uses the context's ``read_deleted``;
destroying a rule soft-deletes it (``updated_at`` kept) and never complains about a
missing or already deleted one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dblayer.core import InvalidValue

from ..models import ProviderFirewallRule
from ._base import ADMIN, api, execute, fetch_all, first, model_query, soft_delete_where
from ._checks import clean_values, key_value

__all__ = ["provider_fw_rule_create", "provider_fw_rule_destroy", "provider_fw_rule_get_all"]

Rule = ProviderFirewallRule


@api(ADMIN)
def provider_fw_rule_create(context: Any, rule: dict[str, Any]) -> Any:
    """Add a firewall rule at the provider level (all hosts & instances)."""
    values = clean_values(Rule, rule)
    # Inserted, then read back: the object holds the CIDR as every later read gives it.
    rule_id = execute(sa.insert(Rule.__table__).values(values)).inserted_primary_key[0]
    return first(sa.select(Rule).where(Rule.id == rule_id))


@api(ADMIN)
def provider_fw_rule_destroy(context: Any, rule_id: int) -> None:
    """Delete a provider firewall rule from the database."""
    if rule_id is None:
        raise InvalidValue("rule_id must be an integer id, not None")
    soft_delete_where(Rule, Rule.id == key_value(Rule, "id", rule_id))


@api(ADMIN)
def provider_fw_rule_get_all(context: Any) -> list[Any]:
    """Get all provider-level firewall rules."""
    return fetch_all(model_query(context, Rule).order_by(Rule.id))

"""node_nanny's database (seed 000, ``node_nanny.orm``) on every backend.

``User``, ``Notification`` and ``Whitelist`` on a declarative ``Base``, and the
process-wide ``DBConnection`` set up by ``DBConnection.configure(url)``. Beyond
the original: validation (clear ValueErrors) and the whitelist rule as a query
(``Whitelist.active_on``, ``whitelisted_users``, ``is_whitelisted``).
"""

from .orm import (
    NAME_LENGTH,
    Base,
    DBConnection,
    Notification,
    User,
    Whitelist,
    is_whitelisted,
    whitelisted_users,
)

__all__ = [
    "NAME_LENGTH",
    "Base",
    "DBConnection",
    "Notification",
    "User",
    "Whitelist",
    "is_whitelisted",
    "whitelisted_users",
]

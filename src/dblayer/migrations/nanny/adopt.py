"""node_nanny's own database (seed 000), as its ORM created it, for ``migrations.adopt``.

Three tables (``user``, ``notification``, ``whitelist``), ``String`` columns without a
length (VARCHAR), naive DATETIMEs, a BOOLEAN ``global_whitelist``. Every value is kept
as it is: the times stay the naive datetimes the application wrote (its local clock;
dblayer reads them as written), text gets the 255-character limit dblayer's columns
have (longer values are refused before anything changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dblayer.core.migrations import Original, OriginalTable


def original(dialect: str, params: Mapping[str, Any]) -> Original:
    """node_nanny's tables as its ``create_all`` made them (on any backend)."""
    return Original(
        "node_nanny's database (tables user, notification, whitelist)",
        (
            OriginalTable("user", {"id": "integer", "name": "text"}),
            OriginalTable(
                "notification",
                {
                    "id": "integer",
                    "user_id": "integer",
                    "time": "datetime",
                    "memory": "integer",
                    "percentage": "integer",
                    "node": "text",
                    "limit": "integer",
                },
            ),
            OriginalTable(
                "whitelist",
                {
                    "id": "integer",
                    "user_id": "integer",
                    "node": "text",
                    "start_time": "datetime",
                    "end_time": "datetime",
                    "global_whitelist": "boolean",
                },
            ),
        ),
    )

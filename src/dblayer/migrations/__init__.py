"""The Alembic migrations of dblayer's stores, registered with ``dblayer.core.migrations``.

Each store has a directory here (``env.py``, ``script.py.mako``, ``versions/``) and its
own version table ``alembic_version_<store>``, so several stores share one database.
Core imports this package by name the first time a store is asked for; it imports a
store's models only when that store's migrations run.

The stores whose original applications kept a database of their own (nanny, topchef,
jobman, blitz) describe that schema in ``<store>/adopt.py``, for ``migrations.adopt``.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import MetaData

from dblayer.core import InvalidValue
from dblayer.core.migrations import Original, StoreMigrations, register

HERE = os.path.dirname(os.path.abspath(__file__))


def _nanny(params: Mapping[str, Any]) -> MetaData:
    from dblayer.stores.nanny import Base

    return Base.metadata


def _topchef(params: Mapping[str, Any]) -> MetaData:
    from dblayer.stores.topchef.schemas import database

    return database.metadata


def _blitz(params: Mapping[str, Any]) -> MetaData:
    from dblayer.stores.blitz import BlitzBase

    return BlitzBase.metadata


# jobman's DAO classes by the name its migrations take as ``dao``.
JOBMAN_DAOS = ("jobman", "engine", "worker")


def jobman_options(params: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(dao, table_prefix, extra_job_fields) from jobman's migration options.

    ``dao`` is ``jobman`` (JobmanSqliteDAO: tables jobman_job, jobman_kvp; the default),
    ``engine`` or ``worker`` (EngineSqliteDAO, WorkerSqliteDAO: ``table_prefix`` and
    ``extra_job_fields``, a dict or its JSON text as ``-x extra_job_fields=...`` gives it).
    """
    dao = params.get("dao") or "jobman"
    if dao not in JOBMAN_DAOS:
        raise InvalidValue(f"jobman: unknown dao {dao!r}; allowed: {', '.join(JOBMAN_DAOS)}")
    prefix = params.get("table_prefix")
    extra = params.get("extra_job_fields")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError as e:
            raise InvalidValue(f"jobman: extra_job_fields is not JSON: {e}") from None
    if dao == "jobman":
        if prefix not in (None, "jobman_") or extra:
            raise InvalidValue(
                "jobman: the jobman dao's tables are fixed (jobman_job, jobman_kvp): "
                "table_prefix and extra_job_fields go with dao=engine or dao=worker"
            )
        prefix = "jobman_"
    return dao, prefix, dict(extra or {})


def _jobman(params: Mapping[str, Any]) -> MetaData:
    from dblayer.stores import jobman

    dao, prefix, extra = jobman_options(params)
    # The tables exactly as the DAO builds them (it connects to nothing until used).
    if dao == "jobman":
        instance = jobman.JobmanSqliteDAO(db_uri=":memory:", initialize=False)
    else:
        cls = jobman.EngineSqliteDAO if dao == "engine" else jobman.WorkerSqliteDAO
        instance = cls(
            db_uri=":memory:", table_prefix=prefix, extra_job_fields=extra, initialize=False
        )
    try:
        metadata = MetaData()
        for orm in instance.orms.values():
            orm.table.to_metadata(metadata)
        return metadata
    finally:
        instance.close()


def _jobman_version_table(params: Mapping[str, Any]) -> str:
    """One version table per set of jobman tables: ``alembic_version_<prefix>job``."""
    _dao, prefix, _extra = jobman_options(params)
    return f"alembic_version_{prefix or ''}job"


def _nova(params: Mapping[str, Any]) -> MetaData:
    from dblayer.stores.nova.models import BASE

    return BASE.metadata


def _original(store: str) -> Callable[[str, Mapping[str, Any]], Original]:
    """The original application's schema, from ``<store>/adopt.py`` (imported when used)."""

    def original(dialect: str, params: Mapping[str, Any]) -> Original:
        module = importlib.import_module(f"{__name__}.{store}.adopt")
        return module.original(dialect, params)

    return original


STORES = {
    name: register(StoreMigrations(name, os.path.join(HERE, name), loader, original=original))
    for name, loader, original in [
        ("nanny", _nanny, _original("nanny")),
        ("topchef", _topchef, _original("topchef")),
        ("blitz", _blitz, _original("blitz")),
        ("nova", _nova, None),
    ]
}
STORES["jobman"] = register(
    StoreMigrations(
        "jobman",
        os.path.join(HERE, "jobman"),
        _jobman,
        parameters=("dao", "table_prefix", "extra_job_fields"),
        version_table_for=_jobman_version_table,
        original=_original("jobman"),
    )
)

__all__ = ["JOBMAN_DAOS", "STORES", "jobman_options"]

"""The ``dblayer`` command for operators."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from dblayer.core import Database, DBLayerError

DEFAULT_CLI_URL = "sqlite:///dblayer.db"


def _database(url: str | None) -> Database:
    return Database(url or os.environ.get("DBLAYER_URL") or DEFAULT_CLI_URL)


def cmd_info(args: argparse.Namespace) -> int:
    """Print the URL (password masked), the backend, its version and the tables found."""
    db = _database(args.url)
    try:
        facts = db.facts
        info = {
            "url": db.url,
            "backend": "mariadb" if facts.is_mariadb else facts.backend,
            "driver": facts.driver,
            "server_version": db.server_version(),
            "tables": db.table_names(),
        }
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(info))
    else:
        print(f"url:      {info['url']}")
        print(f"backend:  {info['backend']} {info['server_version']} ({info['driver']})")
        tables = info["tables"]
        print(f"tables:   {len(tables)}" + (f" ({', '.join(tables)})" if tables else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dblayer`` command."""
    parser = argparse.ArgumentParser(prog="dblayer", description="Operate dblayer databases.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="show the database, its backend and its tables")
    info.add_argument("--url", help="database URL (default: $DBLAYER_URL, then ./dblayer.db)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dblayer`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DBLayerError as e:
        print(f"dblayer: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

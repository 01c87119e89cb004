"""The ``dblayer`` command for operators (Typer and Rich).

Every command takes ``--url`` (default ``$DBLAYER_URL``, then ./dblayer.db) and ``--json``.
A failure is one line on stderr and a non-zero exit status; no password is ever printed.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from urllib.parse import unquote

import typer
from typer.exceptions import TyperException

from dblayer.core.errors import DBLayerError, mask_secret

from .archive import archive, purge
from .common import ENV_VAR, CLIError
from .copy import copy
from .db import db_app
from .demo import demo
from .info import info
from .jobs import app as jobs_app

app = typer.Typer(
    name="dblayer",
    help="Operate dblayer databases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(info)
app.command()(archive)
app.command()(purge)
app.command()(demo)
app.command()(copy)
app.add_typer(db_app)
app.add_typer(jobs_app)

_PASSWORD = re.compile(r"^[A-Za-z0-9+._-]*://[^:/@\s]*:([^@\s]*)@")


def _secrets(argv: Sequence[str]) -> list[str]:
    """Passwords of any URL on the command line or in $DBLAYER_URL (masked in errors)."""
    candidates = [*argv, os.environ.get(ENV_VAR, "")]
    for arg in argv:
        if "=" in arg:
            candidates.append(arg.split("=", 1)[1])
    found = []
    for text in candidates:
        m = _PASSWORD.match(text)
        if m and m.group(1):
            found += [m.group(1), unquote(m.group(1))]  # as typed, and %-decoded
    return found


def _fail(message: str, argv: Sequence[str], status: int = 1) -> int:
    line = " ".join(mask_secret(str(message), *_secrets(argv)).split())
    sys.stderr.write(f"dblayer: error: {line}\n")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dblayer`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="dblayer", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return _fail("aborted", args, 130)
    except TyperException as e:  # a usage error: bad option, missing value, ...
        message = e.format_message()
        # No command at all: the help was shown, nothing to add.
        return _fail(message, args, e.exit_code) if message else e.exit_code
    except CLIError as e:
        return _fail(str(e), args)
    except KeyboardInterrupt:
        return _fail("interrupted", args, 130)
    except DBLayerError as e:
        return _fail(str(e) or type(e).__name__, args)
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        return _fail(f"{type(e).__name__}: {e}", args)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

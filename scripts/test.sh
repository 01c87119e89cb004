#!/usr/bin/env bash
# Run dblayer's test suite: make the database services ready, install, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[all,dev]'
# Two workers: the machines have 2 cores; each worker has its own test databases.
exec .venv/bin/python -m pytest -n 2 "$@"

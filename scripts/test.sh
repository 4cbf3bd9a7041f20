#!/usr/bin/env bash
# Run qdask's lint, type check and test suite (sets up first; the tests start their own private MariaDB servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest tests "$@"

#!/usr/bin/env bash
# Run qdask's test suite (sets up first; the tests start their own private MariaDB servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest tests "$@"

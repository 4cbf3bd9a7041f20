#!/usr/bin/env bash
# The main job on a local default: set up, then run `qdask demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/qdask demo "$@"

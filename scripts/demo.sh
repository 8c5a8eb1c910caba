#!/usr/bin/env bash
# The README's first command: install the engine and its sandbox (nothing else), then run the demo
# (sandbox + engine + local signals).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh demo
exec .venv/bin/tl-engine demo "$@"

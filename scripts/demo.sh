#!/usr/bin/env bash
# The README's first command: install, then run the demo (sandbox + engine + local signals).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/tl-engine demo "$@"

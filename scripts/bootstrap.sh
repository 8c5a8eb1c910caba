#!/usr/bin/env bash
# Creates .venv and installs the engine with its compiled hot path and every test dependency.
# Idempotent: a second run only reinstalls when pyproject.toml, setup.py or a .pyx changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"' \
  || { echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
stamp=.venv/.installed
newest=$(ls -t pyproject.toml setup.py engine/_fast/*.pyx engine/_fast/*.pxd 2>/dev/null | head -1)
if [ ! -f "$stamp" ] || [ "$newest" -nt "$stamp" ] || ! .venv/bin/python -c 'import engine._fast' 2>/dev/null; then
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi

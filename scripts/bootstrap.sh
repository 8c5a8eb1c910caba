#!/usr/bin/env bash
# Creates .venv and installs the engine with its compiled hot path and every test dependency.
# Also makes sure the system tools the real Kafka broker needs (Java 17+, Maven) are present,
# installing them from Debian's packages when running as root on a machine without them.
# Idempotent: a second run only reinstalls when pyproject.toml, setup.py or a .pyx changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"' \
  || { echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

need_pkgs=()
command -v java >/dev/null 2>&1 || need_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_pkgs+=(maven)
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need_pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "error: missing ${need_pkgs[*]}: install them (Java 17+, Maven, a C compiler)" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
stamp=.venv/.installed
newest=$(ls -t pyproject.toml setup.py engine/_fast/*.pyx engine/_fast/*.pxd 2>/dev/null | head -1)
if [ ! -f "$stamp" ] || [ "$newest" -nt "$stamp" ] \
   || ! .venv/bin/python -c 'import engine._fast as f; f.require_compiled()' 2>/dev/null; then
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi

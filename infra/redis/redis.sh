#!/usr/bin/env bash
# redis.sh -- a private Redis server for pactmesh's shared rate-limit tests.
#
# Usage: infra/redis/redis.sh {install|start|stop|status|url|reset}
#   install  apt-get install redis-server (Debian's package) unless redis-server is there
#   start    start on 127.0.0.1:$REDIS_PORT, no persistence, bounded memory; idempotent
#            (a running server is left alone). Prints the connection URL.
#   stop     shut the server this script started down; no-op when stopped
#   status   exit 0 when running
#   url      print the connection URL
#   reset    stop and delete the data dir
# Environment: REDIS_DATA_DIR (default <repo>/.cache/redis), REDIS_PORT (default 16379).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REDIS_DATA_DIR="$(realpath -m "${REDIS_DATA_DIR:-$REPO_ROOT/.cache/redis}")"
REDIS_PORT="${REDIS_PORT:-16379}"
PID_FILE="$REDIS_DATA_DIR/redis.pid"
LOG_FILE="$REDIS_DATA_DIR/redis.log"

log() { echo "redis.sh: $*" >&2; }

cmd_install() {
  if command -v redis-server >/dev/null 2>&1; then return 0; fi
  [[ "$(id -u)" == 0 ]] || { log "redis-server is missing and installing it needs root"; exit 1; }
  log "installing redis-server from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  command -v redis-server >/dev/null 2>&1 || { log "redis-server not found after install"; exit 1; }
}

running() {
  [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

url() { echo "redis://127.0.0.1:$REDIS_PORT/0"; }

ping() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

cmd_start() {
  cmd_install
  if running; then log "already running"; url; return 0; fi
  mkdir -p "$REDIS_DATA_DIR"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DATA_DIR" \
    --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG_FILE" \
    --save "" --appendonly no --maxmemory 128mb --protected-mode yes
  local tries=0
  until ping; do
    tries=$((tries + 1))
    if (( tries > 100 )); then log "not answering; log:"; tail -n 20 "$LOG_FILE" >&2; exit 1; fi
    sleep 0.1
  done
  log "Redis ready on 127.0.0.1:$REDIS_PORT"
  url
}

cmd_stop() {
  running || return 0
  local pid; pid=$(cat "$PID_FILE")
  kill "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || { log "stopped"; return 0; }; sleep 0.1; done
  log "still running after 5 s"; exit 1
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) if running; then echo running; else echo stopped; exit 1; fi ;;
  url) url ;;
  reset) cmd_stop; rm -rf "$REDIS_DATA_DIR" ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac

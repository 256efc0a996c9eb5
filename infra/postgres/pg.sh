#!/usr/bin/env bash
# pg.sh -- a private PostgreSQL cluster for pactmesh's Postgres checkpointer tests.
#
# Usage: infra/postgres/pg.sh {install|start|stop|status|url|reset}
#   install  apt-get install postgresql (Debian's package) unless initdb is already there
#   start    initdb once (trust auth, 127.0.0.1 only), start on $PG_PORT, create the database;
#            idempotent: a running cluster is left alone. Prints the connection URL.
#   stop     fast shutdown of the cluster this script started; no-op when stopped
#   status   exit 0 when running
#   url      print the connection URL
#   reset    stop and delete the data dir
# Environment: PG_DATA_DIR (default <repo>/.cache/postgres/data), PG_PORT (default 15432),
#              PG_DB (default pactmesh), PG_USER (default pactmesh).
# Postgres refuses to run as root, so as root the server runs as the 'postgres' user.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PG_DATA_DIR="$(realpath -m "${PG_DATA_DIR:-$REPO_ROOT/.cache/postgres/data}")"
PG_PORT="${PG_PORT:-15432}"
PG_DB="${PG_DB:-pactmesh}"
PG_USER="${PG_USER:-pactmesh}"
LOG_FILE="$(dirname "$PG_DATA_DIR")/postgres.log"

log() { echo "pg.sh: $*" >&2; }

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$d" && -x "$d/initdb" ]] && echo "$d"
}

as_owner() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd_install() {
  if bindir >/dev/null; then return 0; fi
  [[ "$(id -u)" == 0 ]] || { log "PostgreSQL is missing and installing it needs root"; exit 1; }
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  bindir >/dev/null || { log "initdb not found after install"; exit 1; }
}

running() {
  local bin; bin=$(bindir) || return 1
  [[ -f "$PG_DATA_DIR/postmaster.pid" ]] && as_owner "$bin/pg_ctl" -D "$PG_DATA_DIR" status >/dev/null 2>&1
}

url() { echo "postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"; }

cmd_start() {
  cmd_install
  local bin; bin=$(bindir)
  if running; then log "already running"; url; return 0; fi
  mkdir -p "$PG_DATA_DIR"
  [[ "$(id -u)" == 0 ]] && chown -R postgres:postgres "$(dirname "$PG_DATA_DIR")"
  chmod 700 "$PG_DATA_DIR"
  if [[ ! -f "$PG_DATA_DIR/PG_VERSION" ]]; then
    as_owner "$bin/initdb" -D "$PG_DATA_DIR" -U "$PG_USER" --auth=trust -E UTF8 --no-instructions >/dev/null
  fi
  local started=$SECONDS
  as_owner "$bin/pg_ctl" -D "$PG_DATA_DIR" -l "$LOG_FILE" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DATA_DIR -c max_connections=200 -c shared_buffers=128MB -c fsync=on" >/dev/null \
    || { log "start failed; log:"; tail -n 30 "$LOG_FILE" >&2; exit 1; }
  if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
  fi
  log "PostgreSQL ready on 127.0.0.1:$PG_PORT in $((SECONDS - started)) s"
  url
}

cmd_stop() {
  local bin; bin=$(bindir) || return 0
  if running; then as_owner "$bin/pg_ctl" -D "$PG_DATA_DIR" -m fast -w stop >/dev/null; log "stopped"; fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) if running; then echo running; else echo stopped; exit 1; fi ;;
  url) url ;;
  reset) cmd_stop; rm -rf "$PG_DATA_DIR" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac

#!/usr/bin/env bash
# kafka.sh -- local single-node Apache Kafka (KRaft, broker+controller) for pactmesh.
#
# Usage: infra/kafka/kafka.sh {install|start|stop|restart|status|reset|env}
#   install  fetch the broker jars (Maven Central, via mvn + pom.xml) into the cache; no-op when complete
#   start    install if needed, format KRaft storage once, launch the broker on 127.0.0.1, wait until ready
#   stop     SIGTERM the broker this script started (SIGKILL after KAFKA_STOP_TIMEOUT s); no-op if none
#   restart  stop + start
#   status   print running/stopped (exit 0 when running, 1 when stopped)
#   reset    stop + delete the data dir (topics, offsets, cluster id)
#   env      print the resolved paths/settings
#
# Version: KAFKA_VERSION in infra/kafka/kafka.env (an exported KAFKA_VERSION overrides it for one run).
# Environment (all optional):
#   PACTMESH_CACHE        cache root (default <repo>/.cache); jars go to $PACTMESH_CACHE/kafka/<version>/lib
#   KAFKA_DATA_DIR        data dir (default $PACTMESH_CACHE/kafka/<version>/data); holds server.properties,
#                         log4j2.properties and the KRaft log dir; broker.log and broker.pid sit beside it
#   KAFKA_PORT            PLAINTEXT listener port (default 9092), bound to 127.0.0.1 only
#   KAFKA_CONTROLLER_PORT CONTROLLER listener port (default 9093), bound to 127.0.0.1 only
#   KAFKA_HEAP_OPTS       JVM heap flags (default "-Xms256m -Xmx512m")
#   KAFKA_JVM_OPTS        extra JVM flags appended to the command line
#   KAFKA_START_TIMEOUT   seconds to wait for readiness (default 60)
#   KAFKA_STOP_TIMEOUT    seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_MVN_ARGS        extra mvn arguments for install (e.g. "-o" or "-Dmaven.repo.local=...")
#   JAVA                  java binary (default: java on PATH); Kafka 4.x needs Java 17+
# Clients connect to 127.0.0.1:$KAFKA_PORT. Topics are NOT auto-created (auto.create.topics.enable=false).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

_version_override="${KAFKA_VERSION:-}"
# shellcheck source=kafka.env
. "$SCRIPT_DIR/kafka.env"
KAFKA_VERSION="${_version_override:-$KAFKA_VERSION}"
[[ "$KAFKA_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "kafka.sh: bad KAFKA_VERSION '$KAFKA_VERSION'" >&2; exit 2; }

CACHE_BASE="${PACTMESH_CACHE:-$REPO_ROOT/.cache}"
CACHE_DIR="$CACHE_BASE/kafka/$KAFKA_VERSION"
LIB_DIR="$CACHE_DIR/lib"
STAMP="$LIB_DIR/.pactmesh-complete"
DATA_DIR="${KAFKA_DATA_DIR:-$CACHE_DIR/data}"
DATA_DIR="$(realpath -m "${DATA_DIR%/}")"  # absolute, so every caller finds the same pid file
RUN_DIR="$(dirname "$DATA_DIR")"
BASE_NAME="$(basename "$DATA_DIR")"
[[ "$BASE_NAME" == "data" ]] && PREFIX="broker" || PREFIX="$BASE_NAME.broker"
PID_FILE="$RUN_DIR/$PREFIX.pid"
LOG_FILE="$RUN_DIR/$PREFIX.log"
LOCK_FILE="$RUN_DIR/$PREFIX.lock"
LOG_DIRS="$DATA_DIR/kraft-combined-logs"
SERVER_PROPS="$DATA_DIR/server.properties"
LOG4J_CONF="$DATA_DIR/log4j2.properties"
MARKER="$DATA_DIR/.pactmesh-kafka"
HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
JAVA="${JAVA:-java}"
MAIN_CLASS=kafka.Kafka
STORAGE_TOOL=kafka.tools.StorageTool

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- install
pom_hash() { sha256sum "$SCRIPT_DIR/pom.xml" | cut -d' ' -f1; }

installed() {
  [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$KAFKA_VERSION $(pom_hash)" ]]
}

cmd_install() {
  if installed; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch Kafka $KAFKA_VERSION)"
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.install.lock"
  flock -w 600 8 || die "another install holds $CACHE_DIR/.install.lock"
  if installed; then exec 8>&-; return 0; fi
  # Keep the cache out of git even when the repo's .gitignore does not list it.
  [[ -f "$CACHE_BASE/kafka/.gitignore" ]] || printf '*\n' > "$CACHE_BASE/kafka/.gitignore"
  local tmp="$CACHE_DIR/lib.tmp.$$" t0
  t0="$(now)"
  rm -rf "$tmp"
  log "fetching Kafka $KAFKA_VERSION jars with mvn into $LIB_DIR ..."
  # Maven 3.8 prints bare ANSI resets even with -q -B; strip escape sequences from its output.
  # shellcheck disable=SC2086
  if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" ${KAFKA_MVN_ARGS:-} \
      -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$tmp" 2>&1 \
      | sed -u 's/\x1b\[[0-9;]*[A-Za-z]//g' >&2; then
    rm -rf "$tmp"
    [[ -d "$LIB_DIR" ]] || { rm -f "$CACHE_DIR/.install.lock"; rmdir "$CACHE_DIR" 2>/dev/null || true; }
    die "mvn failed to fetch Kafka $KAFKA_VERSION (is $KAFKA_VERSION on Maven Central?)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"; }
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  echo "$KAFKA_VERSION $(pom_hash)" > "$STAMP"
  exec 8>&-
  log "installed Kafka $KAFKA_VERSION ($(find "$LIB_DIR" -name '*.jar' | wc -l) jars) in $(elapsed "$t0") s"
}

# ---------------------------------------------------------------- process helpers
# The pid file names "our" broker only if that pid is alive and is a kafka.Kafka JVM for this data dir.
read_pid() {
  if [[ -f "$PID_FILE" ]]; then tr -dc '0-9' < "$PID_FILE" || true; fi
}

is_ours() {
  local pid="$1"
  [[ -n "$pid" ]] && alive "$pid" || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *" $MAIN_CLASS $SERVER_PROPS"* ]]
}

running_pid() {
  local pid
  pid="$(read_pid)"
  if is_ours "$pid"; then echo "$pid"; fi
}

# PLAINTEXT port of the broker as written in its server.properties (the running one may differ from $KAFKA_PORT).
configured_port() {
  sed -n 's#^listeners=PLAINTEXT://[^,]*:\([0-9]*\).*#\1#p' "$SERVER_PROPS" 2>/dev/null | head -n1
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Broker readiness = a Metadata request (v4) on the PLAINTEXT port lists at least one broker.
metadata_ok() {
  if ! command -v python3 >/dev/null; then
    port_open "$KAFKA_PORT"
    return
  fi
  python3 - "$HOST" "$KAFKA_PORT" <<'PY' 2>/dev/null
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
client = b"kafka.sh"
# Request header v1 (api_key=3 Metadata, api_version=4, correlation_id, client_id) + body (topics=[], allow_auto=false)
body = struct.pack(">hhih", 3, 4, 42, len(client)) + client + struct.pack(">ib", 0, 0)
with socket.create_connection((host, port), timeout=3) as s:
    s.settimeout(3)
    s.sendall(struct.pack(">i", len(body)) + body)
    def recv(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    (size,) = struct.unpack(">i", recv(4))
    resp = recv(size)
corr, _throttle, nbrokers = struct.unpack(">iii", resp[:12])
sys.exit(0 if corr == 42 and nbrokers >= 1 else 1)
PY
}

log_says_started() {
  [[ -f "$LOG_FILE" ]] && grep -q "Kafka Server started" "$LOG_FILE"
}

# ---------------------------------------------------------------- config
write_configs() {
  mkdir -p "$DATA_DIR" "$LOG_DIRS"
  touch "$MARKER"
  cat > "$SERVER_PROPS" <<EOF
# Generated by infra/kafka/kafka.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) -- edits are overwritten at each start.
# Single-node KRaft: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$LOG_DIRS

# Topics must be created explicitly.
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=1
min.insync.replicas=1

# Internal topics on one node: RF 1 and few partitions (50 by default) so the first group join
# or transaction does not wait for 50 partitions to be created.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# Fast consumer-group joins: no initial rebalance delay.
group.initial.rebalance.delay.ms=0

# Modest footprint (the default log-cleaner dedupe buffer alone is 128 MiB of heap).
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.segment.bytes=104857600
log.retention.hours=168
EOF

  cat > "$LOG4J_CONF" <<'EOF'
# Generated by infra/kafka/kafka.sh. stdout/stderr of the JVM are appended to broker.log beside the data dir.
status = warn
name = pactmesh-kafka
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = STDOUT
# Start-up / shutdown lines ("Kafka Server started", BrokerServer state transitions, "shut down completed").
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
logger.kafka.name = kafka.Kafka
logger.kafka.level = INFO
logger.kafkaserver.name = kafka.server.KafkaServer
logger.kafkaserver.level = INFO
logger.brokerserver.name = kafka.server.BrokerServer
logger.brokerserver.level = INFO
# Noisy at WARN on a single node (e.g. "no leader" during topic creation).
logger.clientnet.name = org.apache.kafka.clients.NetworkClient
logger.clientnet.level = ERROR
EOF
}

is_formatted() { [[ -f "$LOG_DIRS/meta.properties" ]]; }

format_storage() {
  local cluster_id
  cluster_id="$("$JAVA" -cp "$LIB_DIR/*" -Dlog4j2.configurationFile="file:$LOG4J_CONF" "$STORAGE_TOOL" random-uuid | tail -n1)"
  log "formatting KRaft storage in $LOG_DIRS (cluster id $cluster_id, standalone controller quorum)"
  # --standalone: single-voter dynamic quorum (KIP-853); requires controller.quorum.bootstrap.servers,
  # not controller.quorum.voters.
  "$JAVA" -cp "$LIB_DIR/*" -Dlog4j2.configurationFile="file:$LOG4J_CONF" "$STORAGE_TOOL" \
    format --config "$SERVER_PROPS" --cluster-id "$cluster_id" --standalone >&2
}

# ---------------------------------------------------------------- commands
lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$LOCK_FILE"
  flock -w 120 9 || die "another kafka.sh holds $LOCK_FILE"
}

wait_ready() {
  local pid="$1" t0="$2" deadline
  deadline=$(( $(date +%s) + KAFKA_START_TIMEOUT ))
  while :; do
    if ! alive "$pid"; then
      log "broker process $pid exited during start-up; last log lines ($LOG_FILE):"
      tail -n 40 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      return 1
    fi
    if log_says_started && metadata_ok; then
      return 0
    fi
    if (( $(date +%s) >= deadline )); then
      log "broker not ready after ${KAFKA_START_TIMEOUT}s; last log lines ($LOG_FILE):"
      tail -n 40 "$LOG_FILE" >&2 || true
      return 1
    fi
    sleep 0.25
  done
}

cmd_start() {
  local t0 pid
  t0="$(now)"
  lock
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    local running_port
    running_port="$(configured_port)"
    if [[ -n "$running_port" && "$running_port" != "$KAFKA_PORT" ]]; then
      die "kafka already running (pid $pid) on $HOST:$running_port, not $KAFKA_PORT; stop it first"
    fi
    if port_open "$KAFKA_PORT"; then
      echo "kafka already running (pid $pid) on $HOST:$KAFKA_PORT"
      return 0
    fi
    log "broker pid $pid is alive but $HOST:$KAFKA_PORT is not answering yet; waiting"
    if wait_ready "$pid" "$t0"; then
      echo "kafka running (pid $pid) on $HOST:$KAFKA_PORT"
      return 0
    fi
    die "broker pid $pid is not healthy; run: $0 stop"
  fi
  rm -f "$PID_FILE"
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_open "$p" && die "$HOST:$p is already in use by another process (not started by this script)"
  done
  command -v "$JAVA" >/dev/null || die "java not found"

  cmd_install
  write_configs
  is_formatted || format_storage

  [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  # shellcheck disable=SC2086,SC2016
  setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$PID_FILE" \
    "$JAVA" $KAFKA_HEAP_OPTS \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:MaxMetaspaceSize=192m -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="file:$LOG4J_CONF" -Dlog4j2.shutdownHookEnabled=false \
    $KAFKA_JVM_OPTS \
    -cp "$LIB_DIR/*" "$MAIN_CLASS" "$SERVER_PROPS" \
    >>"$LOG_FILE" 2>&1 </dev/null 9>&- &
  local _
  for _ in $(seq 1 100); do
    pid="$(read_pid)"
    [[ -n "$pid" ]] && break
    sleep 0.05
  done
  [[ -n "$pid" ]] || die "broker did not write $PID_FILE"

  if ! wait_ready "$pid" "$t0"; then
    stop_pid "$pid"
    exit 1
  fi
  echo "kafka $KAFKA_VERSION ready on $HOST:$KAFKA_PORT (pid $pid) in $(elapsed "$t0") s; log: $LOG_FILE"
}

# Alive = exists and is not a zombie (an exited child of an init that has not reaped it yet).
alive() {
  local state
  state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

stop_pid() {
  local pid="$1" deadline
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(date +%s) + KAFKA_STOP_TIMEOUT ))
  while alive "$pid"; do
    if (( $(date +%s) >= deadline )); then
      log "pid $pid still alive after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL (next start may take ~10 s longer)"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$(( $(date +%s) + 10 ))
      while alive "$pid" && (( $(date +%s) < deadline )); do sleep 0.1; done
      alive "$pid" && { log "pid $pid survived SIGKILL"; return 1; }
      break
    fi
    sleep 0.2
  done
  rm -f "$PID_FILE"
}

cmd_stop() {
  local pid t0
  t0="$(now)"
  lock
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    echo "kafka not running"
    return 0
  fi
  stop_pid "$pid"
  echo "kafka stopped (pid $pid) in $(elapsed "$t0") s"
}

cmd_status() {
  local pid port
  pid="$(running_pid)"
  port="$(configured_port)"
  port="${port:-$KAFKA_PORT}"
  if [[ -n "$pid" ]] && port_open "$port"; then
    echo "running (pid $pid, $HOST:$port, Kafka $KAFKA_VERSION)"
    return 0
  elif [[ -n "$pid" ]]; then
    echo "starting or unhealthy (pid $pid, $HOST:$port not answering)"
    return 1
  fi
  echo "stopped"
  return 1
}

cmd_reset() {
  cmd_stop
  if [[ -d "$DATA_DIR" ]]; then
    [[ -f "$MARKER" ]] || die "refusing to delete $DATA_DIR: no $MARKER (not created by kafka.sh)"
    rm -rf "$DATA_DIR"
    echo "deleted $DATA_DIR"
  fi
}

cmd_env() {
  cat <<EOF
KAFKA_VERSION=$KAFKA_VERSION
CACHE_DIR=$CACHE_DIR
LIB_DIR=$LIB_DIR
DATA_DIR=$DATA_DIR
LOG_FILE=$LOG_FILE
PID_FILE=$PID_FILE
KAFKA_BOOTSTRAP_SERVERS=$HOST:$KAFKA_PORT
KAFKA_CONTROLLER=$HOST:$KAFKA_CONTROLLER_PORT
KAFKA_HEAP_OPTS=$KAFKA_HEAP_OPTS
EOF
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  env) cmd_env ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

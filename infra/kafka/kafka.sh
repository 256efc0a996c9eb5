#!/usr/bin/env bash
# kafka.sh -- local Apache Kafka (KRaft) for pactmesh: one node, or a cluster of combined
# broker+controller nodes, plaintext or secured (SASL SCRAM-SHA-512/PLAIN, TLS, ACLs).
#
# Usage: infra/kafka/kafka.sh {install|start|stop|restart|status|reset|env|client-env [USER]|users|stop-all}
#   install     fetch the broker jars (Maven Central, via mvn + pom.xml) into the cache; no-op when complete
#   start       install if needed, format KRaft storage once, launch every node on 127.0.0.1, wait until
#               every one is ready; idempotent (nodes already running are left alone, missing ones started)
#   stop        SIGTERM the nodes this script started (SIGKILL after KAFKA_STOP_TIMEOUT s); no-op if none
#   restart     stop + start
#   status      print running/stopped (exit 0 when every node runs, 1 otherwise)
#   reset       stop + delete the data dir (topics, offsets, cluster id, SCRAM users, certificates)
#   env         print the resolved paths/settings
#   client-env  print the client settings for USER (default admin) as KEY=value lines: bootstrap servers,
#               and when secured KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME,
#               KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE (the passwords are generated on first use)
#   users       print the SCRAM users of a secured deployment
#   stop-all    stop every node any kafka.sh started under the cache (whatever its settings); for `make clean`
#
# Version: KAFKA_VERSION in infra/kafka/kafka.env (an exported KAFKA_VERSION overrides it for one run).
# Environment (all optional):
#   KAFKA_NODES             nodes (default 1); 3 gives a cluster that survives the loss of one node
#   KAFKA_SECURITY_PROTOCOL PLAINTEXT (default), SASL_PLAINTEXT or SASL_SSL: with SASL, clients authenticate
#                           with SCRAM-SHA-512 or PLAIN, the StandardAuthorizer checks ACLs (super user:
#                           admin) and every user of KAFKA_SASL_USERS gets a SCRAM credential at format time;
#                           with SASL_SSL a throwaway CA and broker certificate are generated in the data dir
#   KAFKA_SASL_USERS        SCRAM users besides admin (default: the six services and "upstream"); their
#                           random passwords are generated once, in <data dir>/secrets (mode 600)
#   PACTMESH_CACHE          cache root (default <repo>/.cache); jars go to $PACTMESH_CACHE/kafka/<version>/lib
#   KAFKA_DATA_DIR          data dir (default $PACTMESH_CACHE/kafka/<version>/<data|cluster>[-<protocol>]);
#                           one node keeps server.properties and the KRaft log dir in it, a cluster one
#                           node-<i> folder per node; pid and log files sit beside it
#   KAFKA_PORT              client listener port of node 1 (default 9092); node i listens on KAFKA_PORT+2(i-1)
#   KAFKA_CONTROLLER_PORT   controller listener port of node 1 (default 9093); node i: KAFKA_CONTROLLER_PORT+2(i-1)
#   KAFKA_PORTS / KAFKA_CONTROLLER_PORTS  explicit comma-separated ports, one per node (override the above)
#                           Every listener is bound to 127.0.0.1 only.
#   KAFKA_HEAP_OPTS         JVM heap flags per node (default "-Xms256m -Xmx512m", "-Xms128m -Xmx384m" in a cluster)
#   KAFKA_JVM_OPTS          extra JVM flags appended to the command line
#   KAFKA_JIT_OPTS          the JIT's flags (default "-XX:TieredStopAtLevel=1": the client compiler only).
#                           These brokers share a laptop's or CI machine's few cores with the services:
#                           under a bench's load the server compiler (C2) spent more CPU compiling than
#                           the broker spent serving (3.1-3.4 of 6.6-7.0 CPU s over 1,000 workflows);
#                           C1 alone halves the broker's CPU (docs/benchmarks.md). Set it empty for the
#                           JVM's full tiered JIT (a broker that runs for hours on cores of its own).
#   KAFKA_START_TIMEOUT     seconds to wait for readiness (default 60, 120 for a cluster)
#   KAFKA_STOP_TIMEOUT      seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_MVN_ARGS          extra mvn arguments for install (e.g. "-o" or "-Dmaven.repo.local=...")
#   JAVA                    java binary (default: java on PATH); Kafka 4.x needs Java 17+
# Clients connect to the bootstrap servers `env` prints. Topics are NOT auto-created.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

_version_override="${KAFKA_VERSION:-}"
# shellcheck source=kafka.env
. "$SCRIPT_DIR/kafka.env"
KAFKA_VERSION="${_version_override:-$KAFKA_VERSION}"
[[ "$KAFKA_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "kafka.sh: bad KAFKA_VERSION '$KAFKA_VERSION'" >&2; exit 2; }

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

NODES="${KAFKA_NODES:-1}"
[[ "$NODES" =~ ^[1-9]$ ]] || die "KAFKA_NODES must be 1..9, not '$NODES'"
PROTOCOL="${KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}"
case "$PROTOCOL" in
  PLAINTEXT | SASL_PLAINTEXT | SASL_SSL) ;;
  *) die "KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SASL_PLAINTEXT or SASL_SSL, not '$PROTOCOL'" ;;
esac
SECURED=0
[[ "$PROTOCOL" == PLAINTEXT ]] || SECURED=1
SASL_USERS="${KAFKA_SASL_USERS:-intake routing orchestrator tools hitl delivery upstream}"
ADMIN_USER=admin

CACHE_BASE="$(realpath -m "${PACTMESH_CACHE:-$REPO_ROOT/.cache}")"
CACHE_DIR="$CACHE_BASE/kafka/$KAFKA_VERSION"
LIB_DIR="$CACHE_DIR/lib"
STAMP="$LIB_DIR/.pactmesh-complete"
default_data_dir() {
  local name=data
  (( NODES > 1 )) && name=cluster
  [[ "$PROTOCOL" == PLAINTEXT ]] || name="$name-$(tr 'A-Z_' 'a-z-' <<<"$PROTOCOL")"
  echo "$CACHE_DIR/$name"
}
DATA_DIR="${KAFKA_DATA_DIR:-$(default_data_dir)}"
DATA_DIR="$(realpath -m "${DATA_DIR%/}")"  # absolute, so every caller finds the same pid files
RUN_DIR="$(dirname "$DATA_DIR")"
BASE_NAME="$(basename "$DATA_DIR")"
[[ "$BASE_NAME" == "data" ]] && PREFIX="broker" || PREFIX="$BASE_NAME.broker"
LOCK_FILE="$RUN_DIR/$PREFIX.lock"
LAYOUT_FILE="$DATA_DIR/.pactmesh-layout"
MARKER="$DATA_DIR/.pactmesh-kafka"
SECRETS_DIR="$DATA_DIR/secrets"
LOG4J_CONF="$DATA_DIR/log4j2.properties"
HOST=127.0.0.1

if (( NODES > 1 )); then
  KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx384m}"
  KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
else
  KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
  KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
fi
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_JIT_OPTS="${KAFKA_JIT_OPTS--XX:TieredStopAtLevel=1}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
JAVA="${JAVA:-java}"
MAIN_CLASS=kafka.Kafka
STORAGE_TOOL=kafka.tools.StorageTool

# ---------------------------------------------------------------- nodes and ports
port_list() {
  local explicit="$1" base="$2" i out=()
  if [[ -n "$explicit" ]]; then
    IFS=, read -r -a out <<<"$explicit"
  else
    for (( i = 0; i < NODES; i++ )); do out+=("$(( base + 2 * i ))"); done
  fi
  (( ${#out[@]} == NODES )) || die "expected $NODES ports, got '${out[*]}'"
  echo "${out[@]}"
}
read -r -a CLIENT_PORTS <<<"$(port_list "${KAFKA_PORTS:-}" "${KAFKA_PORT:-9092}")"
read -r -a CONTROLLER_PORTS <<<"$(port_list "${KAFKA_CONTROLLER_PORTS:-}" "${KAFKA_CONTROLLER_PORT:-9093}")"
ALL_PORTS=("${CLIENT_PORTS[@]}" "${CONTROLLER_PORTS[@]}")
for p in "${ALL_PORTS[@]}"; do [[ "$p" =~ ^[0-9]+$ ]] || die "bad port '$p'"; done
[[ "$(printf '%s\n' "${ALL_PORTS[@]}" | sort -u | wc -l)" == "${#ALL_PORTS[@]}" ]] \
  || die "ports overlap: clients ${CLIENT_PORTS[*]}, controllers ${CONTROLLER_PORTS[*]}"

client_port() { echo "${CLIENT_PORTS[$(( $1 - 1 ))]}"; }
controller_port() { echo "${CONTROLLER_PORTS[$(( $1 - 1 ))]}"; }
nodes() { seq 1 "$NODES"; }
node_dir() { if (( NODES == 1 )); then echo "$DATA_DIR"; else echo "$DATA_DIR/node-$1"; fi; }
node_suffix() { if (( NODES == 1 )); then echo ""; else echo "-$1"; fi; }
pid_file() { echo "$RUN_DIR/$PREFIX$(node_suffix "$1").pid"; }
log_file() { echo "$RUN_DIR/$PREFIX$(node_suffix "$1").log"; }
server_props() { echo "$(node_dir "$1")/server.properties"; }
log_dirs() { echo "$(node_dir "$1")/kraft-combined-logs"; }
bootstrap_servers() {
  local i out=()
  for i in $(nodes); do out+=("$HOST:$(client_port "$i")"); done
  (IFS=,; echo "${out[*]}")
}
listener() { if (( SECURED )); then echo "$PROTOCOL"; else echo PLAINTEXT; fi; }
layout() { echo "nodes=$NODES protocol=$PROTOCOL users=admin ${SASL_USERS}"; }

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
# A pid file names "our" node only if that pid is alive and is a kafka.Kafka JVM for that node's config.
read_pid() {
  if [[ -f "$1" ]]; then tr -dc '0-9' < "$1" || true; fi
}

# Alive = exists and is not a zombie (an exited child of an init that has not reaped it yet).
alive() {
  local state
  state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

runs_props() {
  local pid="$1" props="$2" cmdline
  [[ -n "$pid" ]] && alive "$pid" || return 1
  cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *" $MAIN_CLASS $props"* ]]
}

running_pid() {
  local pid
  pid="$(read_pid "$(pid_file "$1")")"
  if runs_props "$pid" "$(server_props "$1")"; then echo "$pid"; fi
}

# Client port of a node as written in its server.properties (the running one may differ from the settings).
configured_port() {
  sed -n 's#^listeners=[A-Z_]*://[^,]*:\([0-9]*\).*#\1#p' "$(server_props "$1")" 2>/dev/null | head -n1
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Plaintext readiness = a Metadata request (v4) on node 1's client port lists every node.
metadata_ok() {
  if ! command -v python3 >/dev/null; then
    port_open "$(client_port 1)"
    return
  fi
  python3 - "$HOST" "$(client_port 1)" "$NODES" <<'PY' 2>/dev/null
import socket, struct, sys
host, port, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
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
sys.exit(0 if corr == 42 and nbrokers >= expected else 1)
PY
}

log_says_started() {
  [[ -f "$(log_file "$1")" ]] && grep -q "Kafka Server started" "$(log_file "$1")"
}

# ---------------------------------------------------------------- secrets (SASL users, TLS)
password_of() {
  local file="$SECRETS_DIR/$1.password"
  [[ -f "$file" ]] || die "no SCRAM user '$1' in $SECRETS_DIR (users: admin $SASL_USERS)"
  cat "$file"
}

# Passwords are generated once per data dir and kept until `reset`: SCRAM credentials are
# written into the metadata log at format time, so they cannot change under a formatted dir.
make_passwords() {
  local user
  mkdir -p "$SECRETS_DIR"
  chmod 700 "$SECRETS_DIR"
  for user in "$ADMIN_USER" $SASL_USERS; do
    [[ "$user" =~ ^[A-Za-z0-9._-]+$ ]] || die "bad SCRAM user name '$user'"
    [[ -f "$SECRETS_DIR/$user.password" ]] && continue
    (umask 077; openssl rand -hex 24 > "$SECRETS_DIR/$user.password")
  done
}

# A throwaway CA and one broker certificate (localhost, 127.0.0.1) in a PKCS12 keystore.
make_tls() {
  local tls="$SECRETS_DIR/tls"
  [[ -f "$tls/broker.p12" ]] && return 0
  command -v openssl >/dev/null || die "openssl not found (needed for SASL_SSL)"
  mkdir -p "$tls"
  (
    umask 077
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -keyout ca.key -out ca.pem \
      -subj "/CN=pactmesh local CA $(date +%s)" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost" 2>/dev/null
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" > broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
      -extfile broker.ext -out broker.pem 2>/dev/null
    openssl rand -hex 24 > keystore.password
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -passout "file:keystore.password" -out broker.p12
    rm -f broker.csr broker.ext ca.srl
    chmod 644 ca.pem
  )
  log "generated a throwaway CA ($tls/ca.pem) and the broker's certificate"
}

jaas_plain() {
  local user line="org.apache.kafka.common.security.plain.PlainLoginModule required"
  line+=" username=\"$ADMIN_USER\" password=\"$(password_of "$ADMIN_USER")\""
  for user in "$@"; do line+=" user_$user=\"$(password_of "$user")\""; done
  echo "$line;"
}

security_config() {
  local name lower
  name="$(listener)"
  lower="$(tr 'A-Z' 'a-z' <<<"$name")"
  cat <<EOF

# Secured: SASL on every listener; clients and brokers use SCRAM-SHA-512 (or PLAIN), the
# controllers PLAIN (SCRAM credentials live in the metadata log the controllers serve).
inter.broker.listener.name=$name
listener.security.protocol.map=$name:$PROTOCOL,CONTROLLER:$PROTOCOL
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.$lower.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.$lower.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$ADMIN_USER" password="$(password_of "$ADMIN_USER")";
listener.name.$lower.plain.sasl.jaas.config=$(jaas_plain "$ADMIN_USER" $SASL_USERS)
listener.name.controller.plain.sasl.jaas.config=$(jaas_plain "$ADMIN_USER")
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:$ADMIN_USER
allow.everyone.if.no.acl.found=false
EOF
  [[ "$PROTOCOL" == SASL_SSL ]] || return 0
  cat <<EOF
ssl.keystore.type=PKCS12
ssl.keystore.location=$SECRETS_DIR/tls/broker.p12
ssl.keystore.password=$(cat "$SECRETS_DIR/tls/keystore.password")
ssl.truststore.type=PEM
ssl.truststore.location=$SECRETS_DIR/tls/ca.pem
ssl.endpoint.identification.algorithm=https
EOF
}

# ---------------------------------------------------------------- config
quorum_config() {
  local i voters=()
  if (( NODES == 1 )); then
    echo "controller.quorum.bootstrap.servers=$HOST:$(controller_port 1)"
    return
  fi
  for i in $(nodes); do voters+=("$i@$HOST:$(controller_port "$i")"); done
  (IFS=,; echo "controller.quorum.voters=${voters[*]}")
}

write_configs() {
  local i="$1" rf=$(( NODES < 3 ? NODES : 3 )) isr=$(( NODES < 2 ? 1 : 2 ))
  local dir port cport name
  dir="$(node_dir "$i")"
  port="$(client_port "$i")"
  cport="$(controller_port "$i")"
  name="$(listener)"
  mkdir -p "$dir" "$(log_dirs "$i")"
  # server.properties holds the SASL passwords when secured.
  (umask 077; : > "$(server_props "$i")")
  cat > "$(server_props "$i")" <<EOF
# Generated by infra/kafka/kafka.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) -- edits are overwritten at each start.
# Node $i of $NODES; every node is both broker and controller.
process.roles=broker,controller
node.id=$i
$(quorum_config)
controller.listener.names=CONTROLLER
listeners=$name://$HOST:$port,CONTROLLER://$HOST:$cport
advertised.listeners=$name://$HOST:$port,CONTROLLER://$HOST:$cport
log.dirs=$(log_dirs "$i")

# Topics must be created explicitly (pactmesh-topics sets their replication and min ISR).
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=$rf
min.insync.replicas=$isr

# Internal topics: replicated like the data on a cluster, and few partitions (50 by default)
# so the first group join or transaction does not wait for 50 partitions to be created.
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=6
# A transaction left open by a killed producer is aborted within 2 s of its timeout, not
# 10 s (the default check interval): read-committed readers of its partitions wait less.
transaction.abort.timed.out.transaction.cleanup.interval.ms=2000
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
share.coordinator.state.topic.num.partitions=1

# Fast consumer-group joins: no initial rebalance delay.
group.initial.rebalance.delay.ms=0

# Modest footprint (the default log-cleaner dedupe buffer alone is 128 MiB of heap).
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.segment.bytes=104857600
log.retention.hours=168
EOF
  if (( SECURED )); then
    security_config >> "$(server_props "$i")"
  else
    cat >> "$(server_props "$i")" <<EOF
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
  fi
}

write_log4j() {
  cat > "$LOG4J_CONF" <<'EOF'
# Generated by infra/kafka/kafka.sh. stdout/stderr of the JVM are appended to the node's log beside the data dir.
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
# Noisy at WARN on a single node (e.g. "no leader" during topic creation) and while peers start.
logger.clientnet.name = org.apache.kafka.clients.NetworkClient
logger.clientnet.level = ERROR
EOF
}

is_formatted() { [[ -f "$(log_dirs "$1")/meta.properties" ]]; }

storage_tool() {
  "$JAVA" -cp "$LIB_DIR/*" -Dlog4j2.configurationFile="file:$LOG4J_CONF" "$STORAGE_TOOL" "$@"
}

# One cluster id for every node, kept in the data dir so a node formatted later (a wiped
# node of a cluster) joins the same cluster.
cluster_id() {
  local file="$DATA_DIR/.cluster-id"
  [[ -f "$file" ]] || storage_tool random-uuid | tail -n1 > "$file"
  cat "$file"
}

format_storage() {
  local i="$1" args=() user
  args=(format --config "$(server_props "$i")" --cluster-id "$(cluster_id)")
  # --standalone: a single-voter dynamic quorum (KIP-853) needs controller.quorum.bootstrap.servers;
  # a cluster lists its voters statically (controller.quorum.voters).
  (( NODES == 1 )) && args+=(--standalone)
  if (( SECURED )); then
    for user in "$ADMIN_USER" $SASL_USERS; do
      args+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(password_of "$user")]")
    done
  fi
  log "formatting KRaft storage of node $i in $(log_dirs "$i") (cluster id $(cluster_id))"
  storage_tool "${args[@]}" >/dev/null
}

check_layout() {
  [[ -f "$LAYOUT_FILE" ]] || return 0
  [[ "$(cat "$LAYOUT_FILE")" == "$(layout)" ]] && return 0
  die "$DATA_DIR holds a deployment of another shape ($(cat "$LAYOUT_FILE")), not ($(layout)); run kafka.sh reset with its settings, or set another KAFKA_DATA_DIR"
}

# ---------------------------------------------------------------- commands
lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$LOCK_FILE"
  flock -w 120 9 || die "another kafka.sh holds $LOCK_FILE"
}

node_failed() {
  local i="$1" why="$2"
  log "node $i $why; last log lines ($(log_file "$i")):"
  tail -n 40 "$(log_file "$i")" >&2 || true
}

wait_ready() {
  local deadline i pid pending
  deadline=$(( $(date +%s) + KAFKA_START_TIMEOUT ))
  while :; do
    pending=0
    for i in $(nodes); do
      pid="$(read_pid "$(pid_file "$i")")"
      if ! alive "$pid"; then
        node_failed "$i" "(pid $pid) exited during start-up"
        rm -f "$(pid_file "$i")"
        return 1
      fi
      log_says_started "$i" && port_open "$(client_port "$i")" || pending=1
    done
    if (( ! pending )) && { (( SECURED )) || metadata_ok; }; then
      return 0
    fi
    if (( $(date +%s) >= deadline )); then
      for i in $(nodes); do log_says_started "$i" || node_failed "$i" "not ready after ${KAFKA_START_TIMEOUT}s"; done
      return 1
    fi
    sleep 0.25
  done
}

launch_node() {
  local i="$1" pid _
  [[ -f "$(log_file "$i")" ]] && mv -f "$(log_file "$i")" "$(log_file "$i").1"
  rm -f "$(pid_file "$i")"
  # shellcheck disable=SC2086,SC2016
  setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$(pid_file "$i")" \
    "$JAVA" $KAFKA_HEAP_OPTS \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:MaxMetaspaceSize=192m -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="file:$LOG4J_CONF" -Dlog4j2.shutdownHookEnabled=false \
    $KAFKA_JIT_OPTS $KAFKA_JVM_OPTS \
    -cp "$LIB_DIR/*" "$MAIN_CLASS" "$(server_props "$i")" \
    >>"$(log_file "$i")" 2>&1 </dev/null 9>&- &
  for _ in $(seq 1 100); do
    pid="$(read_pid "$(pid_file "$i")")"
    [[ -n "$pid" ]] && return 0
    sleep 0.05
  done
  die "node $i did not write $(pid_file "$i")"
}

# Nodes already running must listen where the settings say; a node that runs elsewhere
# belongs to another invocation (other ports), which this one must not adopt.
check_running_nodes() {
  local i pid port
  for i in $(nodes); do
    pid="$(running_pid "$i")"
    [[ -n "$pid" ]] || continue
    port="$(configured_port "$i")"
    [[ -z "$port" || "$port" == "$(client_port "$i")" ]] \
      || die "node $i already running (pid $pid) on $HOST:$port, not $(client_port "$i"); stop it first"
  done
}

missing_nodes() {
  local i
  for i in $(nodes); do [[ -n "$(running_pid "$i")" ]] || echo "$i"; done
}

cmd_start() {
  local t0 missing i p
  t0="$(now)"
  lock
  check_running_nodes
  missing="$(missing_nodes)"
  if [[ -z "$missing" ]]; then
    if wait_ready; then
      echo "kafka already running ($NODES node(s), $PROTOCOL) on $(bootstrap_servers)"
      return 0
    fi
    die "kafka nodes are running but not healthy; run: $0 stop"
  fi
  for i in $missing; do
    for p in "$(client_port "$i")" "$(controller_port "$i")"; do
      port_open "$p" && die "$HOST:$p is already in use by another process (not started by this script)"
    done
  done
  command -v "$JAVA" >/dev/null || die "java not found"
  cmd_install
  check_layout
  mkdir -p "$DATA_DIR"
  touch "$MARKER"
  if (( SECURED )); then
    make_passwords
    [[ "$PROTOCOL" == SASL_SSL ]] && make_tls
  fi
  write_log4j
  for i in $missing; do
    write_configs "$i"
    is_formatted "$i" || format_storage "$i"
  done
  layout > "$LAYOUT_FILE"
  for i in $missing; do launch_node "$i"; done
  if ! wait_ready; then
    for i in $missing; do stop_pid "$(read_pid "$(pid_file "$i")")" "$i"; done
    exit 1
  fi
  echo "kafka $KAFKA_VERSION ready ($NODES node(s), $PROTOCOL) on $(bootstrap_servers) in $(elapsed "$t0") s; logs: $(log_file 1)"
}

# SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT; the pid file goes either way.
stop_pid() {
  local pid="$1" i="$2" deadline
  [[ -n "$pid" ]] || return 0
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
  [[ -z "$i" ]] || rm -f "$(pid_file "$i")"
}

cmd_stop() {
  local t0 i pid pids=() stopped=()
  t0="$(now)"
  lock
  for i in $(nodes); do
    pid="$(running_pid "$i")"
    if [[ -z "$pid" ]]; then rm -f "$(pid_file "$i")"; continue; fi
    pids+=("$pid")
    stopped+=("$i")
  done
  if (( ${#pids[@]} == 0 )); then
    echo "kafka not running"
    return 0
  fi
  # All at once: a node stopping alone in a cluster hands its leaderships over first, and
  # the last ones would wait for a quorum that is already gone.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in "${!pids[@]}"; do stop_pid "${pids[$i]}" "${stopped[$i]}"; done
  echo "kafka stopped (pids ${pids[*]}) in $(elapsed "$t0") s"
}

# Every node a kafka.sh started under the cache, whatever settings started it.
cmd_stop_all() {
  local file pid cmdline
  while IFS= read -r file; do
    pid="$(read_pid "$file")"
    [[ -n "$pid" ]] && alive "$pid" || continue
    cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || continue
    [[ "$cmdline" == *" $MAIN_CLASS $CACHE_BASE/"*"/server.properties"* ]] || continue
    log "stopping pid $pid ($file)"
    stop_pid "$pid" ""
    rm -f "$file"
  done < <(find "$CACHE_BASE" -maxdepth 4 -name '*broker*.pid' 2>/dev/null)
}

cmd_status() {
  local i pid port up=0
  for i in $(nodes); do
    pid="$(running_pid "$i")"
    port="$(configured_port "$i")"
    port="${port:-$(client_port "$i")}"
    if [[ -n "$pid" ]] && port_open "$port"; then
      echo "node $i running (pid $pid, $HOST:$port, Kafka $KAFKA_VERSION, $PROTOCOL)"
      up=$(( up + 1 ))
    elif [[ -n "$pid" ]]; then
      echo "node $i starting or unhealthy (pid $pid, $HOST:$port not answering)"
    else
      echo "node $i stopped"
    fi
  done
  (( up == NODES ))
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
KAFKA_NODES=$NODES
KAFKA_SECURITY_PROTOCOL=$PROTOCOL
CACHE_DIR=$CACHE_DIR
LIB_DIR=$LIB_DIR
DATA_DIR=$DATA_DIR
LOG_FILE=$(log_file 1)
PID_FILE=$(pid_file 1)
KAFKA_BOOTSTRAP_SERVERS=$(bootstrap_servers)
KAFKA_CONTROLLERS=$(for i in $(nodes); do printf '%s%s' "$([[ $i == 1 ]] || echo ,)" "$HOST:$(controller_port "$i")"; done)
KAFKA_HEAP_OPTS=$KAFKA_HEAP_OPTS
KAFKA_JIT_OPTS=$KAFKA_JIT_OPTS
EOF
}

cmd_client_env() {
  local user="${1:-$ADMIN_USER}"
  echo "KAFKA_BOOTSTRAP_SERVERS=$(bootstrap_servers)"
  echo "KAFKA_SECURITY_PROTOCOL=$PROTOCOL"
  (( SECURED )) || return 0
  # The passwords are made here when the deployment has not started yet (start formats
  # the storage with these very files).
  if [[ ! -d "$SECRETS_DIR" ]]; then
    mkdir -p "$DATA_DIR"
    touch "$MARKER"
    make_passwords
  fi
  echo "KAFKA_SASL_MECHANISM=${KAFKA_SASL_MECHANISM:-SCRAM-SHA-512}"
  echo "KAFKA_SASL_USERNAME=$user"
  echo "KAFKA_SASL_PASSWORD=$(password_of "$user")"
  [[ "$PROTOCOL" == SASL_SSL ]] && echo "KAFKA_SSL_CAFILE=$SECRETS_DIR/tls/ca.pem"
  return 0
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  env) cmd_env ;;
  client-env) cmd_client_env "${2:-}" ;;
  users) if (( SECURED )); then echo "$ADMIN_USER $SASL_USERS"; fi ;;
  stop-all) cmd_stop_all ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

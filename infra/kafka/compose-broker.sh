#!/usr/bin/env bash
# compose-broker.sh -- one node of compose.yaml's Kafka cluster, in the official apache/kafka image.
#
# The image's own entrypoint formats the storage without SCRAM users, so this script writes the
# node's server.properties, formats once with every SCRAM user (kafka-storage format --add-scram:
# the services' credentials exist before the first client connects), and execs the broker.
# The settings mirror infra/kafka/kafka.sh's secured mode: SASL on every listener (SCRAM-SHA-512
# and PLAIN for clients and brokers, PLAIN between controllers), the StandardAuthorizer, and
# admin as the only super user.
#
# Environment:
#   KAFKA_NODE_ID            this node's id (1..)
#   KAFKA_CLUSTER_ID         the cluster id (22 characters, the same on every node)
#   KAFKA_VOTERS             the controller quorum, e.g. 1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093
#   KAFKA_ADVERTISED_HOST    the name clients reach this node by (e.g. kafka-1)
#   KAFKA_SECURITY_PROTOCOL  SASL_PLAINTEXT (default) or SASL_SSL (then KAFKA_SSL_KEYSTORE_LOCATION,
#                            KAFKA_SSL_KEYSTORE_PASSWORD and KAFKA_SSL_TRUSTSTORE_LOCATION, PEM)
#   KAFKA_ADMIN_PASSWORD     the admin user's password (brokers authenticate as admin)
#   KAFKA_SCRAM_USERS        the other users, space-separated; each user U's password comes from
#                            KAFKA_PASSWORD_<U upper-cased> (e.g. KAFKA_PASSWORD_INTAKE)
#   KAFKA_REPLICATION        replication of the internal topics (default 3) and KAFKA_MIN_ISR (default 2)
#   KAFKA_HOME               default /opt/kafka; KAFKA_DATA default /var/lib/kafka/data
#   KAFKA_HEAP_OPTS          honoured by kafka-server-start.sh
set -euo pipefail

KAFKA_HOME="${KAFKA_HOME:-/opt/kafka}"
DATA="${KAFKA_DATA:-/var/lib/kafka/data}"
PROTOCOL="${KAFKA_SECURITY_PROTOCOL:-SASL_PLAINTEXT}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
BIND="${KAFKA_BIND_HOST:-0.0.0.0}"
RF="${KAFKA_REPLICATION:-3}"
ISR="${KAFKA_MIN_ISR:-2}"
PROPS="${KAFKA_PROPERTIES:-$DATA/server.properties}"
: "${KAFKA_NODE_ID:?} ${KAFKA_CLUSTER_ID:?} ${KAFKA_VOTERS:?} ${KAFKA_ADVERTISED_HOST:?} ${KAFKA_ADMIN_PASSWORD:?}"

password_of() {
  if [[ "$1" == admin ]]; then echo "$KAFKA_ADMIN_PASSWORD"; return; fi
  local var
  var="KAFKA_PASSWORD_$(tr 'a-z.-' 'A-Z__' <<<"$1")"
  [[ -n "${!var:-}" ]] || { echo "compose-broker.sh: $var is not set" >&2; exit 1; }
  echo "${!var}"
}

jaas_plain() {
  local user line="org.apache.kafka.common.security.plain.PlainLoginModule required"
  line+=" username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\""
  for user in "$@"; do line+=" user_$user=\"$(password_of "$user")\""; done
  echo "$line;"
}

write_properties() {
  local lower
  lower="$(tr 'A-Z' 'a-z' <<<"$PROTOCOL")"
  mkdir -p "$DATA/logs"
  (umask 077; : > "$PROPS")
  cat > "$PROPS" <<EOF
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_VOTERS
controller.listener.names=CONTROLLER
listeners=$PROTOCOL://$BIND:$PORT,CONTROLLER://$BIND:$CONTROLLER_PORT
advertised.listeners=$PROTOCOL://$KAFKA_ADVERTISED_HOST:$PORT,CONTROLLER://$KAFKA_ADVERTISED_HOST:$CONTROLLER_PORT
inter.broker.listener.name=$PROTOCOL
listener.security.protocol.map=$PROTOCOL:$PROTOCOL,CONTROLLER:$PROTOCOL
log.dirs=$DATA/logs
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=$RF
min.insync.replicas=$ISR
offsets.topic.replication.factor=$RF
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$ISR
share.coordinator.state.topic.replication.factor=$RF
share.coordinator.state.topic.min.isr=$ISR
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=16777216
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.$lower.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.$lower.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
listener.name.$lower.plain.sasl.jaas.config=$(jaas_plain admin ${KAFKA_SCRAM_USERS:-})
listener.name.controller.plain.sasl.jaas.config=$(jaas_plain admin)
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
EOF
  [[ "$PROTOCOL" == SASL_SSL ]] || return 0
  cat >> "$PROPS" <<EOF
ssl.keystore.type=PKCS12
ssl.keystore.location=${KAFKA_SSL_KEYSTORE_LOCATION:?}
ssl.keystore.password=${KAFKA_SSL_KEYSTORE_PASSWORD:?}
ssl.truststore.type=PEM
ssl.truststore.location=${KAFKA_SSL_TRUSTSTORE_LOCATION:?}
EOF
}

format_once() {
  local user args=(format --ignore-formatted --cluster-id "$KAFKA_CLUSTER_ID" --config "$PROPS")
  for user in admin ${KAFKA_SCRAM_USERS:-}; do
    args+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(password_of "$user")]")
  done
  "$KAFKA_HOME/bin/kafka-storage.sh" "${args[@]}"
}

write_properties
format_once
exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$PROPS"

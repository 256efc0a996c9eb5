#!/usr/bin/env bash
# Start the whole mesh in the foreground: the local Kafka broker, or a cluster with
# KAFKA_NODES=3 (unless KAFKA_BOOTSTRAP_SERVERS names an external cluster), the topics, and
# the six services under honcho, each output line prefixed by its service. Ctrl-C stops
# the services (honcho) and then the broker this script started.
#
# A service that exits on its own (a crash: services wait for Kafka and Postgres
# instead of exiting) is restarted by infra/supervise.sh with a line saying so;
# after 5 quick exits in a row it is given up on, and honcho stops the mesh.
#
# KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT) starts the local broker secured
# (SCRAM users, the StandardAuthorizer, a throwaway CA): the topics and the ACL table are
# made as the admin user, each service connects as its own user, and the user "upstream"
# may submit on the inbound topic and read every result topic (`kafka.sh client-env
# upstream` prints its settings). With an external cluster every process connects with
# this shell's KAFKA_* settings; apply the ACLs there with `pactmesh-topics --acls`.
#
#   infra/run.sh              start everything
#   infra/run.sh env SERVICE  print the settings the launcher gives SERVICE, start nothing
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=(intake routing orchestrator tools hitl delivery)
KAFKA=infra/kafka/kafka.sh
export PACTMESH_PYTHON="$PWD/.venv/bin/python"
export PACTMESH_DATA_DIR="${PACTMESH_DATA_DIR:-$PWD/.cache/run}"
export PACTMESH_TOPIC_PREFIX="${PACTMESH_TOPIC_PREFIX:-pactmesh.}"
# Local receivers (README's on 127.0.0.1:9000) may get webhooks here; a deployment
# leaves it unset: webhooks then reach public addresses only.
export PACTMESH_DELIVERY_WEBHOOK_ALLOWED_NETWORKS="${PACTMESH_DELIVERY_WEBHOOK_ALLOWED_NETWORKS:-127.0.0.0/8,::1/128}"
EXTERNAL=0
[[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]] || EXTERNAL=1
SECURED=0
[[ "${KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}" != SASL_* ]] || SECURED=1

# A Kafka client's settings as KEY=value lines: USER's on the local broker, this shell's
# KAFKA_* settings on an external cluster.
kafka_env() {
  local name
  if (( ! EXTERNAL )); then
    "$KAFKA" client-env "$1"
    return
  fi
  for name in KAFKA_BOOTSTRAP_SERVERS KAFKA_SECURITY_PROTOCOL KAFKA_SASL_MECHANISM \
      KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD KAFKA_SSL_CAFILE; do
    [[ -z "${!name:-}" ]] || echo "$name=${!name}"
  done
}

# Every setting the launcher gives SERVICE (the rest of this shell's environment is
# inherited as well); compose.yaml and deploy/kubernetes set the same names.
service_env() {
  kafka_env "$1"
  echo "PACTMESH_DATA_DIR=$PACTMESH_DATA_DIR"
  echo "PACTMESH_TOPIC_PREFIX=$PACTMESH_TOPIC_PREFIX"
  echo "OTEL_SERVICE_NAME=$1"
}

# KEY=value lines as lines a shell can source, values quoted.
quoted() {
  local key value
  while IFS='=' read -r key value; do printf '%s=%q\n' "$key" "$value"; done
}

if [[ "${1:-}" == env ]]; then
  [[ " ${SERVICES[*]} " == *" ${2:-} "* ]] || { echo "usage: $0 env {${SERVICES[*]}}" >&2; exit 2; }
  service_env "$2"
  exit 0
fi
[[ $# == 0 ]] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
mkdir -p "$PACTMESH_DATA_DIR"

started_broker=0
cleanup() {
  trap - EXIT INT TERM
  if [[ $started_broker == 1 ]]; then
    "$KAFKA" stop || true
  fi
}
trap cleanup EXIT INT TERM

if (( ! EXTERNAL )); then
  "$KAFKA" status >/dev/null 2>&1 || started_broker=1
  "$KAFKA" start   # prints its own start-up time; KAFKA_NODES=3 starts a cluster
fi
KAFKA_BOOTSTRAP_SERVERS="$(kafka_env admin | sed -n 's/^KAFKA_BOOTSTRAP_SERVERS=//p')"

# The topics, and on the secured local broker the ACL table, as the admin user.
topics_args=()
(( EXTERNAL || ! SECURED )) || topics_args=(--acls --upstream "upstream=*")
(
  set -a
  eval "$(kafka_env admin | quoted)"
  set +a
  exec "$PACTMESH_PYTHON" -m pactmesh_kit.bootstrap "${topics_args[@]}"
)

# Each service's settings in a file of its own (its Kafka password among them, hence 600),
# sourced by its Procfile line.
env_dir="$PACTMESH_DATA_DIR/env"
(umask 077; mkdir -p "$env_dir")
for service in "${SERVICES[@]}"; do
  (umask 077; service_env "$service" | quoted > "$env_dir/$service.env")
done
procfile="$PACTMESH_DATA_DIR/Procfile"
pattern="$(IFS='|'; echo "${SERVICES[*]}")"
sed -E "s#^($pattern): #\\1: set -a; . '$env_dir/\\1.env'; set +a; #" infra/Procfile > "$procfile"

# PACTMESH_MODEL_SIM=1: start the OpenAI-compatible simulator too and send every model
# role to it through langchain-openai (the real client path), the offline model behind
# it as the fallback. Its behaviour is changed at runtime with PUT :8020/sim/config.
if [[ "${PACTMESH_MODEL_SIM:-0}" == 1 && -z "${PACTMESH_MODELS_JSON:-}${PACTMESH_MODELS_FILE:-}" ]]; then
  role='{"primary": {"model": "openai:sim", "base_url": "http://127.0.0.1:8020/v1", "api_key": "sk-simulator", "latency_budget_s": 10}, "fallbacks": [{"model": "pactmesh-offline:default"}]}'
  export PACTMESH_MODELS_JSON="{\"routing\": $role, \"extraction\": $role, \"drafting\": $role}"
  echo 'model-sim: exec infra/supervise.sh model-sim "$PACTMESH_PYTHON" -m pactmesh_model_sim' >> "$procfile"
  echo "models: every role -> the simulator on 127.0.0.1:8020, offline model as fallback"
fi

cat <<INFO

pactmesh on Kafka $KAFKA_BOOTSTRAP_SERVERS (${KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}; topics prefixed '$PACTMESH_TOPIC_PREFIX'), state in $PACTMESH_DATA_DIR
  intake        http://127.0.0.1:8000/docs   AsyncAPI http://127.0.0.1:8000/asyncapi
  routing       http://127.0.0.1:8001/docs   AsyncAPI http://127.0.0.1:8001/asyncapi
  orchestrator  http://127.0.0.1:8002/docs   AsyncAPI http://127.0.0.1:8002/asyncapi
  tools         http://127.0.0.1:8003/docs   AsyncAPI http://127.0.0.1:8003/asyncapi
  hitl          http://127.0.0.1:8004/docs   AsyncAPI http://127.0.0.1:8004/asyncapi
  delivery      http://127.0.0.1:8005/docs   AsyncAPI http://127.0.0.1:8005/asyncapi
  sandbox       http://127.0.0.1:8010/docs   (backends for the tools; faults, ledger)
Try, in another shell in $PWD (every route takes a bearer token from the local issuer):
  TOKEN=\$(.venv/bin/pactmesh token --role requester --tenant acme)
  curl -s -XPOST localhost:8000/v1/requests -H "authorization: Bearer \$TOKEN" -H 'content-type: application/json' -d '{"text":"How do I reset my password?"}'
  curl -s localhost:8000/v1/requests/<request_id> -H "authorization: Bearer \$TOKEN"
  curl -sN localhost:8000/v1/requests/<request_id>/events -H "authorization: Bearer \$TOKEN"
What happened to a request:
  timeline   .venv/bin/pactmesh timeline <request_id> --tenant acme    (GET localhost:8000/v1/requests/<id>/timeline;
             auditors, the requester, the reviewers its gates asked; beside each review on http://127.0.0.1:8004/reviewer)
  traces     ${OTEL_EXPORTER_OTLP_ENDPOINT:-$PACTMESH_DATA_DIR/traces/*.jsonl}, read without Docker by .venv/bin/pactmesh trace <request_id>
  metrics    http://127.0.0.1:800[0-5]/metrics (Prometheus text; a token when PACTMESH_METRICS_TOKEN is set)
  spend      curl -s localhost:8000/v1/usage -H "authorization: Bearer \$(.venv/bin/pactmesh token --role auditor --tenant acme)"
Ctrl-C stops everything.

INFO
# The local broker's client settings are in the services' files: the sandbox and the
# simulator must not inherit the shell's (they connect to no broker).
(( EXTERNAL )) || unset KAFKA_SECURITY_PROTOCOL KAFKA_SASL_MECHANISM KAFKA_SASL_USERNAME \
  KAFKA_SASL_PASSWORD KAFKA_SSL_CAFILE
# honcho forwards Ctrl-C to every service and waits for them to exit (infra/launch.py: for
# as long as their shutdown grace, not honcho's fixed 5 s).
"$PACTMESH_PYTHON" infra/launch.py --no-colour -f "$procfile" -d "$PWD" start

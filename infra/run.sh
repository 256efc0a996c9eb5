#!/usr/bin/env bash
# Start the whole mesh in the foreground: the local Kafka broker (unless
# KAFKA_BOOTSTRAP_SERVERS names an external cluster), the topics, and the six
# services under honcho, each output line prefixed by its service. Ctrl-C stops
# the services (honcho) and then the broker this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

export PACTMESH_PYTHON="$PWD/.venv/bin/python"
export PACTMESH_DATA_DIR="${PACTMESH_DATA_DIR:-$PWD/.cache/run}"
export PACTMESH_TOPIC_PREFIX="${PACTMESH_TOPIC_PREFIX:-pactmesh.}"
mkdir -p "$PACTMESH_DATA_DIR"

started_broker=0
cleanup() {
  trap - EXIT INT TERM
  if [[ $started_broker == 1 ]]; then
    infra/kafka/kafka.sh stop || true
  fi
}
trap cleanup EXIT INT TERM

if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
  infra/kafka/kafka.sh status >/dev/null 2>&1 || started_broker=1
  infra/kafka/kafka.sh start   # prints its own start-up time
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${KAFKA_PORT:-9092}"
fi
"$PACTMESH_PYTHON" -m pactmesh_kit.bootstrap

cat <<INFO

pactmesh on Kafka $KAFKA_BOOTSTRAP_SERVERS (topics prefixed '$PACTMESH_TOPIC_PREFIX'), state in $PACTMESH_DATA_DIR
  intake        http://127.0.0.1:8000/docs   AsyncAPI http://127.0.0.1:8000/asyncapi
  routing       http://127.0.0.1:8001/docs   AsyncAPI http://127.0.0.1:8001/asyncapi
  orchestrator  http://127.0.0.1:8002/docs   AsyncAPI http://127.0.0.1:8002/asyncapi
  tools         http://127.0.0.1:8003/docs   AsyncAPI http://127.0.0.1:8003/asyncapi
  hitl          http://127.0.0.1:8004/docs   AsyncAPI http://127.0.0.1:8004/asyncapi
  delivery      http://127.0.0.1:8005/docs   AsyncAPI http://127.0.0.1:8005/asyncapi
  sandbox       http://127.0.0.1:8010/docs   (backends for the tools; faults, ledger)
Try: curl -s -XPOST localhost:8000/v1/requests -H 'content-type: application/json' -d '{"text":"How do I reset my password?"}'
Traces: ${OTEL_EXPORTER_OTLP_ENDPOINT:-$PACTMESH_DATA_DIR/traces/*.jsonl}.  Ctrl-C stops everything.

INFO
# honcho forwards Ctrl-C to every service and waits for them to exit.
.venv/bin/honcho --no-colour -f infra/Procfile -d "$PWD" start

#!/usr/bin/env bash
# Start the whole mesh in the foreground: the local Kafka broker (unless
# KAFKA_BOOTSTRAP_SERVERS names an external cluster), the topics, and the six
# services under honcho, each output line prefixed by its service. Ctrl-C stops
# the services (honcho) and then the broker this script started.
#
# A service that exits on its own (a crash: services wait for Kafka and Postgres
# instead of exiting) is restarted by infra/supervise.sh with a line saying so;
# after 5 quick exits in a row it is given up on, and honcho stops the mesh.
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

# PACTMESH_MODEL_SIM=1: start the OpenAI-compatible simulator too and send every model
# role to it through langchain-openai (the real client path), the offline model behind
# it as the fallback. Its behaviour is changed at runtime with PUT :8020/sim/config.
procfile=infra/Procfile
if [[ "${PACTMESH_MODEL_SIM:-0}" == 1 && -z "${PACTMESH_MODELS_JSON:-}${PACTMESH_MODELS_FILE:-}" ]]; then
  role='{"primary": {"model": "openai:sim", "base_url": "http://127.0.0.1:8020/v1", "api_key": "sk-simulator", "latency_budget_s": 10}, "fallbacks": [{"model": "pactmesh-offline:default"}]}'
  export PACTMESH_MODELS_JSON="{\"routing\": $role, \"extraction\": $role, \"drafting\": $role}"
  procfile="$PACTMESH_DATA_DIR/Procfile.with-model-sim"
  { cat infra/Procfile; echo 'model-sim: exec infra/supervise.sh model-sim "$PACTMESH_PYTHON" -m pactmesh_model_sim'; } > "$procfile"
  echo "models: every role -> the simulator on 127.0.0.1:8020, offline model as fallback"
fi

cat <<INFO

pactmesh on Kafka $KAFKA_BOOTSTRAP_SERVERS (topics prefixed '$PACTMESH_TOPIC_PREFIX'), state in $PACTMESH_DATA_DIR
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
Traces: ${OTEL_EXPORTER_OTLP_ENDPOINT:-$PACTMESH_DATA_DIR/traces/*.jsonl}.  Ctrl-C stops everything.

INFO
# honcho forwards Ctrl-C to every service and waits for them to exit (infra/launch.py: for
# as long as their shutdown grace, not honcho's fixed 5 s).
"$PACTMESH_PYTHON" infra/launch.py --no-colour -f "$procfile" -d "$PWD" start

#!/usr/bin/env bash
# supervise.sh NAME COMMAND... -- run one process of the local mesh (infra/Procfile) and
# restart it when it exits on its own.
#
# honcho (infra/run.sh) stops the whole mesh as soon as one process exits. Services wait
# for Kafka and Postgres at start-up instead of exiting, so an exit is a crash: it is
# reported here, loudly, and the process is started again after a pause that doubles up to
# 30 s. A process that exits PACTMESH_RESTART_LIMIT times in a row (default 5), each time
# within 30 s of starting, is given up on: this script then exits with its code, and
# honcho stops the mesh ("<name> stopped (rc=N)"), as before.
#
# honcho stops processes with SIGTERM to their process group, which reaches the service
# itself: the trap here only notes that the mesh is stopping (forwarding it would make a
# second SIGTERM, which uvicorn takes as "exit now", skipping the service's drain), and
# this script exits 0 once the service has gone.
set -uo pipefail

name="$1"
shift
limit="${PACTMESH_RESTART_LIMIT:-5}"
stopping=0
trap 'stopping=1' TERM INT

say() { echo "supervise: $name $*" >&2; }

quick=0
pause=1
while :; do
  started=$SECONDS
  "$@" &
  child=$!
  # wait returns early (>128) when a trapped signal arrives: wait until the child is gone
  wait "$child"
  code=$?
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    code=$?
  done
  # Stopped with the mesh: done once the process has gone (bash may have lost its status
  # to the signal, so none is passed on).
  [[ $stopping == 1 ]] && exit 0
  if (( SECONDS - started < 30 )); then
    quick=$((quick + 1))
  else
    quick=1
    pause=1
  fi
  if (( quick >= limit )); then
    say "exited with code $code, $quick times in a row within 30 s of starting: giving up (the mesh stops)"
    exit "$code"
  fi
  say "exited with code $code; restarting in ${pause} s (restart $quick of at most $((limit - 1)) in a row)"
  sleep "$pause" &
  wait $! 2>/dev/null
  [[ $stopping == 1 ]] && exit "$code"
  pause=$(( pause * 2 > 30 ? 30 : pause * 2 ))
done

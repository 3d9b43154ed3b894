#!/usr/bin/env bash
# Starts a Ferry stack on loopback (a broker, an engine, two workers), runs
# every example script through `ferry run`, prints the results, and stops
# the processes again, whatever happens.
set -uo pipefail
bin=${1:-build/bin}
here=$(cd "$(dirname "$0")/.." && pwd)
logs=$(mktemp -d /tmp/ferry-demo-XXXXXX)
base=${FERRY_DEMO_PORT:-5555}
export FERRY_COMMANDS="tcp://127.0.0.1:$base"
export FERRY_ENGINES="tcp://127.0.0.1:$((base + 1))"
export FERRY_WORKERS="tcp://127.0.0.1:$((base + 2))"
export FERRY_CLIENTS="tcp://127.0.0.1:$((base + 3))"
pids=()

stop() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$logs"
}
trap stop EXIT

"$bin/ferry-broker" 2>"$logs/broker.log" & pids+=($!)
"$bin/ferry-engine" 2>"$logs/engine.log" & pids+=($!)
"$bin/ferry-worker" 2>"$logs/worker1.log" & pids+=($!)
"$bin/ferry-worker" 2>"$logs/worker2.log" & pids+=($!)

# Wait (bounded) until the broker sees the engine and both workers.
ready=0
for _ in $(seq 100); do
  s=$("$bin/ferry" stats --json --timeout 1 2>/dev/null) || true
  if echo "$s" | grep -q '"engines": 1, "workers": 2'; then ready=1; break; fi
  sleep 0.1
done
if [ $ready -ne 1 ]; then
  echo "demo: the stack did not come up; logs:" >&2
  tail -n 20 "$logs"/*.log >&2
  exit 1
fi
echo "== Ferry stack up: broker $FERRY_CLIENTS, 1 engine, 2 workers"

status=0
for script in "$here"/examples/*.lua; do
  name=$(basename "$script")
  echo
  echo "== ferry run examples/$name"
  args=()
  [ "$name" = hello.lua ] && args=(Ferry)
  start=$(date +%s%N)
  "$bin/ferry" run "$script" "${args[@]}"
  rc=$?
  echo "-- exit $rc, $(( ($(date +%s%N) - start) / 1000000 )) ms"
  [ $rc -eq 0 ] || status=1
done
echo
echo "== ferry stats"
"$bin/ferry" stats
exit $status

#!/usr/bin/env bash
# docker/swarm-test.sh [BIN_DIR]: the Swarm part of the Docker test stage.
# Proves on a one-node swarm that docker-stack.yml works as docs/docker.md
# says: two broker replicas found through tasks.broker by engines, workers
# and clients (--discover), keys from Docker secrets and configs; scripts
# run; workers scale 1 -> 4 and engines 1 -> 2 and back under load; a broker
# task killed under load is replaced, and its replacement serves again. Every
# script must succeed, but those in flight through the killed broker, which
# must end with an error code (broker_lost).
#
# The swarm: `docker swarm init` when the engine is in none (and `docker
# swarm leave --force` at the end); a swarm that was there already is used
# and left as it was. The stack, its secrets, configs and network are
# removed at the end whatever happens.
#
# BIN_DIR holds the host's `ferry` (for `ferry keygen`; default build/bin).
# Environment:
#   FERRY_IMAGE     the image to test (default ferry:test; built from this tree
#                   when missing, as docker/test.sh does, base images included)
#   FERRY_TEST_KEEP=1  keep the logs folder
# Exit status 0 when every check passed.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
bin=${1:-build/bin}
image=${FERRY_IMAGE:-ferry:test}
stack=ferrys$$
net=${stack}_ferry
work=$(mktemp -d /tmp/ferry-swarm-test-XXXXXX)
keys=$work/keys
passed=0
failed=0
joined=0 # this script made the swarm

log() { echo "swarm-test: $*"; }
ok() {
  passed=$((passed + 1))
  echo "  ok    $*"
}
bad() {
  failed=$((failed + 1))
  echo "  FAIL  $*"
}

# ferry ARGS...: the ferry client in a container on the stack's network, with
# the client key.
ferry_in() {
  docker run --rm --network "$net" -v "$keys:/keys:ro" -v "$here/docker:/t:ro" --user 0 \
    -e FERRY_DISCOVER=tasks.broker -e FERRY_CLIENTS=tcp://broker:5558 \
    -e FERRY_CURVE_KEY=/keys/client_secret -e FERRY_BROKER_KEY=/keys/broker \
    "$image" "$@"
}

# A container on the network that runs the load: $1 scripts one after the
# other, $2 at once; each result line ("ok" or the error code) into
# $work/load.<name>.
load_start() {
  local name=$1 n=$2 par=$3
  docker run -d --name "$stack-load-$name" --network "$net" -v "$keys:/keys:ro" --user 0 \
    -e FERRY_DISCOVER=tasks.broker -e FERRY_CLIENTS=tcp://broker:5558 \
    -e FERRY_CURVE_KEY=/keys/client_secret -e FERRY_BROKER_KEY=/keys/broker \
    --entrypoint /bin/sh "$image" -c "
      one() { for i in \$(seq $n); do
        if out=\$(ferry run --timeout 20 - <<'EOF' 2>&1
local t = {} for i = 1, 5 do t[i] = ferry.call('sleep', 50) end return #t
EOF
        ); then echo ok; else echo \"fail \$(echo \"\$out\" | tr '\n' ' ' | cut -c1-160)\"; fi
      done; }
      for p in \$(seq $par); do one & done; wait" >/dev/null
}

# load_wait NAME: waits for the load container, its lines into $work/load.NAME.
load_wait() {
  docker wait "$stack-load-$1" >/dev/null
  docker logs "$stack-load-$1" >"$work/load.$1" 2>&1
  docker rm -f "$stack-load-$1" >/dev/null 2>&1
}

# broker_counts: "engines workers" as each broker task counts them, one line each.
broker_counts() {
  local ips
  ips=$(docker run --rm --network "$net" --entrypoint getent "$image" ahostsv4 tasks.broker |
    awk '{print $1}' | sort -u)
  for ip in $ips; do
    ferry_in ferry stats --json --timeout 2 --discover "" --broker "tcp://$ip:5558" 2>/dev/null |
      sed -n 's/^{"engines": \([0-9]*\), "workers": \([0-9]*\),.*/\1 \2/p'
  done
}

# wait_counts ENGINES WORKERS SECONDS: until both brokers count them.
wait_counts() {
  local want="$1 $2" t=0
  while [ "$t" -lt "$3" ]; do
    local c
    c=$(broker_counts)
    if [ "$(echo "$c" | grep -c "^$want\$")" -eq 2 ]; then
      return 0
    fi
    sleep 1
    t=$((t + 1))
  done
  log "brokers count: $(echo "$c" | tr '\n' ';') (want $want on both)"
  return 1
}

cleanup() {
  docker ps -aq --filter "name=$stack-load" | xargs -r docker rm -f >/dev/null 2>&1
  docker stack rm "$stack" >/dev/null 2>&1
  # The network goes once its tasks are gone.
  for _ in $(seq 30); do
    docker network inspect "$net" >/dev/null 2>&1 || break
    sleep 1
  done
  [ "$joined" = 1 ] && docker swarm leave --force >/dev/null 2>&1
  if [ "$failed" -gt 0 ] || [ -n "${FERRY_TEST_KEEP:-}" ]; then
    log "logs kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

echo "== image"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  docker/base-images.sh && docker build --network host -t "$image" . >"$work/build.log" 2>&1 ||
    { bad "docker build (see $work/build.log)"; exit 1; }
fi
ok "image $image"

echo "== swarm"
state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)
if [ "$state" != active ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null 2>&1 || { bad "docker swarm init"; exit 1; }
  joined=1
  ok "docker swarm init (one node)"
else
  ok "a swarm is there already: used, and left as it is"
fi

echo "== keys"
mkdir -p "$keys"
for k in broker engine worker client; do
  "$bin/ferry" keygen "$keys/$k" >/dev/null || { bad "ferry keygen $k"; exit 1; }
done
ok "key pairs for broker, engine, worker, client"

echo "== deploy"
t0=$(date +%s)
FERRY_KEYS=$keys FERRY_IMAGE=$image FERRY_WORKER_CONCURRENCY=8 \
  docker stack deploy -c docker-stack.yml "$stack" >"$work/deploy.log" 2>&1 ||
  { bad "docker stack deploy (see $work/deploy.log)"; cat "$work/deploy.log"; exit 1; }
if wait_counts 1 1 90; then
  ok "two brokers, each with the engine and the worker, after $(($(date +%s) - t0)) s"
else
  bad "the stack did not come up"
  docker service ps --no-trunc "$stack"_broker "$stack"_engine "$stack"_worker >"$work/ps.log" 2>&1
  for s in broker engine worker; do docker service logs "$stack"_$s >"$work/$s.log" 2>&1; done
  exit 1
fi

echo "== scripts"
if out=$(ferry_in ferry run --timeout 10 /examples/hello.lua Swarm 2>&1) &&
  echo "$out" | grep -q Swarm; then
  ok "ferry run --discover tasks.broker: $(echo "$out" | head -1)"
else
  bad "a script through the stack: $out"
fi

echo "== scale under load"
load_start scale 30 6
docker service scale -d "$stack"_worker=4 "$stack"_engine=2 >/dev/null 2>&1
if wait_counts 2 4 60; then ok "scaled up: 2 engines and 4 workers on both brokers"; else bad "scale up"; fi
docker service scale -d "$stack"_worker=1 "$stack"_engine=1 >/dev/null 2>&1
if wait_counts 1 1 90; then ok "scaled down: 1 engine and 1 worker on both brokers"; else bad "scale down"; fi
load_wait scale
n=$(grep -c '^ok' "$work/load.scale")
f=$(grep -vc '^ok' "$work/load.scale")
if [ "$f" -eq 0 ] && [ "$n" -eq 180 ]; then
  ok "180 scripts while scaling, all succeeded"
else
  bad "scripts while scaling: $n ok, $f failed: $(grep -v '^ok' "$work/load.scale" | head -3)"
fi

echo "== kill a broker task under load"
load_start kill 30 6
# The kill comes once the load is under way: some scripts done, the others running.
for _ in $(seq 100); do
  [ "$(docker logs "$stack-load-kill" 2>/dev/null | grep -c '^ok')" -ge 6 ] && break
  sleep 0.1
done
victim=$(docker ps -q --filter "name=${stack}_broker" | head -1)
tk=$(date +%s.%N)
docker kill "$victim" >/dev/null
load_wait kill
n=$(grep -c '^ok' "$work/load.kill")
lost=$(grep -c 'broker_lost' "$work/load.kill")
other=$(grep -v '^ok' "$work/load.kill" | grep -vc broker_lost)
log "kill of broker task ${victim:0:12}: $n ok, $lost broker_lost, $other other failures"
if [ "$other" -eq 0 ] && [ "$((n + lost))" -eq 180 ] && [ "$lost" -le 6 ]; then
  ok "every script succeeded but those in flight through the killed broker ($lost, broker_lost)"
else
  bad "scripts around the kill: $(grep -v '^ok' "$work/load.kill" | head -3)"
fi
if wait_counts 1 1 60; then
  ok "the broker task was replaced and serves again after $(awk -v a="$tk" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
else
  bad "the replaced broker does not serve"
fi

echo
echo "swarm-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

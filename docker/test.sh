#!/usr/bin/env bash
# docker/test.sh [BIN_DIR]: the Docker test stage. Proves on this machine
# that the image builds and that the Compose stack works as docs/docker.md
# says: the stack comes up with CURVE keys made on first start, a client
# without a listed key is refused, scripts run from the host (with the key
# ferry-keys exports) and from the client service, workers scale
# from 1 to 4 (and engines from 1 to 2) and back to 1 while scripts keep
# running, and every one of those scripts succeeds. And the Debian package:
# built from the host's build folder (cpack -G DEB, as `make deb`), installed
# with apt-get into a clean debian:bookworm-slim, it runs a script through
# its own ferry-broker, ferry-engine and ferry-worker. Last, the Swarm part:
# docker/swarm-test.sh (two brokers, docker-stack.yml) with the same image.
#
# Steps, each timed: install docker.io and docker-compose when missing; start
# dockerd when it is not running (and stop it at the end); make the base
# images (docker/base-images.sh: pulled, or built with debootstrap when no
# registry can be reached); build the image; bring the stack up under its
# own project name; run the checks; tear it all down.
#
# BIN_DIR holds the host's `ferry` client (default build/bin; built into
# build-docker-client when missing). Environment:
#   FERRY_COMPOSE   the compose command (default: "docker compose" where v2 is
#                   present, else "docker-compose")
#   FERRY_IMAGE     the image tag to build and test (default ferry:test)
#   FERRY_DOCKER_CACHE, FERRY_DEBIAN_MIRROR: see docker/base-images.sh
#   FERRY_TEST_KEEP=1  keep the logs folder even when everything passed
# Exit status 0 when every check passed.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
bin=${1:-build/bin}
image=${FERRY_IMAGE:-ferry:test}
project=ferry-test-$$
work=$(mktemp -d /tmp/ferry-docker-test-XXXXXX)
load_loops=12    # scripts running at once during the scaling
concurrency=8    # credit per worker (docker/compose.test.yml)

passed=0
failed=0
timings=()
dockerd_pid=""   # the dockerd this script started
dockerd_stop=""  # "ours" or "systemd": the daemon to stop at the end
stack_up=0
loop_pids=()

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "docker-test: $*"; }
ok() {
  passed=$((passed + 1))
  echo "  ok    $*"
}
bad() {
  failed=$((failed + 1))
  echo "  FAIL  $*"
}

# step NAME: starts timing a step; the previous one ends here.
step_name=""
step_start=""
step() {
  step_end
  step_name=$1
  step_start=$(now)
  echo
  echo "== $step_name"
}
step_end() {
  [ -n "$step_name" ] || return 0
  local t
  t=$(secs "$step_start" "$(now)")
  timings+=("$(printf '%7ss  %s' "$t" "$step_name")")
  echo "-- $step_name: ${t}s"
  step_name=""
}

compose() { $FERRY_COMPOSE -p "$project" -f docker-compose.yml -f docker/compose.test.yml "$@"; }

# stats_json: the broker's stats as one JSON line, or nothing.
stats_json() { "$bin/ferry" stats --json --timeout 1 --broker "$broker" 2>/dev/null; }
# stat_of NAME JSON: a top-level counter (not one of "functions").
stat_of() { sed -n "s/^{[^{]*\"$1\": \([0-9]*\).*/\\1/p" <<<"$2"; }

# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.2 s until it
# succeeds or SECONDS pass. 0 when it succeeded.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local start
  start=$(now)
  while :; do
    if "$@" >/dev/null 2>&1; then
      log "$what after $(secs "$start" "$(now)")s"
      return 0
    fi
    if awk -v a="$start" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
      log "$what: not within ${limit}s"
      return 1
    fi
    sleep 0.2
  done
}

# has_counts ENGINES WORKERS: the broker sees exactly that many of each.
has_counts() {
  local s
  s=$(stats_json) || return 1
  [ "$(stat_of engines "$s")" = "$1" ] && [ "$(stat_of workers "$s")" = "$2" ]
}

# A free TCP port on the host for the broker's client port.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768-)
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
      echo "$p"
      return
    }
  done
  echo 25558
}

show_stack() {
  echo "---- compose ps"
  compose ps 2>&1 | sed 's/^/  /'
  echo "---- compose logs (last 40 lines of each service)"
  compose logs --no-color --tail=40 2>&1 | sed 's/^/  /'
}

stop_dockerd() {
  if [ "$dockerd_stop" = systemd ]; then
    systemctl stop docker.service docker.socket
  elif [ -n "$dockerd_pid" ]; then
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 150); do
      kill -0 "$dockerd_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$dockerd_pid" 2>/dev/null
    wait "$dockerd_pid" 2>/dev/null
  fi
  log "dockerd stopped"
  dockerd_stop=""
}

finish() {
  local rc=$?
  if [ ${#loop_pids[@]} -gt 0 ]; then
    kill "${loop_pids[@]}" 2>/dev/null
    wait "${loop_pids[@]}" 2>/dev/null
  fi
  if [ "$stack_up" = 1 ]; then
    step "tear down (compose down -v)"
    [ "$failed" -gt 0 ] && show_stack
    compose --profile client down -v --remove-orphans --timeout 30 >"$work/down.log" 2>&1 ||
      { cat "$work/down.log"; bad "compose down"; }
    stack_up=0
  fi
  if [ -n "$dockerd_stop" ]; then
    step "stop the Docker daemon this test started"
    stop_dockerd
  fi
  step_end
  echo
  echo "== docker test stage: step times"
  printf '%s\n' "${timings[@]}"
  [ $rc -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
  if [ "$failed" -eq 0 ] && [ "${FERRY_TEST_KEEP:-0}" != 1 ]; then
    rm -rf "$work"
  else
    echo "logs kept in $work"
  fi
  echo "docker: $passed passed, $failed failed"
  exit $((failed > 0))
}
trap finish EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
step "packages (docker.io, docker-compose)"
dockerd_was_running=0
pgrep -x dockerd >/dev/null 2>&1 && dockerd_was_running=1
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
  log "installing docker.io and docker-compose (log: $work/apt.log)"
  if ! NEEDRESTART_SUSPEND=1 scripts/install-deps.sh docker.io docker-compose >"$work/apt.log" 2>&1; then
    tail -n 30 "$work/apt.log"
    bad "install docker.io docker-compose"
    exit 1
  fi
fi
if [ -z "${FERRY_COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then FERRY_COMPOSE="docker compose"; else FERRY_COMPOSE=docker-compose; fi
fi
log "$(docker --version), compose: $FERRY_COMPOSE ($($FERRY_COMPOSE version --short 2>/dev/null || echo '?'))"

# ---------------------------------------------------------------------------
step "host client ($bin/ferry)"
if [ ! -x "$bin/ferry" ]; then
  log "no $bin/ferry: building the client into build-docker-client"
  if ! NEEDRESTART_SUSPEND=1 scripts/install-deps.sh build-essential cmake pkg-config \
    libzmq3-dev liblua5.4-dev libprotobuf-c-dev protobuf-c-compiler libcmocka-dev uthash-dev \
    >"$work/client-build.log" 2>&1 ||
    ! cmake -S . -B build-docker-client >>"$work/client-build.log" 2>&1 ||
    ! cmake --build build-docker-client -j"$(nproc)" --target ferry >>"$work/client-build.log" 2>&1
  then
    tail -n 30 "$work/client-build.log"
    bad "build the host client"
    exit 1
  fi
  bin=build-docker-client/bin
fi
bin=$(cd "$bin" && pwd)
"$bin/ferry" --version

# ---------------------------------------------------------------------------
step "Docker daemon"
if docker info >/dev/null 2>&1; then
  log "dockerd is running already"
  if [ "$dockerd_was_running" = 0 ] && command -v systemctl >/dev/null &&
    systemctl is-active --quiet docker.service 2>/dev/null; then
    # The package's install started it (systemd): leave the machine as found.
    dockerd_stop=systemd
  fi
else
  log "starting dockerd (log: $work/dockerd.log)"
  dockerd >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  dockerd_stop=ours
  if ! wait_for 60 "docker info answers" docker info; then
    tail -n 30 "$work/dockerd.log"
    bad "start dockerd"
    exit 1
  fi
fi
docker version --format 'server: Docker {{.Server.Version}}' 2>/dev/null

# ---------------------------------------------------------------------------
step "base images (debian:bookworm, debian:bookworm-slim)"
docker/base-images.sh || { bad "base images"; exit 1; }

# ---------------------------------------------------------------------------
step "the .deb (cpack -G DEB) in a clean debian:bookworm-slim"
# The package of the host's build folder (BIN_DIR/..: make deb's), installed
# with apt-get into a bare container, runs a script through its binaries.
build_dir=$(cd "$bin/.." && pwd)
mkdir -p "$work/deb"
if [ ! -f "$build_dir/CPackConfig.cmake" ]; then
  bad "no $build_dir/CPackConfig.cmake: BIN_DIR is not in a CMake build folder of this tree"
elif ! (cd "$work/deb" && cpack --config "$build_dir/CPackConfig.cmake" -G DEB) \
  >"$work/cpack.log" 2>&1 || ! ls "$work/deb"/ferry_*.deb >/dev/null 2>&1; then
  tail -n 30 "$work/cpack.log"
  bad "cpack -G DEB"
else
  deb=$(ls "$work/deb"/ferry_*.deb)
  ok "cpack -G DEB: $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"
  dpkg-deb -f "$deb" Depends | sed 's/^/  Depends: /'
  dpkg-deb -c "$deb" >"$work/deb-contents.txt"
  missing=""
  for f in ./usr/bin/ferry-broker ./usr/bin/ferry-engine ./usr/bin/ferry-worker ./usr/bin/ferry \
    ./usr/include/ferry/client.h ./usr/include/ferry/worker.h ./usr/include/ferry/value.h \
    ./usr/include/ferry/timer.h ./usr/share/man/man1/ferry.1.gz \
    ./usr/share/man/man1/ferry-broker.1.gz ./usr/lib/pkgconfig/ferry.pc; do
    grep -q " $f\$" "$work/deb-contents.txt" || missing="$missing $f"
  done
  grep -q ' ./usr/lib/libferry.so.0 -> ' "$work/deb-contents.txt" || missing="$missing libferry.so.0"
  if [ -z "$missing" ]; then
    ok "the .deb holds the binaries, libferry.so.0, the headers, ferry.pc and the man pages"
  else
    bad "missing from the .deb:$missing"
  fi
  cp examples/hello.lua "$work/deb/"
  # --network host: apt-get reaches the mirror as on this machine; the
  # endpoints are ipc: sockets inside the container, no port can collide.
  if docker run --rm --network host -v "$work/deb:/deb:ro" debian:bookworm-slim sh -c '
      set -e
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq /deb/ferry_*.deb >/tmp/apt.log 2>&1 || { tail -n 20 /tmp/apt.log; exit 1; }
      ldconfig -p | grep -q "libferry.so.0 " && echo "libferry.so.0 in the ldconfig cache"
      ep=ipc:///tmp/ferry
      ferry-broker --clients $ep-c --commands $ep-m --engines $ep-e --workers $ep-w 2>/tmp/b.log &
      ferry-engine --commands $ep-m --engines $ep-e --slots 4 2>/tmp/e.log &
      ferry-worker --workers $ep-w 2>/tmp/w.log &
      i=0
      until ferry stats --broker $ep-c --timeout 1 2>/dev/null | grep -q "^workers  *1$"; do
        i=$((i + 1)); [ $i -lt 50 ] || { echo "no worker registered"; cat /tmp/b.log; exit 1; }
        sleep 0.2
      done
      ferry run --broker $ep-c --timeout 30 /deb/hello.lua Ferry
      for p in ferry ferry-broker ferry-engine ferry-worker; do command -v $p; done
    ' >"$work/deb-run.log" 2>&1 && grep -q '^hello, Ferry$' "$work/deb-run.log" &&
    grep -q '^/usr/bin/ferry-worker$' "$work/deb-run.log"; then
    ok "apt-get install ./ferry_*.deb in debian:bookworm-slim; /usr/bin's binaries ran hello.lua"
  else
    sed 's/^/    /' "$work/deb-run.log"
    bad "the .deb in debian:bookworm-slim (log: $work/deb-run.log)"
  fi
fi

# ---------------------------------------------------------------------------
step "build the image $image"
old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
# --network host: apt inside the build uses this machine's network as is.
if docker build --network host -t "$image" . >"$work/build.log" 2>&1; then
  ok "docker build ($(grep -c ' ---> Using cache' "$work/build.log") cached layers)"
else
  tail -n 40 "$work/build.log"
  bad "docker build (log: $work/build.log)"
  exit 1
fi
new_id=$(docker image inspect -f '{{.Id}}' "$image")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true # the previous run's image, now untagged
fi
docker image ls "$image" --format 'image {{.Repository}}:{{.Tag}} {{.Size}}'
docker run --rm "$image" sh -c 'id -un; ferry-broker --version; ferry-engine --version;
  ferry-worker --version; ferry --version; ls /examples' >"$work/image.txt" 2>&1
if [ "$(head -n 1 "$work/image.txt")" = ferry ] && grep -q '^ferry-worker ' "$work/image.txt" &&
  grep -q '^hello.lua$' "$work/image.txt"; then
  ok "the image runs as user ferry and holds the four binaries and /examples"
else
  cat "$work/image.txt"
  bad "image contents"
fi

# ---------------------------------------------------------------------------
step "stack up ($FERRY_COMPOSE -p $project up -d)"
export FERRY_IMAGE=$image FERRY_PORT FERRY_METRICS_PORT
FERRY_PORT=$(free_port)
# The broker's metrics port is published too (127.0.0.1 only): a free one, not the default.
FERRY_METRICS_PORT=$(free_port)
while [ "$FERRY_METRICS_PORT" = "$FERRY_PORT" ]; do FERRY_METRICS_PORT=$(free_port); done
broker=tcp://127.0.0.1:$FERRY_PORT
stack_up=1
if compose up -d --no-build >"$work/up.log" 2>&1; then
  ok "compose up (broker's client port published on 127.0.0.1:$FERRY_PORT)"
else
  cat "$work/up.log"
  bad "compose up"
  exit 1
fi
# The host's client key, in one step (docs/docker.md): every host `ferry` below uses it.
mkdir -p "$work/keys"
if compose run --rm -T keys ferry-keys export 2>"$work/keys.err" | tar -x -C "$work/keys"; then
  export FERRY_CURVE_KEY=$work/keys/client_secret FERRY_BROKER_KEY=$work/keys/broker
  ok "the host's client key (compose run --rm -T keys ferry-keys export | tar -x)"
else
  cat "$work/keys.err"
  bad "ferry-keys export"
  exit 1
fi
if wait_for 60 "broker sees 1 engine and 1 worker (ferry stats from the host)" has_counts 1 1; then
  ok "stack ready"
else
  bad "stack ready"
  exit 1
fi
if wait_for 60 "all three containers healthy" \
  sh -c "[ \$(docker ps --filter label=com.docker.compose.project=$project \
                        --filter health=healthy -q | wc -l) -eq 3 ]"; then
  ok "healthchecks pass (broker, engine, worker)"
else
  docker ps --filter "label=com.docker.compose.project=$project"
  bad "healthchecks"
fi

# ---------------------------------------------------------------------------
step "scripts from the host (ferry run --broker $broker)"
for script in examples/*.lua; do
  name=$(basename "$script")
  args=()
  [ "$name" = hello.lua ] && args=(Ferry)
  if "$bin/ferry" run --broker "$broker" --timeout 30 "$script" "${args[@]}" >"$work/host-$name.out" 2>&1; then
    ok "host: ferry run $script"
  else
    sed 's/^/    /' "$work/host-$name.out"
    bad "host: ferry run $script"
  fi
done
if grep -q '^hello, Ferry$' "$work/host-hello.lua.out"; then
  ok "host: hello.lua answered 'hello, Ferry'"
else
  bad "host: hello.lua answer"
fi

# ---------------------------------------------------------------------------
step "clients without a listed key are refused"
t0=$(now)
env -u FERRY_CURVE_KEY -u FERRY_BROKER_KEY "$bin/ferry" run --broker "$broker" --timeout 30 \
  examples/hello.lua Ferry >"$work/keyless.out" 2>&1
rc=$?
if [ $rc -eq 3 ] && grep -q 'not authorized by the broker' "$work/keyless.out"; then
  ok "keyless ferry run: exit 3 after $(secs "$t0" "$(now)")s: $(tail -n 1 "$work/keyless.out")"
else
  cat "$work/keyless.out"
  bad "keyless ferry run (exit $rc, want 3 and 'not authorized')"
fi
"$bin/ferry" keygen "$work/stranger" >/dev/null
"$bin/ferry" run --broker "$broker" --curve-key "$work/stranger_secret" --timeout 30 \
  examples/hello.lua Ferry >"$work/stranger.out" 2>&1
rc=$?
if [ $rc -eq 3 ] && grep -q 'not authorized by the broker' "$work/stranger.out"; then
  ok "ferry run with a key on no allow-list: exit 3"
else
  cat "$work/stranger.out"
  bad "ferry run with an unlisted key (exit $rc, want 3)"
fi

# ---------------------------------------------------------------------------
step "scripts through the client service (compose run --rm client)"
out=$(compose run --rm -T client ferry run /examples/hello.lua Ferry 2>"$work/client-run.err")
rc=$?
if [ $rc -eq 0 ] && grep -q '^hello, Ferry$' <<<"$out"; then
  ok "client service: ferry run /examples/hello.lua Ferry"
else
  echo "$out"
  cat "$work/client-run.err"
  bad "client service: ferry run /examples/hello.lua (exit $rc)"
fi
# The compose file's folder is mounted at /work: scripts of the tree by relative path.
# As the checkout's owner: the image's user may not read a checkout that is not
# world-readable (a fresh clone into mktemp -d is 0700), as docs/docker.md says.
out=$(compose run --rm -T --user "$(id -u):$(id -g)" client \
  ferry run --json docker/load.lua 3 10 2>"$work/client-run.err")
rc=$?
if [ $rc -eq 0 ] && grep -q '"values": \[3, "load"\]' <<<"$out"; then
  ok "client service: ferry run docker/load.lua (a file of the tree, through the /work mount)"
else
  echo "$out"
  cat "$work/client-run.err"
  bad "client service: ferry run docker/load.lua (exit $rc)"
fi

# ---------------------------------------------------------------------------
step "scale workers 1 -> 4 -> 1 and engines 1 -> 2 -> 1 while scripts run"
mkdir -p "$work/load"
# A load loop: runs docker/load.lua from the host again and again until the
# stop file appears; keeps every result.
load_loop() {
  local i=$1 k=0
  while [ ! -e "$work/load/stop" ]; do
    k=$((k + 1))
    "$bin/ferry" run --json --timeout 60 --broker "$broker" docker/load.lua 10 200 \
      >"$work/load/$i-$k.json" 2>"$work/load/$i-$k.err"
    echo $? >"$work/load/$i-$k.rc"
  done
}
results() { find "$work/load" -name '*.rc' | wc -l; }
# more_results N: N more scripts than the count saved in $mark finished.
more_results() { [ "$(results)" -ge $((mark + $1)) ]; }
loop_pids=()
for i in $(seq $load_loops); do
  load_loop "$i" &
  loop_pids+=($!)
done
log "$load_loops load loops running docker/load.lua (10 sleeps of 200 ms and an echo each)"
mark=0
wait_for 60 "$load_loops scripts finished with 1 worker" more_results $load_loops ||
  bad "load with 1 worker"

t0=$(now)
if compose up -d --no-build --no-recreate --scale worker=4 --scale engine=2 \
  >"$work/scale-up.log" 2>&1; then
  ok "compose up --scale worker=4 --scale engine=2 ($(secs "$t0" "$(now)")s)"
else
  cat "$work/scale-up.log"
  bad "compose up --scale worker=4 --scale engine=2"
fi
if wait_for 60 "broker sees 2 engines and 4 workers" has_counts 2 4; then
  ok "new engine and workers registered $(secs "$t0" "$(now)")s after the scale command"
else
  bad "scale up registration"
fi
# One worker holds at most $concurrency calls: more in flight means the new
# workers take calls.
max_in_flight=0
busy() {
  local s n
  s=$(stats_json) || return 1
  n=$(stat_of in_flight "$s")
  [ "${n:-0}" -gt "$max_in_flight" ] && max_in_flight=$n
  [ "${n:-0}" -gt "$concurrency" ]
}
if wait_for 30 "more calls in flight than one worker takes" busy; then
  ok "new workers take calls: $max_in_flight calls in flight > $concurrency that one worker takes ($(secs "$t0" "$(now)")s after scaling)"
else
  bad "new workers take calls (at most $max_in_flight in flight)"
fi
mark=$(results)
wait_for 60 "$load_loops more scripts finished with 4 workers" more_results $load_loops ||
  bad "load with 4 workers"

# More calls in flight than the remaining worker takes: the workers about to
# be stopped hold calls, and the engine about to be stopped runs scripts,
# which draining must not lose.
s=$(stats_json)
log "scaling down with $(stat_of in_flight "$s") calls in flight (the worker that stays takes $concurrency)"
t0=$(now)
if compose up -d --no-build --no-recreate --scale worker=1 --scale engine=1 \
  >"$work/scale-down.log" 2>&1; then
  ok "compose up --scale worker=1 --scale engine=1 ($(secs "$t0" "$(now)")s: 3 workers and 1 engine stopped)"
else
  cat "$work/scale-down.log"
  bad "compose up --scale worker=1"
fi
if wait_for 30 "broker sees 1 engine and 1 worker" has_counts 1 1; then
  ok "the stopped workers and engine left the broker"
else
  bad "scale down: broker still counts the stopped workers"
fi
mark=$(results)
wait_for 60 "$load_loops more scripts finished with 1 worker again" more_results $load_loops ||
  bad "load after scaling down"

touch "$work/load/stop"
for p in "${loop_pids[@]}"; do wait "$p"; done
total=$(results)
good=0
nbad=0
for rc in "$work"/load/*.rc; do
  base=${rc%.rc}
  if [ "$(cat "$rc")" = 0 ] && grep -q '"ok": true, "values": \[10, "load"\]' "$base.json"; then
    good=$((good + 1))
  else
    nbad=$((nbad + 1))
    [ $nbad -le 5 ] &&
      echo "    $(basename "$base"): exit $(cat "$rc"): $(head -c 300 "$base.json")"
  fi
done
loop_pids=()
if [ "$total" -gt 0 ] && [ "$good" -eq "$total" ]; then
  ok "all $total scripts run during the scaling succeeded"
else
  bad "$((total - good)) of $total scripts run during the scaling failed"
fi

# ---------------------------------------------------------------------------
step "clean stop on SIGTERM (compose stop)"
ids=$(compose ps -q)
t0=$(now)
compose stop >"$work/stop.log" 2>&1 || cat "$work/stop.log"
log "stopped in $(secs "$t0" "$(now)")s"
# shellcheck disable=SC2086 # one argument per container id
codes=$(docker inspect -f '{{.Name}} {{.State.ExitCode}}' $ids 2>&1)
mapfile -t lines <<<"$codes"
printf '    %s\n' "${lines[@]}"
if [ -n "$ids" ] && ! awk '$2 != 0 { bad = 1 } END { exit !bad }' <<<"$codes"; then
  ok "every container exited 0 on SIGTERM"
else
  bad "a container did not exit 0 on SIGTERM (137 = killed after the grace period)"
fi

step "Docker Swarm: two brokers, docker-stack.yml (docker/swarm-test.sh)"
if FERRY_IMAGE=$image docker/swarm-test.sh "$bin" >"$work/swarm.log" 2>&1; then
  ok "swarm: $(tail -n 1 "$work/swarm.log")"
else
  bad "swarm: $(grep FAIL "$work/swarm.log" | head -3 | tr '\n' ' ')"
  sed 's/^/    /' "$work/swarm.log"
fi

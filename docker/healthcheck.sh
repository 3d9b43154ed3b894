#!/bin/sh
# ferry-healthcheck: the Docker healthcheck of the Ferry image (installed as
# /usr/local/bin/ferry-healthcheck; see docker-compose.yml).
#
#   ferry-healthcheck broker   the broker answers a stats request on its
#                              clients port (FERRY_CLIENTS, default 5558),
#                              as the stack's client key when it has keys
#   ferry-healthcheck engine   the engine holds established TCP connections to
#                              the broker's commands and engines ports
#                              (FERRY_COMMANDS, FERRY_ENGINES)
#   ferry-healthcheck worker   the worker holds an established TCP connection
#                              to the broker's workers port (FERRY_WORKERS)
#
# An engine or worker whose broker is gone (or not resolvable yet) has no such
# connection, so it shows as unhealthy until libzmq has reconnected.
# Exit status 0 healthy, 1 not.
set -eu

# The port of an endpoint such as tcp://broker:5557 or tcp://*:5558.
port_of() {
  p=${1##*:}
  case $p in '' | *[!0-9]*) echo "ferry-healthcheck: no port in '$1'" >&2; exit 1 ;; esac
  echo "$p"
}

# True when this network namespace has an ESTABLISHED (state 01) TCP
# connection whose remote port is $1.
connected() {
  hex=$(printf '%04X' "$1")
  files=
  for f in /proc/net/tcp /proc/net/tcp6; do [ -r "$f" ] && files="$files $f"; done
  # shellcheck disable=SC2086 # word splitting wanted
  awk -v p=":$hex" 'FNR > 1 && $4 == "01" && substr($3, length($3) - 4) == p { ok = 1 }
                    END { exit !ok }' $files
}

case ${1:-} in
broker)
  port=$(port_of "${FERRY_CLIENTS:-tcp://*:5558}")
  if [ -n "${FERRY_CURVE_KEY:-}" ]; then
    # A keyed broker answers a listed client: the stack's own, beside its key.
    keys=$(dirname "$FERRY_CURVE_KEY")
    exec env -u FERRY_CURVE_KEY ferry stats --timeout 2 --broker "tcp://127.0.0.1:$port" \
      --curve-key "$keys/client_secret" --broker-key "$keys/broker" >/dev/null
  fi
  exec ferry stats --timeout 2 --broker "tcp://127.0.0.1:$port" >/dev/null
  ;;
engine)
  connected "$(port_of "${FERRY_COMMANDS:-tcp://localhost:5555}")" || {
    echo "not connected to the broker's commands port" >&2
    exit 1
  }
  connected "$(port_of "${FERRY_ENGINES:-tcp://localhost:5556}")" || {
    echo "not connected to the broker's engines port" >&2
    exit 1
  }
  ;;
worker)
  connected "$(port_of "${FERRY_WORKERS:-tcp://localhost:5557}")" || {
    echo "not connected to the broker's workers port" >&2
    exit 1
  }
  ;;
*)
  echo "usage: ferry-healthcheck broker|engine|worker" >&2
  exit 2
  ;;
esac

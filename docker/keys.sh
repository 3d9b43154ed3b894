#!/bin/sh
# ferry-keys: the CURVE keys of a Compose stack, kept in its keys volume
# (/keys; installed in the image as /usr/local/bin/ferry-keys). See
# docs/docker.md, "Keys".
#
#   ferry-keys init                makes what is missing: key pairs broker,
#                                  engine, worker, client and the broker's
#                                  allow-lists allow-clients, allow-engines,
#                                  allow-workers (the one-shot `keys` service)
#   ferry-keys export              a tar of client_secret and broker on stdout:
#                                  what a client on the host needs
#   ferry-keys add-client NAME     a new client key pair, on allow-clients; its
#                                  NAME_secret and broker as a tar on stdout
#   ferry-keys allow-client NAME   puts the public certificate read on stdin
#                                  on allow-clients as NAME (a key made
#                                  elsewhere with ferry keygen or zmakecert)
#   ferry-keys revoke-client NAME  takes NAME off allow-clients
#
# The broker reads its allow-lists again on SIGHUP:
# `docker compose kill -s HUP broker` after add, allow or revoke.
set -eu
keys=${FERRY_KEYS:-/keys}

name_ok() {
  case ${1:-} in
  '' | *[!A-Za-z0-9._-]* | .*) echo "ferry-keys: bad name '${1:-}' (letters, digits, . _ -)" >&2; exit 2 ;;
  esac
}

# pair NAME: makes $keys/NAME and NAME_secret unless they are there.
pair() { [ -f "$keys/$1_secret" ] || ferry keygen "$keys/$1" >/dev/null; }

# allow ROLE NAME FILE: lists the public certificate FILE for ROLE as NAME.
allow() {
  mkdir -p "$keys/allow-$1"
  [ -f "$keys/allow-$1/$2" ] || cp "$3" "$keys/allow-$1/$2"
}

case ${1:-} in
init)
  umask 077
  for role in broker engine worker client; do pair "$role"; done
  allow clients client "$keys/client"
  allow engines engine "$keys/engine"
  allow workers worker "$keys/worker"
  chmod 0755 "$keys" "$keys"/allow-*
  chmod 0644 "$keys"/broker "$keys"/engine "$keys"/worker "$keys"/client "$keys"/allow-*/*
  echo "ferry-keys: broker key $(sed -n 's/.*public-key = "\(.*\)"/\1/p' "$keys/broker")" >&2
  ;;
export)
  tar -C "$keys" -cf - client_secret broker
  ;;
add-client)
  name_ok "${2:-}"
  mkdir -p "$keys/clients"
  [ ! -e "$keys/clients/$2_secret" ] || { echo "ferry-keys: client $2 exists" >&2; exit 1; }
  ferry keygen "$keys/clients/$2" >/dev/null
  allow clients "$2" "$keys/clients/$2"
  cp "$keys/broker" "$keys/clients/broker"
  tar -C "$keys/clients" -cf - "$2_secret" broker
  rm -f "$keys/clients/$2_secret" "$keys/clients/broker" # only the client keeps its secret
  ;;
allow-client)
  name_ok "${2:-}"
  mkdir -p "$keys/allow-clients"
  cat >"$keys/allow-clients/.$2.tmp"
  grep -q 'public-key' "$keys/allow-clients/.$2.tmp" || {
    rm -f "$keys/allow-clients/.$2.tmp"
    echo "ferry-keys: stdin is not a public certificate" >&2
    exit 1
  }
  mv "$keys/allow-clients/.$2.tmp" "$keys/allow-clients/$2"
  ;;
revoke-client)
  name_ok "${2:-}"
  rm -f "$keys/allow-clients/$2"
  ;;
*)
  echo "usage: ferry-keys init | export | add-client NAME | allow-client NAME | revoke-client NAME" >&2
  exit 2
  ;;
esac

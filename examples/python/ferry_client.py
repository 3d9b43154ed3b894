#!/usr/bin/env python3
"""ferry_client.py: run a Lua script on a Ferry stack from Python.

  python3 ferry_client.py [--broker EP] [--timeout S] [--json] script.lua [arg ...]
  python3 ferry_client.py [--broker EP] --stats

Prints what the script printed, then its return values, one line, tab
separated (strings as they are, anything else as JSON), as `ferry run` does.
Exit status: 0 success, 1 the script failed, 2 bad usage, 3 the broker
cannot be reached or the timeout passed.

It speaks docs/protocol.md with pyzmq and the protobuf runtime only: a DEALER
to the broker's clients socket, one Submit, one Result.
"""
import argparse
import json
import os
import sys
import time

import zmq

from ferry_proto import add_key_options, decode, envelope, pb, to_json_ready, to_python, to_value, use_keys

GRACE_S = 3.0  # past the script's own deadline, for the broker to answer


def show(x):
    x = to_python(x)
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else json.dumps(to_json_ready(x))


def wait_for(sock, body, request_id, timeout_s):
    """The first message with that body and request_id within timeout_s, or None."""
    until = time.monotonic() + timeout_s
    while True:
        left = until - time.monotonic()
        if left <= 0 or not sock.poll(int(left * 1000) + 1):
            return None
        env = decode(sock.recv())
        if env and env.WhichOneof("body") == body and getattr(env, body).request_id == request_id:
            return getattr(env, body)


def main():
    parser = argparse.ArgumentParser(description="Runs a Lua script on a Ferry stack.")
    parser.add_argument("--broker", default=os.environ.get("FERRY_CLIENTS", "tcp://localhost:5558"),
                        help="broker clients endpoint (FERRY_CLIENTS)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="script deadline in seconds (default 30)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--stats", action="store_true", help="print the broker's counters")
    add_key_options(parser)
    parser.add_argument("script", nargs="?")
    parser.add_argument("args", nargs="*")
    opts = parser.parse_args()
    if not opts.stats and not opts.script:
        parser.error("a script is needed (or --stats)")

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    use_keys(sock, opts.curve_key, opts.broker_key)
    sock.connect(opts.broker)
    try:
        if opts.stats:
            sock.send(envelope(stats_request=pb.StatsRequest(request_id=1)).SerializeToString())
            stats = wait_for(sock, "stats", 1, opts.timeout)
            if stats is None:
                print("ferry_client: no stats from %s" % opts.broker, file=sys.stderr)
                return 3
            from google.protobuf.json_format import MessageToJson
            print(MessageToJson(stats))
            return 0

        with open(opts.script, "rb") as f:
            source = f.read()
        submit = pb.Submit(request_id=1, source=source, name=os.path.basename(opts.script),
                           timeout_ms=int(opts.timeout * 1000))
        for a in opts.args:
            submit.args.add().CopyFrom(to_value(a))
        # Queued until the connection is up (no ZMQ_IMMEDIATE here); the wait bounds it.
        sock.send(envelope(submit=submit).SerializeToString())
        result = wait_for(sock, "result", 1, opts.timeout + GRACE_S)
        if result is None:
            print("ferry_client: timeout: no result from %s within %.1f s"
                  % (opts.broker, opts.timeout + GRACE_S), file=sys.stderr)
            return 3
        error = result.error if result.HasField("error") else None
        if opts.json:
            print(json.dumps({
                "ok": result.ok,
                "values": [to_json_ready(to_python(v)) for v in result.values],
                "output": result.output.decode("utf-8", "replace"),
                "error": {"code": error.code, "message": error.message} if error else None,
            }))
        else:
            sys.stdout.write(result.output.decode("utf-8", "replace"))
            if result.ok and result.values:
                print("\t".join(show(v) for v in result.values))
        if not result.ok:
            print("ferry_client: %s: %s" % (error.code if error else "script_error",
                                            error.message if error else ""), file=sys.stderr)
            return 1
        return 0
    finally:
        sock.close()
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())

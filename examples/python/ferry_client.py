#!/usr/bin/env python3
"""ferry_client.py: run a Lua script on a Ferry stack from Python (`ferry run` in Python).

  python3 ferry_client.py [--broker EP] [--timeout S] [--json] script.lua [arg ...]
  python3 ferry_client.py [--broker EP] --stats

Prints what the script printed, then its return values, one line, tab
separated (strings as they are, anything else as JSON). Exit status: 0
success, 1 the script failed, 2 bad usage, 3 the broker cannot be reached,
refused our key, went away, or the timeout passed.

The client is the ferry package's (python/, `pip install ./python`).
"""
import argparse
import json
import math
import os
import sys

try:  # the package of this source tree first, else an installed one
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "python"))
    import ferry
finally:
    sys.path.pop(0)


def json_ready(x):
    """x with bytes decoded (invalid UTF-8 replaced) and dict keys as text, for json.dumps."""
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    if isinstance(x, list):
        return [json_ready(i) for i in x]
    if isinstance(x, dict):
        return {str(json_ready(k)): json_ready(i) for k, i in x.items()}
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def show(x):
    if isinstance(x, (str, bytes)):
        return x if isinstance(x, str) else x.decode("utf-8", "replace")
    return json.dumps(json_ready(x))


def main():
    p = argparse.ArgumentParser(description="Runs a Lua script on a Ferry stack.")
    p.add_argument("--broker", default=os.environ.get("FERRY_CLIENTS", "tcp://localhost:5558"),
                   help="broker clients endpoint (FERRY_CLIENTS)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="script deadline in seconds (default 30)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--stats", action="store_true", help="print the broker's counters")
    p.add_argument("--curve-key", default=None,
                   help="this client's secret certificate (ferry keygen) (FERRY_CURVE_KEY)")
    p.add_argument("--broker-key", default=None,
                   help="the broker's public certificate (FERRY_BROKER_KEY)")
    p.add_argument("script", nargs="?")
    p.add_argument("args", nargs="*")
    opts = p.parse_args()
    if not opts.stats and not opts.script:
        p.error("a script is needed (or --stats)")
    try:
        client = ferry.Client(opts.broker, opts.curve_key, opts.broker_key)
    except ferry.FerryError as e:
        p.error(e.message)
    with client:
        try:
            if opts.stats:
                from google.protobuf.json_format import MessageToJson
                print(MessageToJson(client.stats(timeout=opts.timeout)))
                return 0
            with open(opts.script, "rb") as f:
                source = f.read()
            result = client.submit(source, *opts.args, timeout=opts.timeout,
                                   name=os.path.basename(opts.script)).result()
            ok, error = True, None
        except ferry.ScriptError as e:
            result, ok, error = e.result, False, e
        except ferry.FerryError as e:
            print("ferry_client: %s" % e, file=sys.stderr)
            return 3
    if opts.json:
        print(json.dumps({
            "ok": ok,
            "values": [json_ready(v) for v in result.values],
            "output": result.output.decode("utf-8", "replace"),
            "error": {"code": error.code, "message": error.message} if error else None,
        }))
    else:
        sys.stdout.write(result.output.decode("utf-8", "replace"))
        if ok and result.values:
            print("\t".join(show(v) for v in result.values))
    if not ok:
        print("ferry_client: %s" % error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

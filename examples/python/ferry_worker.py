#!/usr/bin/env python3
"""ferry_worker.py: a Ferry worker in Python, serving functions to Lua scripts.

  python3 ferry_worker.py [--workers EP] [--credit N] [--drain-timeout S]
                          [--curve-key FILE --broker-key FILE]

  py.upper(s)        s in upper case (binary-safe: bytes stay bytes)
  py.add(a, b)       a + b: integers stay integers
  py.after(ms, v)    v, after ms milliseconds, without holding up other calls (asyncio)

All the protocol work (Ready, credit, heartbeats, deadlines, draining on
SIGTERM) is the ferry package's (python/, `pip install ./python`); this
file is only the functions.
"""
import argparse
import asyncio
import logging
import os
import sys

try:  # the package of this source tree first, else an installed one
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "python"))
    import ferry
finally:
    sys.path.pop(0)


def number(x, i, fn):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ferry.CallError("bad_argument", "bad argument #%d to '%s' (number expected, got %s)"
                              % (i, fn, lua_type(x)))
    return x


def lua_type(x):
    return {type(None): "nil", bool: "boolean", int: "number", float: "number", str: "string",
            bytes: "string", list: "table", dict: "table"}.get(type(x), "value")


def serve(worker):
    @worker.function("py.upper", idempotent=True)
    def upper(s):
        if not isinstance(s, (str, bytes)):
            raise ferry.CallError("bad_argument", "bad argument #1 to 'py.upper' "
                                  "(string expected, got %s)" % lua_type(s))
        return s.upper()

    @worker.function("py.add", idempotent=True)
    def add(a, b):
        total = number(a, 1, "py.add") + number(b, 2, "py.add")
        if isinstance(total, int) and not -2 ** 63 <= total < 2 ** 63:
            total = float(total)  # Lua integers wrap; a float keeps the magnitude
        return total

    @worker.function("py.after", idempotent=True)
    async def after(ms, value=None):
        if not 0 <= number(ms, 1, "py.after") <= 86400000:
            raise ferry.CallError("bad_argument", "bad argument #1 to 'py.after' "
                                  "(milliseconds from 0 to 86400000)")
        await asyncio.sleep(ms / 1000)  # past the call's deadline the worker answers timeout
        return value


def main():
    p = argparse.ArgumentParser(description="Serves py.upper, py.add and py.after to a "
                                            "Ferry broker.")
    p.add_argument("--workers", default=os.environ.get("FERRY_WORKERS", "tcp://localhost:5557"),
                   help="broker workers endpoint (FERRY_WORKERS)")
    p.add_argument("--credit", type=int, default=1000, help="calls in flight at once")
    p.add_argument("--drain-timeout", type=float, default=10.0,
                   help="seconds the calls in flight get after SIGTERM")
    p.add_argument("--curve-key", default=None,
                   help="this worker's secret certificate (ferry keygen) (FERRY_CURVE_KEY)")
    p.add_argument("--broker-key", default=None,
                   help="the broker's public certificate (FERRY_BROKER_KEY)")
    opts = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="pyworker %(message)s", stream=sys.stderr)
    try:
        worker = ferry.Worker(opts.workers, opts.curve_key, opts.broker_key, credit=opts.credit,
                              drain_timeout=opts.drain_timeout)
    except ferry.FerryError as e:
        p.error(e.message)
    serve(worker)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

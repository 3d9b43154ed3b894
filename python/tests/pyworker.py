"""The Python worker the tests start: ferry.Worker serving t.* functions.

  pyworker.py --workers EP --dir DIR [--label L] [--hang] [--credit N]
              [--drain-timeout S] [--curve-key F --broker-key F]

A call that should be seen running writes DIR/started-<name> first.
With --hang, t.maybe_hang (idempotent) never answers; without, it answers
"served by <label>". t.hang (not idempotent) never answers.
"""
import argparse
import asyncio
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ferry  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--workers", required=True)
p.add_argument("--dir", required=True)
p.add_argument("--label", default="py")
p.add_argument("--hang", action="store_true")
p.add_argument("--credit", type=int, default=64)
p.add_argument("--drain-timeout", type=float, default=10.0)
p.add_argument("--curve-key")
p.add_argument("--broker-key")
opts = p.parse_args()
logging.basicConfig(level=logging.INFO, format="pyworker %(message)s")

w = ferry.Worker(opts.workers, opts.curve_key, opts.broker_key, credit=opts.credit,
                 drain_timeout=opts.drain_timeout, id_prefix="pyworker-" + opts.label)


def started(name):
    with open(os.path.join(opts.dir, "started-%s" % name), "w") as f:
        f.write(opts.label)


@w.function("t.echo", idempotent=True)
def echo(*args):
    return args


@w.function("t.aecho", idempotent=True)
async def aecho(*args):
    await asyncio.sleep(0)
    return args


@w.function("t.sleep", idempotent=True)
async def asleep(ms, value=None):
    await asyncio.sleep(ms / 1000)
    return value


@w.function("t.ssleep", idempotent=True)
def ssleep(ms, value=None):
    time.sleep(ms / 1000)
    return value


@w.function("t.add")
def add(a, b):
    return a + b


@w.function("t.fail")
def fail(code, message):
    raise ferry.CallError(code, message)


@w.function("t.surrogate")
def surrogate():
    raise ferry.CallError("odd\udcff", "a message with a lone surrogate \udcff")


@w.function("t.boom")
def boom():
    raise ValueError("boom")


@w.function("t.unsendable")
def unsendable():
    return object()


@w.function("t.deadline")
async def deadline():
    call = ferry.current_call()
    return call.function, call.timeout_ms, call.time_left() is not None


@w.function("t.hang")
async def hang(name):
    started(name)
    await asyncio.Event().wait()


@w.function("t.maybe_hang", idempotent=True)
async def maybe_hang(name):
    if opts.hang:
        started(name)
        await asyncio.Event().wait()
    return "served by " + opts.label


@w.function("t.slow", idempotent=True)
async def slow(name, ms):
    started(name)
    await asyncio.sleep(ms / 1000)
    return "slow done by " + opts.label


w.run()

"""Calls per second through a Python worker (plain and asyncio functions) and through
ferry-worker beside it, and the client's round trip, on a real stack:

  cd python && FERRY_BIN_DIR=../build/bin python3 tests/bench_calls.py

Not a test (pytest collects test_*.py only): numbers, not pass or fail.
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conftest  # noqa: E402  (the Stack of the tests)

SCRIPT = "local n = 0 for i = 1, 10 do n = n + #ferry.call(ferry.args[1], 'x') end return n"


def main():
    d = tempfile.mkdtemp(prefix="ferry-pb-")
    s = conftest.Stack(d)
    try:
        s.broker()
        s.engine("--slots", "1000")
        s.pyworker("--credit", "1000")
        s.cworker()
        c = s.wait_ready(1, 2)
        for fn in ("t.echo", "t.aecho", "echo"):
            for _ in range(2):
                scripts = 500
                t0 = time.monotonic()
                ps = [c.submit(SCRIPT, fn, timeout=60) for _ in range(scripts)]
                for p in c.results(ps):
                    assert p.result().value == 10
                dt = time.monotonic() - t0
                print("%-8s %d calls (%d scripts of 10 calls in a row, all in flight): "
                      "%.2f s, %.0f calls/s" % (fn, scripts * 10, scripts, dt, scripts * 10 / dt))
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 2:
            c.run("return 1", timeout=5)
            n += 1
        print("client run('return 1'), one at a time: %.2f ms" % (2000 / n))
    finally:
        bad = s.close()
        shutil.rmtree(d, ignore_errors=True)
        if bad:
            print("after SIGTERM:", bad)


if __name__ == "__main__":
    main()

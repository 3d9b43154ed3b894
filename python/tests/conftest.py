"""The stack the tests drive: real ferry-broker, ferry-engine, ferry-worker processes
and Python workers (tests/pyworker.py), on private ipc:// endpoints in a temporary
folder, as tests/integration/harness.c does for the C tests.

FERRY_BIN_DIR names the folder of the binaries (ctest sets it: <build>/bin).
Waiting is always for an event (a count in the broker's stats, a file, a
process exit) with a bound, never a fixed sleep.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
sys.path.insert(0, PACKAGE_ROOT)

import ferry  # noqa: E402  (the package of this source tree)

BIN_DIR = os.environ.get("FERRY_BIN_DIR") or os.path.join(PACKAGE_ROOT, "..", "build", "bin")
HEARTBEAT_MS = 200  # short, so that liveness tests take a second, not three


def wait_for(cond, timeout, what):
    """Polls cond() until it is true, for up to timeout seconds; fails the test otherwise."""
    until = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= until:
            pytest.fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(delay)  # a poll interval, not a wait for the event
        delay = min(delay * 2, 0.05)


class Stack:
    def __init__(self, tmp_path):
        self.dir = str(tmp_path)
        self.clients = "ipc://%s/clients" % self.dir
        self.commands = "ipc://%s/commands" % self.dir
        self.engines = "ipc://%s/engines" % self.dir
        self.workers = "ipc://%s/workers" % self.dir
        self.procs = []  # (name, Popen, log path)
        self.keys = None
        self._clients = []

    # ---- keys ----

    def keygen(self, name):
        """ferry keygen <dir>/keys/<name>: the path of the public certificate."""
        os.makedirs(os.path.join(self.dir, "keys"), exist_ok=True)
        path = os.path.join(self.dir, "keys", name)
        subprocess.run([os.path.join(BIN_DIR, "ferry"), "keygen", path], check=True,
                       stdout=subprocess.DEVNULL)
        return path

    def use_keys(self):
        """Keys for broker, engine, worker, client, pyworker; allow-lists for the roles."""
        self.keys = {n: self.keygen(n) for n in ("broker", "engine", "worker", "client",
                                                  "pyworker")}
        for role, names in (("clients", ["client"]), ("engines", ["engine"]),
                            ("workers", ["worker", "pyworker"])):
            folder = os.path.join(self.dir, "allow-" + role)
            os.makedirs(folder)
            for n in names:
                with open(self.keys[n]) as src, open(os.path.join(folder, n), "w") as dst:
                    dst.write(src.read())

    def key_args(self, role):
        if not self.keys:
            return []
        if role == "broker":
            return ["--curve-key", self.keys["broker"] + "_secret"] + [
                "--allow-%s=%s/allow-%s" % (r, self.dir, r) for r in ("clients", "engines",
                                                                     "workers")]
        return ["--curve-key", self.keys[role] + "_secret", "--broker-key", self.keys["broker"]]

    # ---- processes ----

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        env.update(FERRY_LOG_LEVEL="info", FERRY_HEARTBEAT_MS=str(HEARTBEAT_MS),
                   PYTHONPATH=PACKAGE_ROOT, PYTHONUNBUFFERED="1")
        return env

    def spawn(self, name, argv):
        log = os.path.join(self.dir, "%s-%d.log" % (name, len(self.procs)))
        with open(log, "wb") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env())
        self.procs.append((name, p, log))
        return p

    def broker(self, *extra):
        return self.spawn("broker", [os.path.join(BIN_DIR, "ferry-broker"),
                                     "--clients", self.clients, "--commands", self.commands,
                                     "--engines", self.engines, "--workers", self.workers,
                                     "--heartbeat-ms", str(HEARTBEAT_MS)]
                          + self.key_args("broker") + list(extra))

    def engine(self, *extra):
        return self.spawn("engine", [os.path.join(BIN_DIR, "ferry-engine"),
                                     "--commands", self.commands, "--engines", self.engines,
                                     "--heartbeat-ms", str(HEARTBEAT_MS)]
                          + self.key_args("engine") + list(extra))

    def cworker(self, *extra):
        return self.spawn("ferry-worker", [os.path.join(BIN_DIR, "ferry-worker"),
                                           "--workers", self.workers,
                                           "--heartbeat-ms", str(HEARTBEAT_MS)]
                          + self.key_args("worker") + list(extra))

    def pyworker(self, *extra, keys=True):
        """tests/pyworker.py (the test's Python worker) with extra arguments."""
        return self.spawn("pyworker", [sys.executable, os.path.join(HERE, "pyworker.py"),
                                       "--workers", self.workers, "--dir", self.dir]
                          + (self.key_args("pyworker") if keys else []) + list(extra))

    def client(self, **kw):
        if self.keys and "curve_key" not in kw:
            kw.update(curve_key=self.keys["client"] + "_secret", broker_key=self.keys["broker"])
        c = ferry.Client(self.clients, **kw)
        self._clients.append(c)
        return c

    def wait_ready(self, engines, workers, function=None, timeout=10):
        """Until the broker counts at least engines and workers (and a worker serves
        function), asking its stats."""
        c = self.client()

        def ready():
            try:
                s = c.stats(timeout=1)
            except ferry.FerryError:
                return False
            serving = function is None or any(
                f.name == function and f.workers > 0 for f in s.functions)
            return s.engines >= engines and s.workers >= workers and serving
        wait_for(ready, timeout, "%d engines and %d workers" % (engines, workers))
        return c

    def started(self, name):
        """True once the pyworker wrote the file <dir>/started-<name> (a call began)."""
        return os.path.exists(os.path.join(self.dir, "started-" + name))

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        """Signals p and waits for its exit: its status."""
        if p.poll() is None:
            p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail("process %d did not exit within %d s of signal %d" % (p.pid, timeout, sig))

    def logs(self):
        out = []
        for name, p, log in self.procs:
            with open(log, "rb") as f:
                out.append("---- %s (pid %d, status %s) ----\n%s" % (
                    name, p.pid, p.poll(), f.read().decode("utf-8", "replace")[-6000:]))
        return "\n".join(out)

    def log_has(self, p, text):
        """True once process p's log holds text."""
        for _, q, log in self.procs:
            if q is p:
                with open(log, "rb") as f:
                    return text.encode() in f.read()
        return False

    def close(self):
        """SIGTERM to every process still running (brokers last); the names of those that
        did not then exit 0 within 10 s."""
        for c in self._clients:
            c.close()
        running = [(n, p) for n, p, _ in self.procs if p.poll() is None]
        bad = []
        for last in (False, True):
            group = [(n, p) for n, p in running if (n == "broker") == last]
            for _, p in group:
                p.send_signal(signal.SIGTERM)
            for n, p in group:
                try:
                    if p.wait(10) != 0:
                        bad.append("%s (pid %d) exited %d" % (n, p.pid, p.returncode))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    bad.append("%s (pid %d) did not exit" % (n, p.pid))
        return bad


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "_ferry_stack", None)
    if stack is not None and report.when == "call" and report.failed:
        report.sections.append(("ferry processes", stack.logs()))


@pytest.fixture
def stack(tmp_path_factory, request):
    # ipc:// paths are limited to about 100 bytes: a short folder of our own.
    import tempfile
    d = tempfile.mkdtemp(prefix="ferry-py-")
    s = Stack(d)
    request.node._ferry_stack = s
    yield s
    bad = s.close()
    logs = s.logs() if bad else ""
    import shutil
    shutil.rmtree(d, ignore_errors=True)
    if bad:
        pytest.fail("after SIGTERM: %s\n%s" % ("; ".join(bad), logs))

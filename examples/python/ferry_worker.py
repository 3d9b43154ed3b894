#!/usr/bin/env python3
"""ferry_worker.py: a Ferry worker in Python, serving functions to Lua scripts.

  python3 ferry_worker.py [--workers EP] [--credit N] [--heartbeat-ms MS]

  py.upper(s)        s in upper case (ASCII letters; binary-safe)
  py.add(a, b)       a + b: integers stay integers
  py.after(ms, v)    v, after ms milliseconds, without holding up other calls

It speaks docs/protocol.md with pyzmq and the protobuf runtime only: a DEALER
with its own routing id to the broker's workers socket; Ready with its
functions and credit; a Reply for every Command; a Heartbeat every interval
and a fresh Ready when the broker has been silent for liveness intervals;
Goodbye on SIGTERM or SIGINT, then the calls in flight finish (for up to
--drain-ms) and it exits 0.

One thread and one poll loop, as Ferry's own workers: calls that answer
later (py.after) wait in a timer heap, not in threads.
"""
import argparse
import heapq
import itertools
import os
import signal
import socket
import sys
import time

import zmq

from ferry_proto import add_key_options, decode, envelope, make_id, pb, to_python, to_value, use_keys


class CallError(Exception):
    """Raised by a function: becomes Reply.error{code, message}."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def bad_argument(i, fn, expected, got):
    kind = "no value" if got is _MISSING else {
        type(None): "nil", bool: "boolean", int: "integer", float: "float", bytes: "string",
        list: "table", dict: "table"}.get(type(got), "value")
    return CallError("bad_argument",
                     "bad argument #%d to '%s' (%s expected, got %s)" % (i, fn, expected, kind))


_MISSING = object()


def arg(args, i):
    return to_python(args[i]) if i < len(args) else _MISSING


# ---- the functions: each takes (worker, call) and returns values or None -----------
# (None means "answered later": the function keeps the call and answers it itself).

def py_upper(worker, call):
    s = arg(call.args, 0)
    if not isinstance(s, bytes):
        raise bad_argument(1, call.function, "string", s)
    return [s.upper()]


def py_add(worker, call):
    a, b = arg(call.args, 0), arg(call.args, 1)
    for i, x in ((1, a), (2, b)):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise bad_argument(i, call.function, "number", x)
    total = a + b
    if isinstance(total, int) and not -2 ** 63 <= total < 2 ** 63:
        total = float(total)  # Lua integers wrap; a float keeps the magnitude
    return [total]


def py_after(worker, call):
    ms, value = arg(call.args, 0), arg(call.args, 1)
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms <= 86400000:
        raise bad_argument(1, call.function, "milliseconds from 0 to 86400000", ms)
    worker.later(ms / 1000.0, call, [None if value is _MISSING else value])
    return None


FUNCTIONS = {
    # name: (function, idempotent)
    "py.upper": (py_upper, True),
    "py.add": (py_add, True),
    "py.after": (py_after, True),
}


class Worker:
    def __init__(self, endpoint, credit, heartbeat_ms, liveness, drain_ms, keys=(None, None)):
        self.id = make_id("pyworker")
        self.credit = credit
        self.heartbeat_s = heartbeat_ms / 1000.0
        self.liveness = liveness
        self.drain_s = drain_ms / 1000.0
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, self.id.encode())
        self.sock.setsockopt(zmq.LINGER, 500)
        use_keys(self.sock, *keys)
        # Without ZMQ_IMMEDIATE, what is sent before the connection is up waits for it.
        self.sock.connect(endpoint)
        self.timers = []  # heap of (due, seq, call, values)
        self.seq = itertools.count()
        self.pending = {}  # (engine_id, call_id) -> deadline (monotonic seconds) or None
        self.stopping = False
        self.stop_by = None
        self.last_heard = time.monotonic()
        self.next_heartbeat = 0.0
        self.stats = {"completed": 0, "failed": 0, "timed_out": 0, "dropped": 0}
        # Signals wake the poll through this socket pair (signal.set_wakeup_fd).
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)

    def send(self, **body):
        try:
            self.sock.send(envelope(**body).SerializeToString(), zmq.NOBLOCK)
            return True
        except zmq.Again:  # the queue towards the broker is full: nothing to wait for
            return False

    def ready(self):
        specs = [pb.FunctionSpec(name=n, idempotent=i) for n, (_, i) in sorted(FUNCTIONS.items())]
        self.send(ready=pb.Ready(functions=specs, credit=self.credit, running=len(self.pending)))
        self.last_heard = time.monotonic()  # give the broker a whole liveness period
        log("ready_sent id=%s functions=%d credit=%d running=%d"
            % (self.id, len(specs), self.credit, len(self.pending)))

    # ---- answers ----

    def reply(self, call, values=None, code=None, message=""):
        """The one Reply of a call; nothing when it was answered (timed out) already."""
        key = (call.engine_id, call.call_id)
        if key not in self.pending:
            return
        del self.pending[key]
        r = pb.Reply(engine_id=call.engine_id, call_id=call.call_id)
        if code:
            r.error.code = code
            r.error.message = message
            self.stats["failed"] += 1
        else:
            try:
                for v in values:
                    r.values.add().CopyFrom(to_value(v))
                self.stats["completed"] += 1
            except ValueError as e:
                del r.values[:]
                r.error.code, r.error.message = "call_error", "%s: %s" % (call.function, e)
                self.stats["failed"] += 1
        self.send(reply=r)

    def later(self, delay_s, call, values):
        heapq.heappush(self.timers, (time.monotonic() + delay_s, next(self.seq), call, values))

    # ---- calls ----

    def on_command(self, cmd):
        if not cmd.engine_id:
            self.stats["dropped"] += 1  # nobody to answer
            return
        key = (cmd.engine_id, cmd.call_id)
        deadline = time.monotonic() + cmd.timeout_ms / 1000.0 if cmd.timeout_ms else None
        self.pending[key] = deadline
        entry = FUNCTIONS.get(cmd.function)
        if entry is None:
            self.reply(cmd, code="no_worker",
                       message="worker %s does not serve '%s'" % (self.id, cmd.function))
            return
        if self.stopping or len(self.pending) > self.credit:
            self.reply(cmd, code="overloaded",
                       message="worker %s takes no more calls" % self.id)
            return
        if deadline is not None:
            self.later(cmd.timeout_ms / 1000.0, cmd, None)  # the deadline: see run_timers
        try:
            values = entry[0](self, cmd)
        except CallError as e:
            self.reply(cmd, code=e.code, message=str(e))
            return
        except Exception as e:  # a bug in a function is that call's error, not the worker's end
            self.reply(cmd, code="call_error", message="%s: %s" % (cmd.function, e))
            return
        if values is not None:
            self.reply(cmd, values)

    def run_timers(self, now):
        while self.timers and self.timers[0][0] <= now:
            _, _, call, values = heapq.heappop(self.timers)
            if values is None:  # a deadline: answer timeout unless answered already
                if (call.engine_id, call.call_id) in self.pending:
                    self.stats["timed_out"] += 1
                    self.reply(call, code="timeout",
                               message="'%s' did not answer within %d ms at %s"
                               % (call.function, call.timeout_ms, self.id))
            else:
                self.reply(call, values)

    def on_message(self, frame):
        env = decode(frame)
        if env is None:
            self.stats["dropped"] += 1
            return
        self.last_heard = time.monotonic()  # any message from the broker counts
        body = env.WhichOneof("body")
        if body == "command":
            self.on_command(env.command)
        elif body != "heartbeat":
            self.stats["dropped"] += 1

    # ---- the loop ----

    def on_signal(self, signo, frame):
        if not self.stopping:
            self.stopping = True
            self.stop_by = time.monotonic() + self.drain_s
            self.send(goodbye=pb.Goodbye())
            log("draining id=%s in_flight=%d" % (self.id, len(self.pending)))
        else:
            self.stop_by = time.monotonic()  # a second signal: at once

    def run(self):
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.wake_r, zmq.POLLIN)
        self.ready()
        while not (self.stopping and (not self.pending or time.monotonic() >= self.stop_by)):
            now = time.monotonic()
            if now >= self.next_heartbeat:
                self.send(heartbeat=pb.Heartbeat())
                self.next_heartbeat = now + self.heartbeat_s
                if now - self.last_heard > self.heartbeat_s * self.liveness and not self.stopping:
                    # The broker restarted, or took us for lost: register again.
                    self.ready()
            due = [self.next_heartbeat] + ([self.timers[0][0]] if self.timers else [])
            if self.stopping:
                due.append(self.stop_by)
            wait_ms = max(0, int((min(due) - now) * 1000) + 1)
            events = dict(poller.poll(wait_ms))
            if self.wake_r in events or self.wake_r.fileno() in events:
                try:
                    self.wake_r.recv(64)
                except BlockingIOError:
                    pass
            if self.sock in events:
                for _ in range(1024):  # a batch, then timers get their turn
                    try:
                        frame = self.sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.on_message(frame)
            self.run_timers(time.monotonic())
        log("worker_stopped id=%s in_flight=%d completed=%d failed=%d timed_out=%d dropped=%d"
            % (self.id, len(self.pending), self.stats["completed"], self.stats["failed"],
               self.stats["timed_out"], self.stats["dropped"]))
        self.sock.close()
        self.ctx.term()
        return 0


def log(line):
    print("pyworker " + line, file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description="Serves py.upper, py.add and py.after to a "
                                                 "Ferry broker.")
    parser.add_argument("--workers", default=os.environ.get("FERRY_WORKERS",
                                                            "tcp://localhost:5557"),
                        help="broker workers endpoint (FERRY_WORKERS)")
    parser.add_argument("--credit", type=int, default=1000, help="calls in flight at once")
    parser.add_argument("--heartbeat-ms", type=int,
                        default=int(os.environ.get("FERRY_HEARTBEAT_MS", "1000")),
                        help="heartbeat interval, as the broker's (FERRY_HEARTBEAT_MS)")
    parser.add_argument("--liveness", type=int, default=int(os.environ.get("FERRY_LIVENESS", "3")),
                        help="intervals of broker silence before registering again")
    parser.add_argument("--drain-ms", type=int, default=10000,
                        help="how long calls in flight may take after SIGTERM")
    add_key_options(parser)
    opts = parser.parse_args()
    if opts.credit < 1 or opts.heartbeat_ms < 10 or opts.liveness < 2:
        parser.error("--credit >= 1, --heartbeat-ms >= 10 and --liveness >= 2")
    log("worker_config endpoint=%s" % opts.workers)
    return Worker(opts.workers, opts.credit, opts.heartbeat_ms, opts.liveness,
                  opts.drain_ms, (opts.curve_key, opts.broker_key)).run()


if __name__ == "__main__":
    sys.exit(main())

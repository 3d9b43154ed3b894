"""ferry.Worker: serve Python functions, plain or asyncio, to Lua scripts.

    worker = ferry.Worker("tcp://localhost:5557")

    @worker.function("py.upper", idempotent=True)
    def upper(s):
        return s.upper()

    @worker.function("py.fetch")
    async def fetch(url, options=None):
        ...
        return {"status": 200, "body": body}

    worker.run()   # until SIGTERM / SIGINT (or worker.stop()), then drains

Everything docs/protocol.md asks of a worker ("Writing a worker") is done
here: a DEALER with a routing id of its own; Ready with the functions and
the credit, again on every new connection (a socket monitor) and after the
broker was silent past liveness (then under a new routing id, as the doc
asks); a Heartbeat every interval; exactly one Reply per Command, which
returns its credit; `timeout` answered at the call's deadline (the late
result is dropped; an asyncio call is cancelled, a plain one cannot be and
runs on in its thread); Goodbye on SIGTERM or SIGINT, then the calls in
flight finish for up to drain_timeout seconds while heartbeats go on; a
second signal stops at once.

A function gets the call's arguments as Python values (see ferry._wire)
and returns its results: None for none, a tuple for several, anything else
for one. It raises ferry.CallError(code, message) to fail with a code of
its own; any other exception fails the call with `call_error` naming it.
Arguments that do not fit its signature fail with `bad_argument`.
ferry.current_call() tells it its function name and deadline.

asyncio functions run on the worker's event loop; plain ones in a pool of
`threads` daemon threads (so a stuck one cannot keep the process from
exiting). `credit` bounds the calls in flight, both kinds together.
"""
import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import os
import queue
import random
import signal
import socket
import struct
import threading
import time

import zmq
import zmq.asyncio

from . import _wire, keys as _keys
from . import ferry_pb2 as pb
from .errors import CallError, FerryError

DEFAULT_ENDPOINT = "tcp://localhost:5557"
DEFAULT_MAX_MSG = 16 * 1024 * 1024
NAME_MAX = 255            # bytes of a function name (docs/protocol.md, "Function names")
READY_FUNCTIONS_MAX = 1000  # the broker's --ready-functions-max default
ROUTING_ID_MAX = 255
HWM_MARGIN = 1024         # Ready and heartbeats on top of one reply per credit

log = logging.getLogger("ferry.worker")

_current = contextvars.ContextVar("ferry_call", default=None)


def current_call():
    """The Call being served in this thread or task (None outside a call)."""
    return _current.get()


class Call:
    """One call: function (str), engine_id, call_id, timeout_ms, deadline
    (time.monotonic(), None when the Command gave no timeout)."""
    __slots__ = ("function", "engine_id", "call_id", "timeout_ms", "deadline")

    def time_left(self):
        """Seconds until the deadline (None: no deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


def check_name(name):
    """The name as bytes when it follows the rule (1 to 255 bytes of UTF-8, no zero byte);
    ValueError otherwise."""
    if not isinstance(name, str):
        raise ValueError("a function name is a str")
    try:
        b = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("function name %r is not valid UTF-8" % name) from None
    if not 1 <= len(b) <= NAME_MAX or b"\0" in b:
        raise ValueError("function name %r: 1 to %d bytes without a zero byte" % (name, NAME_MAX))
    return b


def make_id(prefix):
    """A routing id unique per process start: prefix-host-pid-8 hex, at most 255 bytes."""
    rid = "%s-%s-%d-%08x" % (prefix, socket.gethostname(), os.getpid(), random.getrandbits(32))
    return rid.encode("utf-8")[-ROUTING_ID_MAX:]


class _Pool:
    """Daemon threads for plain functions: a stuck call cannot hold up exit."""

    def __init__(self, n):
        self._q = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name="ferry-call-%d" % i, daemon=True)
                         for i in range(n)]
        for t in self._threads:
            t.start()

    def _run(self):
        while True:
            item = self._q.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # handed to the loop as the call's outcome
                fut.set_exception(e)

    def submit(self, fn, *args):
        fut = concurrent.futures.Future()
        self._q.put((fut, fn, args))
        return fut

    def shutdown(self):
        for _ in self._threads:
            self._q.put(None)


class _Function:
    __slots__ = ("name", "fn", "idempotent", "is_async", "signature")


class Worker:
    """A worker of the broker's workers endpoint (default $FERRY_WORKERS or
    tcp://localhost:5557).

    curve_key, broker_key: this worker's secret certificate and the broker's
    public one (both or neither; $FERRY_CURVE_KEY, $FERRY_BROKER_KEY when not
    given). credit: calls in flight at once (Ready.credit). threads: for plain
    functions. heartbeat_ms and liveness as the broker's ($FERRY_HEARTBEAT_MS,
    $FERRY_LIVENESS). drain_timeout: seconds the calls in flight get after
    SIGTERM. max_msg: the broker's --max-msg (a larger Reply becomes a
    call_error). strings="bytes": Lua strings always as bytes.
    """

    def __init__(self, endpoint=None, curve_key=None, broker_key=None, *, credit=64, threads=8,
                 heartbeat_ms=None, liveness=None, drain_timeout=10.0, max_msg=DEFAULT_MAX_MSG,
                 id_prefix="pyworker", strings="auto", handle_signals=True):
        if strings not in ("auto", "bytes"):
            raise FerryError("usage", "strings is 'auto' or 'bytes'")
        self.endpoint = endpoint or os.environ.get("FERRY_WORKERS") or DEFAULT_ENDPOINT
        if curve_key is None and broker_key is None:
            curve_key = os.environ.get("FERRY_CURVE_KEY") or None
            broker_key = os.environ.get("FERRY_BROKER_KEY") or None
        self._keys = _keys.client_keys(curve_key, broker_key)
        if not 1 <= credit <= 100000:
            raise FerryError("usage", "credit is 1 to 100000")
        self.credit = credit
        self.threads = max(1, threads)
        heartbeat_ms = heartbeat_ms or int(os.environ.get("FERRY_HEARTBEAT_MS") or 1000)
        self.heartbeat_s = heartbeat_ms / 1000
        self.liveness = liveness or int(os.environ.get("FERRY_LIVENESS") or 3)
        if self.heartbeat_s < 0.01 or self.liveness < 2:
            raise FerryError("usage", "heartbeat_ms >= 10 and liveness >= 2")
        self.drain_timeout = drain_timeout
        self.max_msg = max_msg
        self.id_prefix = id_prefix
        self.handle_signals = handle_signals
        self._raw = strings == "bytes"
        self._functions = {}  # name bytes -> _Function
        self.id = make_id(id_prefix)
        self.stats = {"completed": 0, "failed": 0, "timed_out": 0, "late": 0, "dropped": 0}
        self._loop = None
        self._stop_event = None
        self._stop_early = False  # stop() before serve() got going

    # ---- registering ----

    def function(self, name, idempotent=False):
        """Decorator: serve fn (plain or async def) as name. idempotent: the broker may run
        a call of it again on another worker when this one is lost."""
        def register(fn):
            self.add(name, fn, idempotent)
            return fn
        return register

    def add(self, name, fn, idempotent=False):
        key = check_name(name)
        if key not in self._functions and len(self._functions) >= READY_FUNCTIONS_MAX:
            raise ValueError("a worker serves at most %d functions" % READY_FUNCTIONS_MAX)
        f = _Function()
        f.name, f.fn, f.idempotent = name, fn, bool(idempotent)
        f.is_async = (inspect.iscoroutinefunction(fn) or  # also a partial of one
                      inspect.iscoroutinefunction(getattr(fn, "__call__", None)))
        try:
            f.signature = inspect.signature(fn)
        except (TypeError, ValueError):
            f.signature = None
        self._functions[key] = f
        if self._loop is not None:  # serving already: tell the broker
            self._loop.call_soon_threadsafe(self._send_ready)

    # ---- running ----

    def run(self):
        """Serves until stopped (SIGTERM, SIGINT, stop()) and drained."""
        asyncio.run(self.serve())

    def stop(self):
        """Drains as on SIGTERM (a second stop: at once). Thread-safe."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._drain)
        else:
            self._stop_early = True

    async def serve(self):
        """The worker's loop, for a program that runs asyncio already."""
        if not self._functions:
            raise FerryError("usage", "the worker serves no function")
        loop = self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._inflight = {}  # (engine_id, call_id) -> [Call, task or future, deadline handle]
        self._draining = False
        self._connected = False
        self._ready_pending = True
        self._last_heard = time.monotonic()
        self._last_refused_log = 0.0
        self._pool = _Pool(self.threads)
        ctx = zmq.asyncio.Context()
        self._sock = ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.ROUTING_ID, self.id)
        self._sock.setsockopt(zmq.LINGER, 500)
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        # Unread replies are bounded by the credit (see workers/worker.c): never refuse one.
        self._sock.setsockopt(zmq.SNDHWM, 2 * self.credit + HWM_MARGIN)
        self._sock.setsockopt(zmq.RCVHWM, 2 * self.credit + HWM_MARGIN)
        _keys.apply(self._sock, self._keys)
        monitor = self._sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED |
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self._sock.connect(self.endpoint)
        signals = []
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self._drain)
                    signals.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # not the main thread: stop() is the way
        log.info("worker_started id=%s endpoint=%s functions=%d credit=%d",
                 self.id.decode(errors="replace"), self.endpoint, len(self._functions),
                 self.credit)
        tasks = [loop.create_task(self._recv_loop()), loop.create_task(self._monitor_loop(monitor)),
                 loop.create_task(self._tick_loop())]
        if self._stop_early:
            self._stop_early = False
            self._drain()
        try:
            await self._stop_event.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            for t in tasks:
                t.cancel()
            left = list(self._inflight.values())
            self._inflight = {}
            for entry in left:
                entry[1].cancel()
                if entry[2] is not None:
                    entry[2].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._pool.shutdown()
            self._sock.disable_monitor()
            monitor.close(0)
            self._sock.close(500)
            ctx.term()
            self._loop = None
            log.info("worker_stopped id=%s abandoned=%d completed=%d failed=%d timed_out=%d "
                     "dropped=%d", self.id.decode(errors="replace"), len(left),
                     self.stats["completed"], self.stats["failed"], self.stats["timed_out"],
                     self.stats["dropped"])

    # ---- sending ----

    def _send(self, frame):
        """Sends at once or not at all (a full queue, no connection): True when sent."""
        try:
            f = self._sock.send(frame, zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        if f.done():
            return f.exception() is None
        f.add_done_callback(lambda f: f.cancelled() or f.exception())
        return True

    def _send_ready(self):
        if self._draining:
            self._ready_pending = False  # leaving: a broker that does not know us need not
            return
        specs = [pb.FunctionSpec(name=f.name, idempotent=f.idempotent)
                 for f in self._functions.values()]
        frame = _wire.encode_envelope(ready=pb.Ready(functions=specs, credit=self.credit,
                                                     running=len(self._inflight)))
        if self._send(frame):
            self._ready_pending = False
            self._last_heard = time.monotonic()  # the broker gets a whole liveness period
            log.info("ready_sent id=%s functions=%d credit=%d running=%d",
                     self.id.decode(errors="replace"), len(specs), self.credit,
                     len(self._inflight))
        else:
            self._ready_pending = True

    def _reply(self, call, values=(), code=None, message=""):
        if code:
            self.stats["failed"] += 1
            frame = _wire.encode_reply(call.engine_id, call.call_id, code=code, message=message)
        else:
            try:
                frame = _wire.encode_reply(call.engine_id, call.call_id, values)
            except _wire.EncodeError as e:
                return self._reply(call, code="call_error",
                                   message="%s: cannot send the result: %s" % (call.function, e))
            if len(frame) > self.max_msg:
                return self._reply(call, code="call_error",
                                   message="%s: the result is %d bytes, over the %d-byte message "
                                           "limit" % (call.function, len(frame), self.max_msg))
            self.stats["completed"] += 1
        if not self._send(frame):
            self.stats["dropped"] += 1
            log.warning("reply_not_sent function=%s call_id=%d (no connection or queue full)",
                        call.function, call.call_id)

    # ---- receiving ----

    async def _recv_loop(self):
        while True:
            frame = await self._sock.recv()
            self._last_heard = time.monotonic()  # any message from the broker counts
            try:
                self._on_frame(frame)
            except Exception:  # a bug here must not end the worker: that frame only
                self.stats["dropped"] += 1
                log.exception("frame_failed")

    def _on_frame(self, frame):
        try:
            version, body, (start, end) = _wire.peek(frame)
        except _wire.DecodeError:
            self.stats["dropped"] += 1
            return
        if version != _wire.PROTOCOL_VERSION:
            self.stats["dropped"] += 1
            return
        if body != _wire.F_ENV_COMMAND:
            if body != pb.Envelope.DESCRIPTOR.fields_by_name["heartbeat"].number:
                self.stats["dropped"] += 1
            return
        try:
            cmd = _wire.decode_command(frame, start, end, self._raw)
        except _wire.DecodeError:
            self.stats["dropped"] += 1
            return
        if not cmd.engine_id or len(cmd.engine_id) > ROUTING_ID_MAX:
            self.stats["dropped"] += 1  # nobody to answer
            return
        call = Call()
        call.function = cmd.function.decode("utf-8", "replace")
        call.engine_id, call.call_id, call.timeout_ms = cmd.engine_id, cmd.call_id, cmd.timeout_ms
        call.deadline = time.monotonic() + cmd.timeout_ms / 1000 if cmd.timeout_ms else None
        key = (cmd.engine_id, cmd.call_id)
        wid = self.id.decode(errors="replace")
        if key in self._inflight:
            self.stats["dropped"] += 1  # the same call twice: the first one answers
            return
        if cmd.args is None:
            return self._reply(call, code="bad_message",
                               message="the command for '%s' does not decode at worker %s (%s)"
                               % (call.function, wid, cmd.error))
        fn = self._functions.get(cmd.function)
        if fn is None:
            return self._reply(call, code="no_worker",
                               message="worker %s does not serve '%s'" % (wid, call.function))
        if len(self._inflight) >= self.credit:
            return self._reply(call, code="overloaded",
                               message="worker %s runs %d calls, its limit" % (wid, self.credit))
        if fn.signature is not None:
            try:
                fn.signature.bind(*cmd.args)
            except TypeError as e:
                return self._reply(call, code="bad_argument",
                                   message="bad arguments to '%s' (%s)" % (call.function, e))
        self._start(fn, call, cmd.args)

    def _start(self, fn, call, args):
        loop = self._loop
        key = (call.engine_id, call.call_id)
        ctx = contextvars.copy_context()
        ctx.run(_current.set, call)
        if fn.is_async:
            job = ctx.run(loop.create_task, fn.fn(*args))  # the task runs in a copy of ctx
        else:
            job = asyncio.wrap_future(self._pool.submit(ctx.run, fn.fn, *args), loop=loop)
        timer = None
        if call.deadline is not None:
            timer = loop.call_later(call.timeout_ms / 1000, self._on_deadline, key)
        self._inflight[key] = [call, job, timer]
        job.add_done_callback(lambda j: self._on_done(key, j))

    def _on_deadline(self, key):
        entry = self._inflight.pop(key, None)
        if entry is None:
            return
        call, job, _ = entry
        job.cancel()  # an asyncio call stops; a plain one runs on, its result dropped
        self.stats["timed_out"] += 1
        self._reply(call, code="timeout", message="'%s' did not answer within %d ms at %s"
                    % (call.function, call.timeout_ms, self.id.decode(errors="replace")))
        self._maybe_drained()

    def _on_done(self, key, job):
        try:
            self._finish_call(key, job)
        except Exception:  # a bug here must not leave the call unanswered
            log.exception("reply_failed")
            entry = self._inflight.pop(key, None)
            if entry is not None:
                self._reply(entry[0], code="call_error", message="the worker failed to reply")
            self._maybe_drained()

    def _finish_call(self, key, job):
        entry = self._inflight.get(key)
        if entry is None or entry[1] is not job:
            if not job.cancelled():
                job.exception()  # retrieved: a late result, dropped
            self.stats["late"] += 1
            return
        del self._inflight[key]
        call, _, timer = entry
        if timer is not None:
            timer.cancel()
        if job.cancelled():
            self._reply(call, code="call_error", message="%s: cancelled" % call.function)
        else:
            exc = job.exception()
            if exc is None:
                out = job.result()
                values = () if out is None else (list(out) if isinstance(out, tuple) else [out])
                self._reply(call, values)
            elif isinstance(exc, CallError):
                self._reply(call, code=exc.code, message=exc.message)
            else:
                self._reply(call, code="call_error", message="%s: %s: %s"
                            % (call.function, type(exc).__name__, exc))
        self._maybe_drained()

    async def _monitor_loop(self, monitor):
        while True:
            frames = await monitor.recv_multipart()
            if not frames or len(frames[0]) < 6:
                continue
            event = struct.unpack("=H", frames[0][:2])[0]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected = True
                log.info("broker_connected draining=%d", self._draining)
                self._send_ready()
            elif event == zmq.EVENT_DISCONNECTED:
                self._connected = False
                self._ready_pending = True
                log.warning("broker_disconnected in_flight=%d", len(self._inflight))
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL) \
                    or (event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self._keys):
                now = time.monotonic()
                if now - self._last_refused_log >= 10:
                    self._last_refused_log = now
                    log.error("broker_refused reason=%s",
                              "our key is not on the broker's allow-list"
                              if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
                              else "handshake failed: check curve_key and broker_key")

    async def _tick_loop(self):
        heartbeat = _wire.encode_envelope(heartbeat=pb.Heartbeat())
        next_beat = 0.0
        while True:
            now = time.monotonic()
            if (not self._ready_pending and not self._draining
                    and now - self._last_heard > self.heartbeat_s * self.liveness):
                self._new_identity(now)
            if self._ready_pending:
                # Also without a connect event seen: with ZMQ_IMMEDIATE the send only
                # succeeds over a connection that is up (events of an old connection
                # may come after those of the new one).
                self._send_ready()
            if not self._ready_pending and now >= next_beat:
                self._send(heartbeat)
                next_beat = now + self.heartbeat_s
            if self._draining and now >= self._drain_until:
                log.warning("drain_timeout in_flight=%d", len(self._inflight))
                self._stop_event.set()
            await asyncio.sleep(self.heartbeat_s / 2)

    def _new_identity(self, now):
        """The broker said nothing for liveness intervals: it restarted without our
        connection noticing, or took us for lost. Come back on a new connection under
        a new routing id (the doc's rule); Ready goes when it is up."""
        old = self.id
        self.id = make_id(self.id_prefix)
        log.warning("broker_silent silent_ms=%d in_flight=%d old=%s id=%s",
                    (now - self._last_heard) * 1000, len(self._inflight),
                    old.decode(errors="replace"), self.id.decode(errors="replace"))
        self._last_heard = now
        self._ready_pending = True
        self._connected = False
        try:
            self._sock.disconnect(self.endpoint)
        except zmq.ZMQError:
            pass
        self._sock.setsockopt(zmq.ROUTING_ID, self.id)
        self._sock.connect(self.endpoint)

    # ---- leaving ----

    def _drain(self):
        if self._stop_event is None:
            return
        if self._draining:
            log.warning("stopping at once in_flight=%d", len(self._inflight))
            self._stop_event.set()
            return
        self._draining = True
        self._drain_until = time.monotonic() + self.drain_timeout
        sent = not self._ready_pending and self._send(
            _wire.encode_envelope(goodbye=pb.Goodbye()))
        log.info("draining id=%s in_flight=%d goodbye=%s", self.id.decode(errors="replace"),
                 len(self._inflight), "sent" if sent else "not_registered")
        self._maybe_drained()

    def _maybe_drained(self):
        if self._draining and not self._inflight:
            log.info("drained id=%s", self.id.decode(errors="replace"))
            self._stop_event.set()

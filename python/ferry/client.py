"""ferry.Client: run Lua scripts on a Ferry stack, many in flight on one socket.

    with ferry.Client("tcp://localhost:5558") as c:
        print(c.run("return ferry.call('echo', ...)", 1, "two").values)
        pending = [c.submit(SCRIPT, i, timeout=5) for i in range(100)]
        for p in c.results(pending):          # in completion order
            print(p.request_id, p.result().value)

One DEALER to the broker's clients socket (docs/protocol.md, "Writing a
client"), with ZMQ_IMMEDIATE: a submission waits up to connect_timeout for
a connection instead of queueing towards nobody (FerryError "unreachable").
A monitor watches the connection as the C client library does: when it
drops, every pending result is lost (a new connection is a new routing id,
and a restarted broker knows nothing of earlier scripts), so their waits
end with "broker_lost" at once; a handshake the broker's ZAP handler refused
ends them (and later submissions) with "not_authorized". A result that
never comes ends with "timeout" at the script's deadline plus GRACE_S,
after the broker's own answer at 5 s past it.

A Client is not thread-safe: use one per thread.
"""
import os
import struct
import time

import zmq

from . import _wire, keys as _keys
from . import ferry_pb2 as pb
from .errors import FerryError, ScriptError

DEFAULT_ENDPOINT = "tcp://localhost:5558"
DEFAULT_MAX_MSG = 16 * 1024 * 1024
DEFAULT_SCRIPT_TIMEOUT_S = 30.0  # the broker's --script-timeout default, for timeout=None
GRACE_S = 6.0  # FERRY_CLIENT_GRACE_MS: past the broker's 5 s, so it has the last word

_EVENTS = (zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED |
           zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
           zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class Pending:
    """A submitted script: done(), result(timeout), exception(). Made by Client.submit."""

    def __init__(self, client, request_id, give_up_at):
        self._client = client
        self.request_id = request_id
        self.give_up_at = give_up_at  # time.monotonic() of the client's own timeout
        self._result = None
        self._error = None

    def done(self):
        return self._result is not None or self._error is not None

    def _finish(self, result=None, error=None):
        if not self.done():
            self._result, self._error = result, error
            self._client._pending.pop(self.request_id, None)
            self._client._done[self.request_id] = self

    def result(self, timeout=None):
        """The Result (ok, values, output) once it came, waiting up to timeout seconds
        (None: as long as the script may take). Raises ScriptError when the script
        failed, FerryError for broker_lost, timeout (the client's), not_authorized."""
        if not self.done():
            self._client._pump_until(lambda: self.done(), timeout)
            if not self.done():
                raise FerryError("timeout", "no result within %.3f s (still pending)"
                                 % (timeout or 0))
        self._client._done.pop(self.request_id, None)  # handed out: wait() skips it
        if self._error is not None:
            raise self._error
        if not self._result.ok:
            raise ScriptError(self._result)
        return self._result

    def exception(self, timeout=None):
        """The exception result() would raise, or None."""
        try:
            self.result(timeout)
        except FerryError as e:
            return e
        return None

    def __repr__(self):
        state = "done" if self.done() else "pending"
        return "<ferry.Pending %d %s>" % (self.request_id, state)


class Client:
    """A client of the broker's clients endpoint (default $FERRY_CLIENTS or
    tcp://localhost:5558).

    curve_key, broker_key: this client's secret certificate and the broker's
    public one (zcert files, `ferry keygen`); both or neither ($FERRY_CURVE_KEY,
    $FERRY_BROKER_KEY when not given). max_msg: the broker's --max-msg (a larger
    Submit fails with "limit" before it is sent). strings="bytes" gives every Lua
    string as bytes; by default valid UTF-8 comes as str. grace: seconds past a
    script's deadline before its wait ends with "timeout" (more than the broker's 5).
    """

    def __init__(self, endpoint=None, curve_key=None, broker_key=None, *,
                 connect_timeout=3.0, max_msg=DEFAULT_MAX_MSG, strings="auto", grace=GRACE_S,
                 context=None):
        if strings not in ("auto", "bytes"):
            raise FerryError("usage", "strings is 'auto' or 'bytes'")
        self.endpoint = endpoint or os.environ.get("FERRY_CLIENTS") or DEFAULT_ENDPOINT
        if curve_key is None and broker_key is None:
            curve_key = os.environ.get("FERRY_CURVE_KEY") or None
            broker_key = os.environ.get("FERRY_BROKER_KEY") or None
        self._keys = _keys.client_keys(curve_key, broker_key)
        self.connect_timeout = connect_timeout
        self.grace = grace
        self.max_msg = max_msg
        self._raw = strings == "bytes"
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        _keys.apply(self._sock, self._keys)
        self._monitor = self._sock.get_monitor_socket(_EVENTS)
        self._sock.connect(self.endpoint)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._next_id = 1
        self._pending = {}  # request_id -> Pending
        self._done = {}     # request_id -> Pending finished and not handed out yet, in order
        self._stats = {}    # request_id -> Stats, or None while awaited
        self._refused = False

    # ---- lifecycle ----

    def close(self):
        if self._sock is None:
            return
        for p in list(self._pending.values()):
            p._finish(error=FerryError("broker_lost", "the client was closed"))
        self._sock.disable_monitor()
        self._monitor.close(0)
        self._sock.close(0)
        self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- submitting ----

    def submit(self, source, *args, timeout=None, name=None, max_memory=0,
               max_instructions=0, max_output=0):
        """Sends a script (str or bytes) with args; returns its Pending at once.

        timeout: the script's deadline in seconds (None: the broker's
        --script-timeout). The limits are asked for; an engine grants at most
        its own. Raises FerryError: unreachable, not_authorized, limit (the
        Submit is over max_msg), usage (an argument with no Lua value)."""
        if isinstance(source, str):
            source = source.encode("utf-8")
        timeout_ms = 0 if timeout is None else min(0xFFFFFFFF, max(1, int(timeout * 1000)))
        rid = self._next_id
        self._next_id += 1
        try:
            frame = _wire.encode_submit(rid, source, args, timeout_ms, name or "script",
                                        max_memory, max_instructions, max_output)
        except _wire.EncodeError as e:
            raise FerryError("usage", "script arguments: %s" % e) from None
        if len(frame) > self.max_msg:
            raise FerryError("limit", "the Submit is %d bytes, over the %d-byte message limit"
                             % (len(frame), self.max_msg))
        self._send(frame)
        wait = (timeout if timeout is not None else DEFAULT_SCRIPT_TIMEOUT_S) + self.grace
        p = Pending(self, rid, time.monotonic() + wait)
        self._pending[rid] = p
        return p

    def run(self, source, *args, timeout=None, name=None, **limits):
        """Submits and waits: the Result (values, value, output) of a script that
        succeeded; ScriptError (code, message, output) for one that failed;
        FerryError for the client's own failures (see Pending.result)."""
        return self.submit(source, *args, timeout=timeout, name=name, **limits).result()

    def wait(self, timeout=None):
        """The next Pending to finish (any of them), waiting up to timeout seconds
        (None: until one does); None when nothing finished in time or nothing is
        pending."""
        if not self._done:
            self._pump_until(lambda: bool(self._done) or not self._pending, timeout)
        return self._done.pop(next(iter(self._done))) if self._done else None

    def results(self, pending=None, timeout=None):
        """Yields the given Pendings (default: every one submitted and not handed
        out yet) as they finish, in completion order; within timeout seconds in
        all (None: each waits for its own deadline). Stops early at the timeout."""
        if pending is None:
            want = set(self._pending.values()) | set(self._done.values())
        else:
            want = set(pending)
        until = None if timeout is None else time.monotonic() + timeout
        while want:
            ready = [p for p in self._done.values() if p in want]
            ready += [p for p in want if p.done() and p not in ready]
            if ready:
                for p in ready:
                    self._done.pop(p.request_id, None)
                    want.discard(p)
                    yield p
                continue
            left = None if until is None else until - time.monotonic()
            if left is not None and left <= 0:
                return
            self._pump_until(lambda: any(p.done() for p in want), left)

    def stats(self, timeout=5.0):
        """The broker's counters: a ferry_pb2.Stats (docs/protocol.md, "Stats")."""
        rid = self._next_id
        self._next_id += 1
        self._send(_wire.encode_envelope(stats_request=pb.StatsRequest(request_id=rid)))
        self._stats[rid] = None
        try:
            self._pump_until(lambda: self._stats[rid] is not None or self._refused, timeout)
            got = self._stats[rid]
        finally:
            del self._stats[rid]
        if got is not None:
            return got
        if self._refused:
            raise self._auth_error()
        raise FerryError("timeout", "no stats from %s within %.1f s" % (self.endpoint, timeout))

    # ---- the socket ----

    def _auth_error(self):
        return FerryError("not_authorized", "not authorized by the broker at %s"
                          % self.endpoint)

    def _send(self, frame):
        if self._sock is None:
            raise FerryError("usage", "the client is closed")
        self._events()
        until = time.monotonic() + self.connect_timeout
        while True:
            try:
                self._sock.send(frame, zmq.NOBLOCK)
                return
            except zmq.Again:
                pass
            self._events()
            if self._refused:
                raise self._auth_error()
            left = until - time.monotonic()
            if left <= 0:
                raise FerryError("unreachable", "no broker at %s within %.1f s"
                                 % (self.endpoint, self.connect_timeout))
            zmq.select([self._monitor], [self._sock], [], min(left, 0.05))

    def _events(self):
        """Reads the connection events; a drop or a refusal fails every pending result."""
        lost = False
        while True:
            try:
                frames = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not frames or len(frames[0]) < 6:
                continue
            event = struct.unpack("=H", frames[0][:2])[0]
            if event == zmq.EVENT_DISCONNECTED:
                lost = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._refused = False
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL) \
                    or (event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self._keys):
                self._refused = True
        if self._refused or lost:
            err = self._auth_error() if self._refused else FerryError(
                "broker_lost", "the connection to the broker at %s dropped" % self.endpoint)
            for p in list(self._pending.values()):
                p._finish(error=err)

    def _on_frame(self, frame):
        try:
            version, body, (start, end) = _wire.peek(frame)
            if version != _wire.PROTOCOL_VERSION:
                return
            if body == _wire.F_ENV_RESULT:
                r = _wire.decode_result(frame, start, end, self._raw)
                p = self._pending.get(r.request_id)
                if p is not None:
                    p._finish(result=r)
            elif body == pb.Envelope.DESCRIPTOR.fields_by_name["stats"].number:
                env = pb.Envelope.FromString(frame)
                if self._stats.get(env.stats.request_id, 0) is None:  # awaited, not late
                    self._stats[env.stats.request_id] = env.stats
        except Exception:  # nothing the broker sends may break the client: skipped
            return

    def _expire(self, now):
        for p in list(self._pending.values()):
            if now >= p.give_up_at:
                p._finish(error=FerryError(
                    "timeout", "no result from %s within the script's deadline plus %.1f s"
                    % (self.endpoint, self.grace)))

    def _pump_until(self, cond, timeout):
        """Receives and handles messages until cond() or timeout seconds (None: until
        cond, or nothing pending and cond still false)."""
        if self._sock is None:
            raise FerryError("usage", "the client is closed")
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            self._events()
            for _ in range(1024):
                try:
                    frame = self._sock.recv(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                self._on_frame(frame)
            now = time.monotonic()
            self._expire(now)
            if cond():
                return
            deadlines = [p.give_up_at for p in self._pending.values()]
            if until is not None:
                deadlines.append(until)
            if not deadlines:
                return  # nothing can happen: nothing pending, no bound
            left = min(deadlines) - now
            if until is not None and now >= until:
                return
            self._poller.poll(max(1, int(left * 1000) + 1))

"""ferry.AsyncClient: the client for asyncio programs.

    async with ferry.AsyncClient("tcp://localhost:5558") as c:
        r = await c.run("return ferry.call('echo', ...)", 1, timeout=5)
        many = await asyncio.gather(*(c.run(SCRIPT, i, timeout=10) for i in range(1000)),
                                    return_exceptions=True)

The same rules as ferry.Client (client.py): one DEALER with ZMQ_IMMEDIATE;
a dropped connection fails every pending script with "broker_lost" at
once, a refused handshake with "not_authorized"; a result that never comes
ends with "timeout" at the deadline plus the grace. Use it from one event
loop.
"""
import asyncio
import os
import struct

import zmq
import zmq.asyncio

from . import _wire, keys as _keys
from . import ferry_pb2 as pb
from .client import _EVENTS, DEFAULT_ENDPOINT, DEFAULT_MAX_MSG, DEFAULT_SCRIPT_TIMEOUT_S, GRACE_S
from .errors import FerryError, ScriptError


class AsyncClient:
    """As ferry.Client, for asyncio: submit() gives an awaitable, run() awaits it."""

    def __init__(self, endpoint=None, curve_key=None, broker_key=None, *,
                 connect_timeout=3.0, max_msg=DEFAULT_MAX_MSG, strings="auto", grace=GRACE_S):
        if strings not in ("auto", "bytes"):
            raise FerryError("usage", "strings is 'auto' or 'bytes'")
        self.endpoint = endpoint or os.environ.get("FERRY_CLIENTS") or DEFAULT_ENDPOINT
        if curve_key is None and broker_key is None:
            curve_key = os.environ.get("FERRY_CURVE_KEY") or None
            broker_key = os.environ.get("FERRY_BROKER_KEY") or None
        self._keys = _keys.client_keys(curve_key, broker_key)
        self.connect_timeout = connect_timeout
        self.max_msg = max_msg
        self.grace = grace
        self._raw = strings == "bytes"
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        _keys.apply(self._sock, self._keys)
        self._monitor = self._sock.get_monitor_socket(_EVENTS)
        self._sock.connect(self.endpoint)
        self._next_id = 1
        self._pending = {}  # request_id -> (Future, timer handle)
        self._stats = {}    # request_id -> Future of Stats
        self._refused = None  # an asyncio.Event, made in the loop
        self._tasks = None

    def _start(self):
        if self._sock is None:
            raise FerryError("usage", "the client is closed")
        if self._tasks is None:
            loop = asyncio.get_running_loop()
            self._refused = asyncio.Event()
            self._tasks = [loop.create_task(self._recv_loop()),
                           loop.create_task(self._monitor_loop())]

    async def close(self):
        if self._sock is None:
            return
        self._fail_all(FerryError("broker_lost", "the client was closed"))
        for t in self._tasks or ():
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._sock.disable_monitor()
        self._monitor.close(0)
        self._sock.close(0)
        self._ctx.term()
        self._sock = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # ---- scripts ----

    async def submit(self, source, *args, timeout=None, name=None, max_memory=0,
                     max_instructions=0, max_output=0):
        """Sends a script; returns a Future of its Result (ScriptError when it failed,
        FerryError for broker_lost, timeout, not_authorized). Raises FerryError
        unreachable, not_authorized, limit or usage when it cannot be sent."""
        self._start()
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
        await self._send(frame)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        wait = (timeout if timeout is not None else DEFAULT_SCRIPT_TIMEOUT_S) + self.grace
        timer = loop.call_later(wait, self._expire, rid)
        self._pending[rid] = (fut, timer)
        return fut

    async def run(self, source, *args, timeout=None, name=None, **limits):
        """Submits and awaits: the Result of a script that succeeded (see ferry.Client.run)."""
        return await (await self.submit(source, *args, timeout=timeout, name=name, **limits))

    async def stats(self, timeout=5.0):
        """The broker's counters: a ferry_pb2.Stats."""
        self._start()
        rid = self._next_id
        self._next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self._stats[rid] = fut
        try:
            await self._send(_wire.encode_envelope(stats_request=pb.StatsRequest(request_id=rid)))
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise FerryError("timeout", "no stats from %s within %.1f s"
                             % (self.endpoint, timeout)) from None
        finally:
            self._stats.pop(rid, None)

    # ---- the socket ----

    def _auth_error(self):
        return FerryError("not_authorized", "not authorized by the broker at %s" % self.endpoint)

    async def _send(self, frame):
        """Sends once a connection takes it, for up to connect_timeout."""
        if self._refused.is_set():
            raise self._auth_error()
        send = asyncio.ensure_future(self._sock.send(frame))
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            done, _ = await asyncio.wait({send, refused}, timeout=self.connect_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
        if send in done:
            send.result()
            return
        send.cancel()
        if refused in done:
            raise self._auth_error()
        raise FerryError("unreachable", "no broker at %s within %.1f s"
                         % (self.endpoint, self.connect_timeout))

    def _finish(self, rid, result=None, error=None):
        entry = self._pending.pop(rid, None)
        if entry is None:
            return
        fut, timer = entry
        timer.cancel()
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        elif not result.ok:
            fut.set_exception(ScriptError(result))
        else:
            fut.set_result(result)

    def _expire(self, rid):
        self._finish(rid, error=FerryError(
            "timeout", "no result from %s within the script's deadline plus %.1f s"
            % (self.endpoint, self.grace)))

    def _fail_all(self, error):
        for rid in list(self._pending):
            self._finish(rid, error=error)
        for fut in self._stats.values():
            if not fut.done():
                fut.set_exception(error)

    async def _recv_loop(self):
        while True:
            frame = await self._sock.recv()
            try:
                version, body, (start, end) = _wire.peek(frame)
                if version != _wire.PROTOCOL_VERSION:
                    continue
                if body == _wire.F_ENV_RESULT:
                    r = _wire.decode_result(frame, start, end, self._raw)
                    self._finish(r.request_id, result=r)
                elif body == pb.Envelope.DESCRIPTOR.fields_by_name["stats"].number:
                    stats = pb.Envelope.FromString(frame).stats
                    fut = self._stats.get(stats.request_id)
                    if fut is not None and not fut.done():
                        fut.set_result(stats)
            except Exception:  # nothing the broker sends may break the client: skipped
                continue

    async def _monitor_loop(self):
        while True:
            frames = await self._monitor.recv_multipart()
            if not frames or len(frames[0]) < 6:
                continue
            event = struct.unpack("=H", frames[0][:2])[0]
            if event == zmq.EVENT_DISCONNECTED:
                self._fail_all(FerryError(
                    "broker_lost", "the connection to the broker at %s dropped" % self.endpoint))
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._refused.clear()
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL) \
                    or (event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self._keys):
                self._refused.set()
                self._fail_all(self._auth_error())

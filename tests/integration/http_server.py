#!/usr/bin/env python3
"""A loopback HTTP/1.1 server for http_test.c (standard library only).

The test makes the listening socket itself (127.0.0.1, an ephemeral port, a
deep backlog) and passes its descriptor with --fd, so it knows the port
before this process starts and connections simply wait in the backlog until
it accepts. One thread per connection: /slow holds 200 connections at once.

  /ok                 200 "hello", two X-Test headers (joined by the client)
  /binary             200, the bytes 0..255 four times (zero bytes included)
  /slow?ms=N          200 "slow" after N milliseconds
  /inflight           200, how many /slow requests are sleeping now (decimal)
  /echo               any method: the request body back, X-Method, and every
                      X-* request header as X-Echo-<name>
  /redirect?n=K       302 to /redirect?n=K-1, and from n=0 to /ok
  /to?url=U           302 to U, whatever it is
  /big?n=N            200 with N bytes of 'x'
  /status?code=N      status N, empty body
  anything else       404 "not found"

A request line with an absolute URL (what a client sends to a proxy) is
served by its path alone, so the test can offer this server as an
http_proxy and see whether the worker uses it.

SIGTERM ends it with status 0 (the harness counts any other exit as unclean);
the handler is in place before it writes a byte to --ready-fd, which the
test waits for.
"""
import os
import signal

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

import argparse  # noqa: E402 (after the handler: a SIGTERM may come at once)
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402


import threading  # noqa: E402

sleeping = 0
sleeping_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Content-Length on every response

    def log_message(self, fmt, *args):  # quiet: the harness keeps the log
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def query(self, name, default):
        values = parse_qs(urlsplit(self.path).query).get(name)
        return int(values[0]) if values else default

    def serve(self):
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/ok":
            self.reply(200, b"hello", [("Content-Type", "text/plain"),
                                       ("X-Test", "a"), ("X-Test", "b")])
        elif path == "/binary":
            self.reply(200, bytes(range(256)) * 4, [("Content-Type", "application/octet-stream")])
        elif path == "/slow":
            global sleeping
            with sleeping_lock:
                sleeping += 1
            try:
                time.sleep(self.query("ms", 500) / 1000.0)
            finally:
                with sleeping_lock:
                    sleeping -= 1
            self.reply(200, b"slow")
        elif path == "/inflight":
            with sleeping_lock:
                n = sleeping
            self.reply(200, str(n).encode())
        elif path == "/echo":
            headers = [("X-Method", self.command)]
            for name, value in self.headers.items():
                if name.lower().startswith("x-"):
                    headers.append(("X-Echo-" + name, value))
            self.reply(200, body, headers)
        elif path == "/redirect":
            n = self.query("n", 0)
            where = "/ok" if n <= 0 else "/redirect?n=%d" % (n - 1)
            self.reply(302, b"", [("Location", where)])
        elif path == "/to":
            where = parse_qs(urlsplit(self.path).query).get("url", ["/ok"])[0]
            self.reply(302, b"", [("Location", where)])
        elif path == "/big":
            self.reply(200, b"x" * self.query("n", 0))
        elif path == "/status":
            self.reply(self.query("code", 200))
        else:
            self.reply(404, b"not found", [("Content-Type", "text/plain")])

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = serve


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--ready-fd", type=int, help="write a byte here once serving")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.daemon_threads = True
    server.socket.close()
    server.socket = socket.socket(fileno=args.fd)
    server.server_address = server.socket.getsockname()
    print("http_server: serving on %s:%d" % server.server_address, flush=True)
    if args.ready_fd is not None:
        os.write(args.ready_fd, b"r")
        os.close(args.ready_fd)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())

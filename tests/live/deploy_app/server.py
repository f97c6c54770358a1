"""The deploy test's application: one small threaded HTTP/1.1 server standing in for every
service the deploy live test and benchmark release (NAP-DMS backend, frontend, Gitea).

It listens on each port in APP_PORTS (the catalog's ports of those services) and answers
`GET /healthz` and `GET /api/healthz` (their health paths) and anything else with a JSON body
naming its version. APP_VERSION (baked into the image per tag) chooses the behaviour:

- `1.0.0`, `1.0.1`, ...: healthy, answers 200.
- `broken`: never healthy; every request gets 503.
- `fails-later`: healthy until it has answered APP_FAIL_AFTER requests that were not health
  checks, then 500 to everything, health checks included.

On SIGTERM it drains like a well-behaved service: the health paths answer 503, new requests are
still answered (a proxy may send some until it notices), every response carries `Connection:
close`, and the process exits once no request is in flight and nothing was asked for
APP_QUIET_S, or after APP_DRAIN_S at the latest.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("APP_VERSION", "1.0.0")
PORTS = [int(p) for p in os.environ.get("APP_PORTS", "8000,3000,8080").split(",")]
FAIL_AFTER = int(os.environ.get("APP_FAIL_AFTER", "600"))
DRAIN_S = float(os.environ.get("APP_DRAIN_S", "20"))
QUIET_S = float(os.environ.get("APP_QUIET_S", "0.5"))
HEALTH_PATHS = ("/healthz", "/api/healthz")


class State:
    """What every handler thread shares: counters, the drain flag, the live connections."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.served = 0
        """Non-health requests answered."""
        self.in_flight = 0
        self.last_request = time.monotonic()
        self.draining = threading.Event()
        self.idle: set[socket.socket] = set()
        """Keep-alive connections waiting for their next request."""

    def failing(self) -> bool:
        """Whether this (fails-later) version has turned bad."""
        return VERSION == "fails-later" and self.served >= FAIL_AFTER


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "deploy-app"

    def handle_one_request(self) -> None:
        self._counted = False
        with STATE.lock:
            STATE.idle.add(self.connection)
        try:
            if STATE.draining.is_set():
                self.close_connection = True
                return
            super().handle_one_request()
        finally:
            with STATE.lock:
                STATE.idle.discard(self.connection)
                if self._counted:
                    STATE.in_flight -= 1
                    STATE.last_request = time.monotonic()

    def parse_request(self) -> bool:
        # Called once the request line has arrived: from here on the request is in flight.
        with STATE.lock:
            STATE.idle.discard(self.connection)
            STATE.in_flight += 1
            STATE.last_request = time.monotonic()
        self._counted = True
        return super().parse_request()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        health = path in HEALTH_PATHS
        with STATE.lock:
            failing = STATE.failing()
            if not health and not failing:
                STATE.served += 1
        if VERSION == "broken":
            status = 503
        elif failing:
            status = 500
        elif health and STATE.draining.is_set():
            status = 503
        else:
            status = 200
        body = json.dumps(
            {"version": VERSION, "host": socket.gethostname(), "status": status}
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if STATE.draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def drain_and_exit(servers: list[Server]) -> None:
    """Stop accepting, finish what is in flight, close idle keep-alive connections, exit."""
    STATE.draining.set()
    for server in servers:
        server.shutdown()
        server.server_close()
    deadline = time.monotonic() + DRAIN_S
    while time.monotonic() < deadline:
        with STATE.lock:
            quiet = STATE.in_flight == 0 and time.monotonic() - STATE.last_request >= QUIET_S
            idle = list(STATE.idle)
        for connection in idle:
            # Only connections waiting between requests: a browser or proxy retries a request
            # that finds its reused connection closed before any response byte.
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if quiet:
            break
        time.sleep(0.05)
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    servers = [Server(("0.0.0.0", port), Handler) for port in PORTS]
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"deploy-app {VERSION} on {PORTS}", flush=True)
    stop.wait()
    drain_and_exit(servers)


if __name__ == "__main__":
    main()

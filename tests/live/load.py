"""A bounded load generator for the deploy live test and benchmark: browser-like clients hitting
one public site through the proxy, recording what each request got.

`Load(...)` starts `clients` threads; each holds one HTTP/1.1 keep-alive connection over TLS to
the proxy (SNI and Host the site's public name) and sends GETs back to back with a short pause.
Like a browser, a request whose *reused* connection was closed before any response byte is sent
again once on a new connection (`Sample.retried`); any other connection error, or a 5xx, is a
failure. Traffic goes only to a loopback or private address (the test engine's own networks).
It stops on `stop()` or by itself after `max_duration_s`, whichever comes first.

`mark(name)` brackets a phase (a switch, a rollback): `Summary` reports latency percentiles
inside the phases and outside them (steady state), and the longest time without a successful
response.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import math
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

CLIENTS = 50
"""At least the spec's load shape asks for (100 users with 2 s think time ~ 50 in flight)."""
MAX_DURATION_S = 600.0
REQUEST_TIMEOUT_S = 30.0
"""A held request (a stateful restart behind the proxy) may wait several seconds: that is slow,
not failed."""
THINK_S = 0.02
"""Each client's pause between two requests: keeps the two-core machine from being saturated by
the generator itself, so latencies measure the proxy and the app."""

_CLOSED_BEFORE_RESPONSE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)
"""What a keep-alive connection the server closed looks like before any response byte."""


@dataclass(frozen=True)
class Sample:
    """One request as its client saw it."""

    start: float
    """time.monotonic() when it was sent (the first attempt)."""
    end: float
    status: int | None
    """HTTP status, None when it got no response."""
    error: str | None
    version: str | None
    """The `version` the app's JSON body named."""
    retried: bool
    """Sent again after its reused connection was closed before any response byte."""

    @property
    def latency_s(self) -> float:
        return self.end - self.start

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500


@dataclass(frozen=True)
class Window:
    """A marked phase of the scenario, on the samples' clock (time.monotonic())."""

    name: str
    start: float
    end: float


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Summary:
    """What the users saw over a run, or over part of it."""

    samples: list[Sample]
    windows: list[Window] = field(default_factory=list)

    def between(self, start: float, end: float) -> Summary:
        """Only the requests sent in [start, end)."""
        return Summary([s for s in self.samples if start <= s.start < end], self.windows)

    def window(self, name: str) -> Summary:
        """The requests sent during every phase called `name`."""
        chosen = [w for w in self.windows if w.name == name]
        return Summary(
            [s for s in self.samples if any(w.start <= s.start < w.end for w in chosen)], chosen
        )

    def steady(self) -> Summary:
        """The requests whose time in flight overlaps no marked phase."""
        return Summary(
            [
                s
                for s in self.samples
                if not any(w.start <= s.end and s.start < w.end for w in self.windows)
            ]
        )

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def retried(self) -> int:
        return sum(s.retried for s in self.samples)

    def p99_ms(self) -> float | None:
        value = percentile([s.latency_s for s in self.samples], 99)
        return None if value is None else round(value * 1000, 1)

    def versions(self) -> dict[str, int]:
        """How many successful responses named each version."""
        counts: dict[str, int] = {}
        for sample in self.samples:
            if not sample.failed and sample.version is not None:
                counts[sample.version] = counts.get(sample.version, 0) + 1
        return counts

    def longest_gap_s(self, start: float | None = None, end: float | None = None) -> float:
        """The longest time in [start, end] (default: the samples' span) in which no request
        completed successfully."""
        if not self.samples:
            return 0.0
        start = min(s.start for s in self.samples) if start is None else start
        end = max(s.end for s in self.samples) if end is None else end
        ends = sorted(s.end for s in self.samples if not s.failed and start <= s.end <= end)
        points = [start, *ends, end]
        return round(max(b - a for a, b in zip(points, points[1:], strict=False)), 3)

    def describe(self) -> str:
        errors: dict[str, int] = {}
        for sample in self.failures:
            key = sample.error or f"HTTP {sample.status}"
            errors[key] = errors.get(key, 0) + 1
        return (
            f"{self.requests} requests, {self.failed} failed {errors or ''}, "
            f"{self.retried} retried on a closed keep-alive connection, "
            f"p99 {self.p99_ms()} ms, longest gap {self.longest_gap_s()} s, "
            f"versions {self.versions()}"
        )


class _TLSConnection(http.client.HTTPSConnection):
    """A TLS connection to an address, with the site's name as SNI (as a browser resolving the
    name to that address would send)."""

    def __init__(self, address: str, port: int, site: str, context: ssl.SSLContext, timeout):
        super().__init__(address, port, timeout=timeout, context=context)
        self._site = site

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._site)


class Load:
    """`clients` browser-like users of `site` (a public name) reached at `address`:`port`."""

    def __init__(
        self,
        address: str,
        port: int,
        site: str,
        *,
        path: str = "/",
        clients: int = CLIENTS,
        max_duration_s: float = MAX_DURATION_S,
        think_s: float = THINK_S,
        ca_pem: str | None = None,
    ):
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_private):
            raise ValueError(f"load goes to loopback or the engine's private networks only: {ip}")
        self.address, self.port, self.site, self.path = address, port, site, path
        self.clients, self.max_duration_s, self.think_s = clients, max_duration_s, think_s
        self._context = ssl.create_default_context()
        if ca_pem is None:
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE
        else:
            self._context.load_verify_locations(cadata=ca_pem)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.samples: list[Sample] = []
        self.windows: list[Window] = []
        self.started = 0.0
        self._wall_offset = time.time() - time.monotonic()

    def monotonic_of(self, moment: datetime) -> float:
        """`moment` (an aware datetime, e.g. an audit record's time) on the samples' clock."""
        return moment.timestamp() - self._wall_offset

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.started = time.monotonic()
        deadline = self.started + self.max_duration_s
        self._threads = [
            threading.Thread(target=self._client, args=(deadline,), daemon=True)
            for _ in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> Summary:
        """Stop every client (each finishes its request in flight) and summarise the run."""
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S + 5)
        return self.summary()

    def summary(self) -> Summary:
        with self._lock:
            return Summary(list(self.samples), list(self.windows))

    def since(self, start: float) -> Summary:
        """The requests sent since `start` (time.monotonic())."""
        return self.summary().between(start, float("inf"))

    @contextlib.contextmanager
    def mark(self, name: str, settle_s: float = 0.0) -> Iterator[None]:
        """Bracket a phase of the scenario called `name`; it lasts `settle_s` beyond the block
        (requests sent just after a proxy reload still meet its effects)."""
        start = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self.windows.append(Window(name, start, time.monotonic() + settle_s))

    def wait_until(self, check, timeout_s: float = 30) -> None:
        """Poll `check(summary since now)` until true, or raise TimeoutError."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if check(self.since(start)):
                return
            time.sleep(0.1)
        raise TimeoutError(f"load: condition not met within {timeout_s} s: {self.since(start)}")

    def _connection(self) -> _TLSConnection:
        return _TLSConnection(
            self.address, self.port, self.site, self._context, timeout=REQUEST_TIMEOUT_S
        )

    def _client(self, deadline: float) -> None:
        connection, used = self._connection(), False
        while not self._stop.is_set() and time.monotonic() < deadline:
            start = time.monotonic()
            retried = False
            status = version = error = None
            try:
                try:
                    status, version, close = self._get(connection)
                except _CLOSED_BEFORE_RESPONSE:
                    if not used:
                        raise
                    # The server closed the idle connection as the request went out.
                    connection.close()
                    connection, retried = self._connection(), True
                    status, version, close = self._get(connection)
                used = True
                if close:
                    connection.close()
                    connection, used = self._connection(), False
            except (OSError, http.client.HTTPException, ssl.SSLError) as failure:
                error = f"{type(failure).__name__}: {failure}"[:200]
                connection.close()
                connection, used = self._connection(), False
            sample = Sample(start, time.monotonic(), status, error, version, retried)
            with self._lock:
                self.samples.append(sample)
            self._stop.wait(self.think_s)
        connection.close()

    def _get(self, connection: _TLSConnection) -> tuple[int, str | None, bool]:
        connection.request("GET", self.path, headers={"Host": self.site})
        response = connection.getresponse()
        body = response.read()
        version = None
        if response.getheader("Content-Type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):
                version = json.loads(body).get("version")
        return response.status, version, response.will_close

"""The running Caddy, driven from inside its container: load a Caddyfile (a graceful, atomic
reload, never a restart), probe an upstream the way the proxy reaches it, and read what the proxy
is doing (requests in flight per upstream, responses by status class)."""

from __future__ import annotations

import json
import re
from collections import Counter

from napdms_ops.release.runtime import Runtime

NEXT_CADDYFILE = "/tmp/Caddyfile.next"
"""Where a switch writes the Caddyfile it loads (the proxy's /tmp is a tmpfs)."""
ADMIN = "http://127.0.0.1:2019"
"""Caddy's admin API inside the proxy container (`admin localhost:2019`)."""
METRICS = "http://127.0.0.1:2020/metrics"
"""Caddy's Prometheus metrics inside the proxy container (`components.catalog.proxy`)."""
PROBE_TIMEOUT_S = 3
DURATION_COUNT = "caddy_http_request_duration_seconds_count"
"""A counter per handler and status code: how many responses the proxy gave."""
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class ProxyError(Exception):
    """The proxy refused a command or answered nonsense; the message says which and why."""


def status_classes(metrics: str) -> Counter[str]:
    """Responses by status class (`2xx`, `5xx`, ...) in Caddy's Prometheus text: the reverse
    proxy handler's counts when there are any (a request passes through several handlers, each
    counted), else every handler's."""
    by_handler: dict[str, Counter[str]] = {}
    for line in metrics.splitlines():
        match = _SAMPLE.match(line)
        if not match or match.group(1) != DURATION_COUNT:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        code = labels.get("code", "")
        if not code[:1].isdigit():
            continue
        counts = by_handler.setdefault(labels.get("handler", ""), Counter())
        counts[f"{code[0]}xx"] += int(float(match.group(3)))
    if "reverse_proxy" in by_handler:
        return by_handler["reverse_proxy"]
    return sum(by_handler.values(), Counter())


class ProxyControl:
    """The proxy container `container`, reached through `runtime` (its host's endpoint)."""

    def __init__(self, runtime: Runtime, container: str):
        self.runtime = runtime
        self.container = container

    def load(self, caddyfile: str) -> None:
        """Make `caddyfile` the running config: Caddy adapts and starts it, then stops the old
        one gracefully (in-flight requests finish); a config it refuses changes nothing."""
        code, output = self.runtime.exec(
            self.container, ["sh", "-c", f"cat > {NEXT_CADDYFILE}"], stdin=caddyfile.encode()
        )
        if code != 0:
            raise ProxyError(f"{self.container}: cannot write {NEXT_CADDYFILE}: {_tail(output)}")
        code, output = self.runtime.exec(
            self.container,
            ["caddy", "reload", "--config", NEXT_CADDYFILE, "--adapter", "caddyfile"],
        )
        if code != 0:
            raise ProxyError(f"{self.container}: caddy reload refused the config: {_tail(output)}")

    def ready(self, url: str) -> bool:
        """Whether `url` answers 2xx (or a redirect followed to one) from inside the proxy."""
        # `timeout`, not wget's -T: busybox builds without that option exist (and crash on it).
        code, _ = self.runtime.exec(
            self.container,
            ["timeout", str(PROBE_TIMEOUT_S), "wget", "-qO-", url],
            timeout_s=PROBE_TIMEOUT_S + 5,
        )
        return code == 0

    def _get(self, url: str) -> str:
        code, output = self.runtime.exec(self.container, ["wget", "-qO-", url])
        if code != 0:
            raise ProxyError(f"{self.container}: GET {url} failed: {_tail(output)}")
        return output

    def upstreams(self) -> dict[str, int]:
        """Requests in flight per upstream address (`host:port`), from the admin API."""
        text = self._get(f"{ADMIN}/reverse_proxy/upstreams")
        try:
            listed = json.loads(text) or []
            return {entry["address"]: int(entry.get("num_requests", 0)) for entry in listed}
        except (ValueError, TypeError, KeyError) as error:
            raise ProxyError(
                f"{self.container}: the admin API's upstream list is not what Caddy returns "
                f"({error})"
            ) from None

    def responses(self) -> Counter[str]:
        """Responses the proxy has given since it started, by status class."""
        return status_classes(self._get(METRICS))


def _tail(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"

"""The gates a new version passes: healthy and ready before traffic reaches it, then a watch
window after, whose trouble rolls it back. Pure loops over a `Runtime` and a `Proxy`, paced by an
injectable clock so the unit tests take no time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from components.model.spec import ServiceSpec
from components.model.units import duration_seconds
from napdms_ops.release.runtime import ContainerState, Runtime


class Proxy(Protocol):
    """What the flows ask of the running proxy (`ProxyControl`)."""

    def load(self, caddyfile: str) -> None: ...

    def ready(self, url: str) -> bool: ...

    def upstreams(self) -> dict[str, int]: ...

    def responses(self) -> Counter[str]: ...


@dataclass(frozen=True)
class Windows:
    """How long each phase may take, and the error budget of the watch window."""

    drain_s: float = 10.0
    """In-flight requests of the old colour get this long to finish after the switch."""
    watch_s: float = 30.0
    """After the switch (or the restart), trouble in this window rolls back on its own."""
    check_s: float = 1.0
    """How often the watch window looks."""
    poll_s: float = 0.25
    """How often health, readiness and the drain are polled while waiting."""
    max_5xx_ratio: float = 0.05
    min_responses: int = 20
    """The 5xx ratio counts once the proxy has given this many responses since the switch."""
    failed_probes: int = 3
    """Consecutive failed readiness probes of one replica that roll back."""


@dataclass(frozen=True)
class Pace:
    """How the gates poll: the windows, and the clock and sleep they read and wait with."""

    windows: Windows
    clock: Callable[[], float]
    sleep: Callable[[float], None]


def health_timeout_s(spec: ServiceSpec) -> float:
    """The longest Docker may take to call a new container healthy or unhealthy: its start
    period, then `retries` checks each up to an interval plus its timeout apart."""
    health = spec.health
    return duration_seconds(health.start_period) + health.retries * (
        duration_seconds(health.interval) + duration_seconds(health.timeout)
    )


def probe_url(spec: ServiceSpec, replica: str) -> str | None:
    """Where the proxy checks that `replica` (its DNS name) answers: the service's http probe,
    else the root of its public port; None when it has neither."""
    if spec.probe is not None and spec.probe.kind == "http":
        return f"http://{replica}:{spec.probe.port}{spec.probe.path}"
    if spec.public is not None:
        return f"http://{replica}:{spec.public.port}/"
    return None


def wait_ready(
    pace: Pace,
    runtime: Runtime,
    proxy: Proxy | None,
    containers: list[str],
    urls: list[str | None],
    timeout_s: float,
) -> str | None:
    """None once every container (a replica, by its Docker name) is Docker-healthy and answers
    its probe from the proxy; else why not, at once when Docker calls one unhealthy, or when
    `timeout_s` is over."""
    started = pace.clock()
    while True:
        waited = pace.clock() - started
        problem = None
        for container, url in zip(containers, urls, strict=True):
            state = runtime.state(container)
            if state.health == "unhealthy":
                return f"{container} unhealthy after {waited:.0f} s: {state.health_output}"
            if not (state.running and state.health in ("healthy", None)):
                problem = f"{container} {describe(state)} after {waited:.0f} s"
                break
            if proxy is not None and url and not proxy.ready(url):
                problem = f"{url} not ready from the proxy after {waited:.0f} s"
                break
        if problem is None:
            return None
        if waited >= timeout_s:
            return problem
        pace.sleep(pace.windows.poll_s)


def watch(
    pace: Pace,
    runtime: Runtime,
    proxy: Proxy | None,
    containers: list[str],
    urls: list[str | None],
    restarts: Mapping[str, int],
    baseline: Counter[str],
    window_s: float,
) -> str | None:
    """Why the new version must go, if it shows trouble within `window_s`: a container not
    running, unhealthy or restarted, a replica failing its probe `failed_probes` times in a
    row, or the proxy's 5xx ratio since `baseline` over the budget."""
    windows = pace.windows
    failures = dict.fromkeys(containers, 0)
    started = pace.clock()
    while pace.clock() - started < window_s:
        for container, url in zip(containers, urls or [None] * len(containers), strict=True):
            state = runtime.state(container)
            if not state.running or state.health == "unhealthy":
                return f"{container} {describe(state)}"
            if state.restart_count > restarts[container]:
                return f"{container} restarted ({state.restart_count - restarts[container]}x)"
            if proxy is not None and url:
                failures[container] = 0 if proxy.ready(url) else failures[container] + 1
                if failures[container] >= windows.failed_probes:
                    return f"{url} failed {failures[container]} readiness probes in a row"
        if proxy is not None:
            since = proxy.responses() - baseline
            total, errors = sum(since.values()), since["5xx"]
            if total >= windows.min_responses and errors > windows.max_5xx_ratio * total:
                return (
                    f"5xx on {errors} of {total} responses since the switch "
                    f"({100 * errors / total:.1f} %, budget {100 * windows.max_5xx_ratio:g} %)"
                )
        pace.sleep(windows.check_s)
    return None


def describe(state: ContainerState) -> str:
    """A container's state in a few words, for a reason."""
    if not state.exists:
        return "missing"
    if not state.running:
        return f"not running (restarts: {state.restart_count})"
    if state.health == "unhealthy":
        return f"unhealthy: {state.health_output}"
    return state.health or "running"

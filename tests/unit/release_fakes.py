"""A small world for the release flows' unit tests: a stack engine whose `up` replaces the
containers whose configured image changed, a runtime over those containers, a proxy that records
what it loads, and a clock that only moves when the flows sleep."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from components.settings import load_stack, read_stack_file
from napdms_ops.release.deploy import Deployer
from napdms_ops.release.engine import ApplyError, with_changes
from napdms_ops.release.gates import Windows
from napdms_ops.release.journal import Journal
from napdms_ops.release.runtime import MISSING, ContainerState
from napdms_ops.release.versions import Version

EPOCH = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    """Seconds that pass only when something sleeps."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> float:
        return self.seconds

    def sleep(self, seconds: float) -> None:
        self.seconds += seconds
        time.sleep(0)  # let a worker thread (the `up` of a held deploy) run


class FakeEngine:
    """Stack config in memory; `up` makes the world match it."""

    def __init__(self, world: World, stack: str):
        self.world = world
        self.stack = stack
        self._values, self._secret_keys = read_stack_file(stack)
        self.fail_next_up: str | None = None

    def values(self) -> dict:
        return self._values

    def secret_keys(self) -> set[str]:
        return set(self._secret_keys)

    def set_values(self, changes) -> None:
        self.world.events.append(("set", dict(changes)))
        self._values = with_changes(self._values, changes)

    def up(self, message: str) -> None:
        self.world.events.append(("up", message))
        if self.fail_next_up:
            reason, self.fail_next_up = self.fail_next_up, None
            raise ApplyError(reason)
        self.world.converge()


class FakeRuntime:
    """The world's containers."""

    def __init__(self, world: World):
        self.world = world

    def state(self, container: str) -> ContainerState:
        state = self.world.containers.get(container, MISSING)
        since = (EPOCH + timedelta(seconds=self.world.clock.seconds)) - (state.started_at or EPOCH)
        if state.health == "healthy" and since.total_seconds() < self.world.health_delay_s:
            return replace(state, health="starting")
        return state

    def exec(self, container, argv, stdin=None, timeout_s=30.0):
        raise AssertionError("the flows reach containers through the proxy fake only")


class FakeProxy:
    """Records each Caddyfile it loads; answers readiness, upstreams and response counts."""

    def __init__(self, world: World):
        self.world = world
        self.loaded: list[str] = []
        self.unready: set[str] = set()
        self.in_flight: list[dict[str, int]] = []
        """Successive answers of `upstreams()`; the last one repeats."""
        self.counts: Counter[str] = Counter({"2xx": 1000})
        self.after_switch: Counter[str] = Counter()
        """Added to the counts once per `responses()` call after the first load."""

    def load(self, caddyfile: str) -> None:
        live = re.findall(r"reverse_proxy (napdms-backend-(\w+)-1):", caddyfile)
        self.world.events.append(("load", live[0][1] if live else None))
        self.loaded.append(caddyfile)

    def ready(self, url: str) -> bool:
        return url not in self.unready

    def upstreams(self) -> dict[str, int]:
        self.world.events.append(("upstreams",))
        if len(self.in_flight) > 1:
            return self.in_flight.pop(0)
        return self.in_flight[0] if self.in_flight else {}

    def responses(self) -> Counter[str]:
        self.world.events.append(("responses",))
        if self.loaded:
            self.counts += self.after_switch
        return Counter(self.counts)


class World:
    """One stack (dev by default) whose containers run what its config names."""

    def __init__(self, state_dir: Path, stack: str = "dev"):
        self.events: list[tuple] = []
        self.clock = Clock()
        self.containers: dict[str, ContainerState] = {}
        self.running: dict[str, str] = {}
        self.unhealthy: dict[str, str] = {}
        """Version -> the health check output of containers that run it (they never get well)."""
        self.snapshots: list[str] = []
        self.snapshot_fails: str | None = None
        self.silence_fails: str | None = None
        self.health_delay_s = 0.0
        """Seconds a new container reports `starting` before `healthy` (Docker's first check)."""
        self.engine = FakeEngine(self, stack)
        self.runtime = FakeRuntime(self)
        self.proxy = FakeProxy(self)
        self.journal = Journal(state_dir, stack, "ops@example.org", "0123abc")
        self.lock = threading.Lock()
        self.converge()
        self.events.clear()

    def stack(self):
        return load_stack(self.engine.stack, self.engine.values(), self.engine.secret_keys())

    def converge(self) -> None:
        stack = self.stack()
        for service, spec in stack.services.items():
            if spec.colours is not None:
                wanted = {
                    name: Version.of_ref(spec.colour_image_ref(colour), spec.image)
                    for colour in ("blue", "green")
                    for name in stack.context.colour_replica_names(service, colour)
                }
            else:
                version = Version(spec.tag, spec.digest)
                wanted = dict.fromkeys(stack.context.replica_names(service), version)
            for name, version in wanted.items():
                container = f"{stack.name_prefix}-{name}"
                if self.running.get(container) != str(version):
                    self.replace(container, version)

    def replace(self, container: str, version: Version) -> None:
        if container in self.running:
            self.events.append(("replace", container, str(version)))
        self.running[container] = str(version)
        bad = self.unhealthy.get(str(version))
        self.containers[container] = ContainerState(
            exists=True,
            running=True,
            health="unhealthy" if bad else "healthy",
            repo_digest=version.digest,
            started_at=EPOCH + timedelta(seconds=self.clock.seconds),
            health_output=bad or "ok",
        )

    def snapshot(self, stack: str, service: str) -> str:
        from napdms_ops.release.versions import ReleaseError

        self.events.append(("snapshot", service))
        if self.snapshot_fails:
            raise ReleaseError(self.snapshot_fails)
        self.snapshots.append(service)
        return f"run-{len(self.snapshots)}"

    def silence(self, stack: str, service: str, colour: str | None, seconds: float) -> str:
        self.events.append(("silence", (service, colour, seconds)))
        if self.silence_fails:
            raise RuntimeError(self.silence_fails)
        return "silence-1"

    def deployer(self, **windows: float) -> Deployer:
        return Deployer(
            self.engine,
            lambda endpoint: self.runtime,
            self.journal,
            proxy=lambda runtime, container: self.proxy,
            snapshot=self.snapshot,
            silence=self.silence,
            windows=Windows(**{"watch_s": 5.0, **windows}),
            clock=self.clock.now,
            sleep=self.clock.sleep,
        )

    def kinds(self) -> list[str]:
        """The events' kinds, in order."""
        return [event[0] for event in self.events]

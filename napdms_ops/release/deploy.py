"""The release flows: deploy a new image of one service (or every changed one), roll back.

Each service class gets the best strategy it allows (`strategy_of`):

- `blue-green` (stateless): the idle colour gets the new image (`up` changes only it), must turn
  Docker-healthy and answer its readiness probe from inside the proxy, then the proxy is switched
  to it by loading the Caddyfile the program renders for the new live colour (a graceful reload),
  the old colour drains, the stack config records the new live colour (`up`: no drift), and a
  watch window rolls back on its own when health, the probe or the proxy's 5xx ratio say so. The
  old colour stays running and idle, ready for an instant `rollback`.
- `held` (behind the proxy, one instance per volume): `up` replaces the container while the proxy
  holds and retries requests (`lb_try_duration`); the gap is measured, then watched.
- `snapshot` (databases, internal services): a backup snapshot first, then the health-gated
  replacement; the downtime is measured.

Every command holds the stack's lock and appends audit records, refusals and failures included.
The flows reach Pulumi only through `StackEngine` and Docker only through `Runtime`.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Protocol

from components.catalog import proxy as proxy_catalog
from components.model.image import check_digest, check_fixed_tag
from components.model.release import Colour
from components.model.spec import ServiceSpec
from components.model.units import duration_seconds
from components.settings import SettingsError, Stack, load_stack
from napdms_ops.release.engine import ApplyError, StackEngine, with_changes
from napdms_ops.release.journal import Journal, Result, Strategy
from napdms_ops.release.proxy import ProxyControl, ProxyError
from napdms_ops.release.runtime import ContainerState, DaemonError, Runtime

PINNED_ENVIRONMENTS = ("staging", "prod")
"""Where every image is pinned by digest, so a deploy names one."""
PROXY_SERVICE = "proxy"


class ReleaseError(Exception):
    """The command cannot run as asked; the message names stack, service and the fix."""


class Proxy(Protocol):
    """What the flows ask of the running proxy (`ProxyControl`)."""

    def load(self, caddyfile: str) -> None: ...

    def ready(self, url: str) -> bool: ...

    def upstreams(self) -> dict[str, int]: ...

    def responses(self) -> Counter[str]: ...


@dataclass(frozen=True)
class Version:
    """An image version as `--image` and the stack config name it: a tag and maybe a digest."""

    tag: str
    digest: str | None = None

    def __str__(self) -> str:
        return f"{self.tag}@{self.digest}" if self.digest else self.tag

    @classmethod
    def of_ref(cls, ref: str, repository: str) -> Version:
        """The version in `repository:tag[@digest]` (`ServiceSpec.image_ref`)."""
        tag, _, digest = ref.removeprefix(f"{repository}:").partition("@")
        return cls(tag, digest or None)


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
class Outcome:
    """What one deploy or rollback did."""

    stack: str
    service: str
    action: str
    strategy: Strategy
    result: Result
    reason: str | None
    from_version: str | None
    to_version: str | None
    from_colour: Colour | None = None
    to_colour: Colour | None = None
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: `ready`, `switch`, `drain`, `apply`, `watch`, `gap`, `rollback`..."""

    @property
    def exit_code(self) -> int:
        """0 when it did what was asked, 1 when refused or rolled back, 2 when it failed."""
        return {"ok": 0, "refused": 1, "rolled-back": 1}.get(self.result, 2)


class _Stop(Exception):
    """Ends a flow early with a result (a refusal or a rollback), after it is journalled."""

    def __init__(self, result: Result, reason: str):
        super().__init__(reason)
        self.result = result
        self.reason = reason


def strategy_of(spec: ServiceSpec) -> Strategy:
    """How `spec` deploys: blue-green (stateless), held (behind the proxy), else snapshot."""
    if spec.colours is not None:
        return "blue-green"
    return "held" if spec.public is not None else "snapshot"


def parse_image(stack: Stack, service: str, text: str, current: Version) -> Version:
    """`--image` as a version (`TAG`, `sha256:<hex>` keeping the current tag, or
    `TAG@sha256:<hex>`); raises `ReleaseError` naming stack, service and the fix."""
    tag, _, digest = text.partition("@") if "@" in text else (text, "", "")
    if text.startswith("sha256:"):
        tag, digest = current.tag, text
    where = f"{stack.name}: {service}: --image {text!r}"
    try:
        check_fixed_tag(tag)
        if digest:
            check_digest(digest)
    except ValueError as error:
        raise ReleaseError(
            f"{where}: {error}; give TAG, sha256:<64 hex> or TAG@sha256:<64 hex>"
        ) from None
    spec = stack.services[service]
    if spec.backup_hook is not None and spec.backup_hook.kind == "postgresql":
        old, new = _major(current.tag), _major(tag)
        if old != new:
            raise ReleaseError(
                f"{where}: PostgreSQL {old} -> {new} is a major upgrade, and a server does not "
                "start on another major version's data directory; follow the README's "
                '"Major PostgreSQL upgrade" (dump, new volume, restore), not a plain deploy'
            )
    if not digest and stack.settings.environment in PINNED_ENVIRONMENTS:
        raise ReleaseError(
            f"{where}: {stack.name} pins images by digest; give {tag}@sha256:<digest>, e.g. from "
            f"`docker buildx imagetools inspect {stack.services[service].image}:{tag}`"
        )
    return Version(tag, digest or None)


def _major(tag: str) -> str:
    """The major version a PostgreSQL image tag names (`17.6-bookworm` -> `17`)."""
    return re.split(r"[.-]", tag, maxsplit=1)[0]


def start_order(specs: Mapping[str, ServiceSpec]) -> list[str]:
    """Dependencies first, readers of other services' volumes last, otherwise catalog order: the
    order the program declares services in (`components.platform`)."""
    graph = {name: [d for d in spec.depends_on if d in specs] for name, spec in specs.items()}
    readers = [name for name, spec in specs.items() if spec.reads_backed_up_volumes]
    for reader in readers:
        graph[reader] += [name for name in specs if name not in readers]
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    rank = {name: index for index, name in enumerate(specs)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=rank.__getitem__)
        order += ready
        sorter.done(*ready)
    return order


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


Silence = Callable[[str, str, "Colour | None", float], str]
"""Silences the alerts of (stack, service, one colour of it or None for all, seconds): what a
deploy takes down on purpose (`napdms_ops.release.silence`); returns the silence's id."""
SILENCE_MARGIN_S = 60.0
"""A silence outlasts the health gate by this much: `up` itself takes time before the gate."""

Snapshot = Callable[[str, str], str | None]
"""Takes a backup snapshot of (stack, service) before it is replaced; returns its id, raises
`ReleaseError` when it fails."""


class Deployer:
    """Runs the release flows of one stack.

    `runtimes` gives the `Runtime` of a Docker endpoint (`Stack.endpoint_of`; None: DOCKER_HOST
    or the local socket); `proxy` wraps the proxy container (default `ProxyControl`); `snapshot`
    backs a service up first (the snapshot strategy); `silence` keeps the alerts of what a deploy
    replaces on purpose quiet; `clock`/`sleep` are injectable so tests
    take no time; `say` receives one line per step.
    """

    def __init__(
        self,
        engine: StackEngine,
        runtimes: Callable[[str | None], Runtime],
        journal: Journal,
        lock: AbstractContextManager | None = None,
        proxy_container: str | None = None,
        proxy: Callable[[Runtime, str], Proxy] = ProxyControl,
        snapshot: Snapshot | None = None,
        silence: Silence | None = None,
        windows: Windows = Windows(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        say: Callable[[str], None] = lambda line: None,
    ):
        self.engine = engine
        self.journal = journal
        self.windows = windows
        self._runtimes = runtimes
        self._runtime_cache: dict[str | None, Runtime] = {}
        self._lock = lock or nullcontext()
        self._proxy_container = proxy_container
        self._proxy_factory = proxy
        self._snapshot = snapshot
        self._silence_alerts = silence
        self._clock = clock
        self._sleep = sleep
        self._say = say

    # Public commands ---------------------------------------------------------------------------

    def deploy(self, service: str, image: str, watch_s: float | None = None) -> Outcome:
        """Deploy `image` (`TAG`, `sha256:...` or `TAG@sha256:...`) of `service`."""
        with self._lock:
            stack = self._stack()
            spec = self._spec(stack, service)
            if spec.colours is not None:
                current = Version.of_ref(spec.colour_image_ref(spec.colours.live), spec.image)
                target = parse_image(stack, service, image, current)
                return self._blue_green(stack, service, target, watch_s)
            current = Version(spec.tag, spec.digest)
            target = parse_image(stack, service, image, current)
            return self._replace(stack, service, "deploy", target, current, watch_s)

    def deploy_all(self, watch_s: float | None = None) -> list[Outcome]:
        """Deploy the version the stack file names of every service that does not run it yet,
        in dependency order; stops at the first that is not ok."""
        outcomes: list[Outcome] = []
        with self._lock:
            stack = self._stack()
            for service in start_order(stack.services):
                outcome = self._deploy_named(stack, service, watch_s)
                if outcome is None:
                    continue
                outcomes.append(outcome)
                if outcome.result != "ok":
                    break
                stack = self._stack()
        return outcomes

    def rollback(self, service: str) -> Outcome:
        """Back to the previous version: blue-green flips to the idle colour (nothing starts),
        the others get the image their last good deploy replaced."""
        with self._lock:
            stack = self._stack()
            spec = self._spec(stack, service)
            if spec.colours is not None:
                return self._flip_back(stack, service)
            last = self.journal.last(service, action="deploy", result="ok")
            if last is None or not last.from_digest:
                raise ReleaseError(
                    f"{stack.name}: {service}: no successful deploy of it in the audit trail "
                    f"({self.journal.path}), so no previous image is known; deploy the version "
                    f"you want: napdms-ops deploy {service} --image TAG@sha256:... "
                    f"--stack {stack.name}"
                )
            target, current = _version(last.from_digest), Version(spec.tag, spec.digest)
            if target == current:
                raise ReleaseError(
                    f"{stack.name}: {service}: already runs {current}, the image its last "
                    "deploy replaced; nothing to roll back"
                )
            return self._replace(stack, service, "rollback", target, current, 0.0)

    # Shared pieces -----------------------------------------------------------------------------

    def _silence(self, stack: Stack, service: str, colour: Colour | None) -> None:
        """Silence what is about to go down on purpose; a failure only says so (the deploy is
        worth more than a quiet pager)."""
        if self._silence_alerts is None:
            return
        seconds = 2 * health_timeout_s(stack.services[service]) + SILENCE_MARGIN_S
        try:
            silenced = self._silence_alerts(stack.name, service, colour, seconds)
        except Exception as error:  # noqa: BLE001 - any failure of the silence is only reported
            self._say(f"{service}: alerts not silenced ({error}); expect pages for it")
            return
        self._say(f"{service}: alerts silenced for {seconds:.0f} s ({silenced})")

    def _stack(self) -> Stack:
        try:
            return load_stack(self.engine.stack, self.engine.values(), self.engine.secret_keys())
        except SettingsError as error:
            raise ReleaseError("\n".join(error.lines)) from None

    def _spec(self, stack: Stack, service: str) -> ServiceSpec:
        if service not in stack.services:
            raise ReleaseError(
                f"{stack.name}: {service}: not a service of this stack; use one of: "
                f"{', '.join(stack.services)}"
            )
        return stack.services[service]

    def _runtime(self, stack: Stack, service: str) -> Runtime:
        endpoint = stack.endpoint_of(service)
        if endpoint not in self._runtime_cache:
            self._runtime_cache[endpoint] = self._runtimes(endpoint)
        return self._runtime_cache[endpoint]

    def _proxy(self, stack: Stack) -> Proxy:
        container = self._proxy_container or f"{stack.name_prefix}-{PROXY_SERVICE}-1"
        return self._proxy_factory(self._runtime(stack, PROXY_SERVICE), container)

    def _caddyfile(self, changes: Mapping[str, str]) -> str:
        """The Caddyfile the program renders once `changes` are in the stack config."""
        values = with_changes(self.engine.values(), changes)
        stack = load_stack(self.engine.stack, values, self.engine.secret_keys())
        return proxy_catalog.files(stack.context)["Caddyfile"]

    def _apply(self, message: str, changes: Mapping[str, str]) -> float:
        """Set `changes` and `up`; the seconds it took."""
        started = self._clock()
        self.engine.set_values(changes)
        self.engine.up(message)
        return self._clock() - started

    def _record(self, outcome: Outcome) -> Outcome:
        self.journal.append(
            action=outcome.action,
            service=outcome.service,
            strategy=outcome.strategy,
            from_digest=outcome.from_version,
            to_digest=outcome.to_version,
            from_colour=outcome.from_colour,
            to_colour=outcome.to_colour,
            duration_s=round(outcome.duration_s, 3),
            result=outcome.result,
            reason=outcome.reason,
        )
        return outcome

    def _switch_record(
        self,
        service: str,
        versions: tuple[str, str],
        colours: tuple[Colour, Colour],
        seconds: float,
        result: Result = "ok",
        reason: str | None = None,
    ) -> None:
        self.journal.append(
            action="switch",
            service=service,
            strategy="blue-green",
            from_digest=versions[0],
            to_digest=versions[1],
            from_colour=colours[0],
            to_colour=colours[1],
            duration_s=round(seconds, 3),
            result=result,
            reason=reason,
        )

    @contextmanager
    def _journalled(self, outcome: dict) -> Iterator[dict]:
        """Fill `outcome` (Outcome's fields) in the block; journal it however the block ends:
        `_Stop` sets its result, another error makes it `failed` (and propagates)."""
        started = self._clock()
        try:
            yield outcome
        except _Stop as stop:
            outcome.update(result=stop.result, reason=stop.reason)
        except ReleaseError as error:
            outcome.update(result="refused", reason=str(error))
        except (ApplyError, ProxyError, DaemonError) as error:
            reason = getattr(error, "reason", None) or str(error)
            outcome.update(result="failed", reason=reason)
        except BaseException as error:
            outcome.update(result="failed", reason=f"{type(error).__name__}: {error}")
            outcome["duration_s"] = self._clock() - started
            self._record(Outcome(**outcome))
            raise
        outcome["duration_s"] = self._clock() - started
        outcome.setdefault("result", "ok")
        outcome.setdefault("reason", None)

    # Blue-green --------------------------------------------------------------------------------

    def _blue_green(
        self,
        stack: Stack,
        service: str,
        target: Version,
        watch_s: float | None,
        live_version: Version | None = None,
    ) -> Outcome:
        """Deploy `target` to the idle colour and switch to it; `live_version` is what the live
        colour runs when its config no longer says (`deploy --all` after an edit)."""
        spec = stack.services[service]
        assert spec.colours is not None
        live, idle = spec.colours.live, spec.colours.idle
        live_version = live_version or Version.of_ref(spec.colour_image_ref(live), spec.image)
        idle_before = Version.of_ref(spec.colour_image_ref(idle), spec.image)
        runtime = self._runtime(stack, service)
        idle_names = stack.context.colour_replica_names(service, idle)
        base = f"services.{service}.colours"
        outcome: dict = dict(
            stack=stack.name,
            service=service,
            action="deploy",
            strategy="blue-green",
            from_version=str(live_version),
            to_version=str(target),
            from_colour=live,
            to_colour=idle,
            timings={},
        )
        with self._journalled(outcome):
            self._refuse_unpinning(
                stack, service, spec.colours.image(idle).digest or spec.digest, target
            )
            revert = self._revert_changes(
                f"{base}.{idle}", idle_before, target, runtime, stack, idle_names
            )
            # The live colour's image written out, so a later edit of the service's own tag can
            # never move it under live traffic.
            changes = {
                f"{base}.{live}.tag": live_version.tag,
                **({f"{base}.{live}.digest": live_version.digest} if live_version.digest else {}),
                f"{base}.{idle}.tag": target.tag,
                **({f"{base}.{idle}.digest": target.digest} if target.digest else {}),
            }
            self._silence(stack, service, idle)
            self._say(f"{service}: starting {idle} with {target} (live: {live} {live_version})")
            try:
                outcome["timings"]["start"] = self._apply(
                    f"napdms-ops deploy {service} {target}: start {idle}", changes
                )
            except ApplyError as error:
                self._undo(service, revert, f"start {idle}")
                raise _Stop("refused", f"{idle} did not start: {error.reason}") from None
            public = spec.public is not None
            proxy = self._proxy(stack) if public else None
            urls = [probe_url(spec, name) for name in idle_names]
            started = self._clock()
            problem = self._wait_ready(
                stack, runtime, proxy, idle_names, urls, health_timeout_s(spec)
            )
            outcome["timings"]["ready"] = self._clock() - started
            if problem:
                self._undo(service, revert, f"revert {idle}")
                raise _Stop("refused", f"{problem}; nothing switched, {live} keeps serving")
            self._say(f"{service}: {idle} healthy and ready")
            restarts = {
                name: runtime.state(self._docker(stack, name)).restart_count for name in idle_names
            }
            baseline = Counter[str]()
            if proxy is not None:
                baseline = proxy.responses()
                outcome["timings"]["switch"] = self._switch(
                    proxy, service, (live, idle), (live_version, target)
                )
                outcome["timings"]["drain"] = self._drain(proxy, service, live)
            outcome["timings"]["apply"] = self._apply(
                f"napdms-ops deploy {service} {target}: {idle} live",
                {f"{base}.live": idle, **_service_pin(service, target, spec)},
            )
            watch = self.windows.watch_s if watch_s is None else watch_s
            started = self._clock()
            problem = self._watch(
                stack, runtime, proxy, idle_names, urls, restarts, baseline, watch
            )
            outcome["timings"]["watch"] = self._clock() - started
            if problem:
                self._say(f"{service}: {problem}; rolling back to {live}")
                started = self._clock()
                if proxy is not None:
                    self._switch(proxy, service, (idle, live), (target, live_version), problem)
                outcome["timings"]["rollback"] = self._clock() - started
                self._apply(
                    f"napdms-ops deploy {service} {target}: rolled back to {live}",
                    {f"{base}.live": live, **revert, **_service_pin(service, live_version, spec)},
                )
                raise _Stop("rolled-back", f"{problem}; switched back to {live}")
        return self._record(Outcome(**outcome))

    def _flip_back(self, stack: Stack, service: str) -> Outcome:
        spec = stack.services[service]
        assert spec.colours is not None
        live, previous = spec.colours.live, spec.colours.idle
        runtime = self._runtime(stack, service)
        names = stack.context.colour_replica_names(service, previous)
        live_version = Version.of_ref(spec.colour_image_ref(live), spec.image)
        previous_version = Version.of_ref(spec.colour_image_ref(previous), spec.image)
        outcome: dict = dict(
            stack=stack.name,
            service=service,
            action="rollback",
            strategy="blue-green",
            from_version=str(live_version),
            to_version=str(previous_version),
            from_colour=live,
            to_colour=previous,
            timings={},
        )
        with self._journalled(outcome):
            proxy = self._proxy(stack) if spec.public is not None else None
            for name in names:
                state = runtime.state(self._docker(stack, name))
                url = probe_url(spec, name)
                if not (state.running and state.health in ("healthy", None)):
                    raise _Stop(
                        "refused",
                        f"{self._docker(stack, name)} is {_describe(state)}; nothing switched, "
                        f"{live} keeps serving (deploy a version instead)",
                    )
                if proxy is not None and url and not proxy.ready(url):
                    raise _Stop(
                        "refused",
                        f"{url} does not answer from the proxy; nothing switched, "
                        f"{live} keeps serving",
                    )
            if proxy is not None:
                outcome["timings"]["switch"] = self._switch(
                    proxy, service, (live, previous), (live_version, previous_version)
                )
                outcome["timings"]["drain"] = self._drain(proxy, service, live)
            outcome["timings"]["apply"] = self._apply(
                f"napdms-ops rollback {service}: {previous} live",
                {
                    f"services.{service}.colours.live": previous,
                    **_service_pin(service, previous_version, spec),
                },
            )
        return self._record(Outcome(**outcome))

    def _switch(
        self,
        proxy: Proxy,
        service: str,
        colours: tuple[Colour, Colour],
        versions: tuple[Version, Version],
        reason: str | None = None,
    ) -> float:
        """Route `service` to `colours[1]` by loading the program's Caddyfile for it."""
        caddyfile = self._caddyfile({f"services.{service}.colours.live": colours[1]})
        started = self._clock()
        try:
            proxy.load(caddyfile)
        except ProxyError as error:
            seconds = self._clock() - started
            self._switch_record(
                service,
                (str(versions[0]), str(versions[1])),
                colours,
                seconds,
                "failed",
                str(error),
            )
            raise
        seconds = self._clock() - started
        self._switch_record(
            service, (str(versions[0]), str(versions[1])), colours, seconds, "ok", reason
        )
        self._say(f"{service}: proxy switched {colours[0]} -> {colours[1]} in {seconds:.2f} s")
        return seconds

    def _drain(self, proxy: Proxy, service: str, colour: Colour) -> float:
        """Wait, within the drain window, until no request is in flight to `colour`."""
        started = self._clock()
        prefix = f"{service}-{colour}-"
        while True:
            busy = {a: n for a, n in proxy.upstreams().items() if a.startswith(prefix) and n > 0}
            waited = self._clock() - started
            if not busy:
                return waited
            if waited >= self.windows.drain_s:
                self._say(
                    f"{service}: drain window ({self.windows.drain_s:g} s) over with "
                    f"{sum(busy.values())} request(s) still in flight to {colour}"
                )
                return waited
            self._sleep(self.windows.poll_s)

    # Held and snapshot ------------------------------------------------------------------------

    def _deploy_named(self, stack: Stack, service: str, watch_s: float | None) -> Outcome | None:
        """`deploy --all` for one service: the version its stack file names, None when it
        runs that already."""
        spec = stack.services[service]
        named = Version(spec.tag, spec.digest)
        last = next(
            (
                r
                for r in reversed(self.journal.records())
                if r.service == service and r.result == "ok" and r.action != "switch"
            ),
            None,
        )
        if spec.colours is not None:
            live = spec.colours.live
            running = Version.of_ref(spec.colour_image_ref(live), spec.image)
            if spec.colours.image(live).tag is None:
                # The live colour follows the service's tag, which the operator just edited:
                # what it runs is only known from the audit trail.
                if last is None or last.to_colour != live or not last.to_digest:
                    self._say(
                        f"{service}: skipped, what its live colour {live} runs is unknown (it "
                        f"follows services.{service}.tag, and the audit trail has no deploy of "
                        f"it); deploy it by name: napdms-ops deploy {service} --image {named} "
                        f"--stack {stack.name}"
                    )
                    return None
                running = _version(last.to_digest)
            if running == named:
                return None
            return self._blue_green(stack, service, named, watch_s, running)
        # What runs now: the digest it was pulled by, else what the last good deploy or rollback
        # put there (the audit trail); a service with neither cannot be judged.
        running = self._runtime(stack, service).state(self._docker(stack, f"{service}-1"))
        if spec.digest and running.repo_digest == spec.digest:
            return None
        if last is None or not last.to_digest:
            self._say(
                f"{service}: skipped, its running version is unknown (no digest, no deploy in "
                f"the audit trail); deploy it by name: napdms-ops deploy {service} --image "
                f"{named} --stack {stack.name}"
            )
            return None
        if last.to_digest == str(named):
            return None
        return self._replace(
            stack, service, "deploy", named, _version(last.to_digest), watch_s, preset=True
        )

    def _replace(
        self,
        stack: Stack,
        service: str,
        action: str,
        target: Version,
        previous: Version | None,
        watch_s: float | None,
        preset: bool = False,
    ) -> Outcome:
        """Held or snapshot: replace `service`'s containers with `target` (already in the stack
        config when `preset`), health-gated and watched; back to `previous` on trouble."""
        spec = stack.services[service]
        strategy = strategy_of(spec)
        runtime = self._runtime(stack, service)
        names = stack.context.replica_names(service)
        outcome: dict = dict(
            stack=stack.name,
            service=service,
            action=action,
            strategy=strategy,
            from_version=str(previous) if previous else None,
            to_version=str(target),
            timings={},
        )
        key = f"services.{service}"
        with self._journalled(outcome):
            if not preset:
                self._refuse_unpinning(stack, service, spec.digest, target)
            revert = (
                self._revert_changes(key, previous, target, runtime, stack, names)
                if previous is not None
                else None
            )
            # Only data the backup holds is worth a snapshot (a prober or an exporter has none).
            backed_up = spec.backup_hook is not None or bool(spec.daily_volumes)
            if strategy == "snapshot" and backed_up and self._snapshot is not None:
                started = self._clock()
                self._say(f"{service}: backup snapshot first")
                try:
                    snapshot = self._snapshot(stack.name, service)
                except ReleaseError as error:
                    raise _Stop(
                        "refused", f"the backup snapshot failed ({error}); nothing changed"
                    ) from None
                outcome["timings"]["snapshot"] = self._clock() - started
                self._say(f"{service}: snapshot {snapshot or '(no id)'} taken")
            changes = {} if preset else {f"{key}.tag": target.tag}
            if target.digest and not preset:
                changes[f"{key}.digest"] = target.digest
            self._silence(stack, service, None)
            self._say(f"{service}: replacing with {target}")
            try:
                outcome["timings"]["gap"] = self._apply_measuring_gap(
                    runtime,
                    self._docker(stack, names[0]),
                    health_timeout_s(spec),
                    f"napdms-ops {action} {service} {target}",
                    changes,
                )
            except ApplyError as error:
                raise self._back(service, revert, error.reason) from None
            if strategy == "snapshot":
                outcome["timings"]["downtime"] = outcome["timings"].pop("gap")
            # A rollback goes back to what ran before; the watch is for new versions.
            watch = 0.0 if action == "rollback" else watch_s
            proxy = self._proxy(stack) if strategy == "held" else None
            urls = [probe_url(spec, name) for name in names] if proxy else []
            restarts = {n: runtime.state(self._docker(stack, n)).restart_count for n in names}
            baseline = proxy.responses() if proxy else Counter[str]()
            watch = self.windows.watch_s if watch is None else watch
            started = self._clock()
            problem = self._watch(stack, runtime, proxy, names, urls, restarts, baseline, watch)
            outcome["timings"]["watch"] = self._clock() - started
            if problem:
                raise self._back(service, revert, problem)
        return self._record(Outcome(**outcome))

    def _back(self, service: str, revert: Mapping[str, str] | None, problem: str) -> _Stop:
        """Put the previous image back (when known); the `_Stop` that says what happened."""
        if revert is None:
            return _Stop("failed", f"{problem}; no previous version known to roll back to")
        self._say(f"{service}: {problem}; rolling back")
        try:
            self._apply(f"napdms-ops: {service} rolled back", revert)
        except ApplyError as error:
            return _Stop("failed", f"{problem}; the rollback failed too: {error.reason}")
        return _Stop("rolled-back", f"{problem}; the previous image runs again")

    def _apply_measuring_gap(
        self,
        runtime: Runtime,
        container: str,
        timeout_s: float,
        message: str,
        changes: Mapping[str, str],
    ) -> float:
        """`up` with `changes` while watching `container`: seconds from the old container's stop
        to the new one's health (Docker's own verdict, awaited up to `timeout_s`). Raises
        `ApplyError` when `up` fails or the new container does not turn healthy."""
        old = runtime.state(container)
        failure: list[BaseException] = []
        done = threading.Event()

        def apply() -> None:
            try:
                if changes:
                    self.engine.set_values(changes)
                self.engine.up(message)
            except ApplyError as error:
                failure.append(ApplyError(f"up failed: {error.reason}"))
            except BaseException as error:  # handed to the caller's thread below
                failure.append(error)
            finally:
                done.set()

        worker = threading.Thread(target=apply, name=f"up {message}", daemon=True)
        stopped: float | None = None
        worker.start()
        while not done.is_set():
            state = runtime.state(container)
            if stopped is None and _replaced(old, state):
                stopped = self._clock()
            self._sleep(self.windows.poll_s)
        worker.join()
        if failure:
            raise failure[0]
        returned = self._clock()
        deadline = returned + timeout_s
        while True:
            state = runtime.state(container)
            if state.running and state.health in ("healthy", None):
                return self._clock() - (stopped if stopped is not None else returned)
            if state.health == "unhealthy" or self._clock() >= deadline:
                waited = self._clock() - returned
                raise ApplyError(f"{container} {_describe(state)} {waited:.0f} s after up")
            self._sleep(self.windows.poll_s)

    # Checks -----------------------------------------------------------------------------------

    def _docker(self, stack: Stack, replica: str) -> str:
        return f"{stack.name_prefix}-{replica}"

    def _refuse_unpinning(
        self, stack: Stack, service: str, pinned: str | None, target: Version
    ) -> None:
        if pinned and not target.digest:
            raise ReleaseError(
                f"{stack.name}: {service}: its image is pinned by digest in the stack config, "
                f"and a tag alone would keep that digest; give {target.tag}@sha256:<digest>"
            )

    def _revert_changes(
        self,
        key: str,
        before: Version,
        target: Version,
        runtime: Runtime,
        stack: Stack,
        names: list[str],
    ) -> dict[str, str]:
        """Config that puts `before` back after `target` was set under `key`. A digest the target
        sets cannot be unset again, so an unpinned `before` is pinned by the digest its running
        container was pulled by."""
        changes = {f"{key}.tag": before.tag}
        digest = before.digest
        if target.digest and not digest:
            digest = runtime.state(self._docker(stack, names[0])).repo_digest
            if digest is None:
                raise ReleaseError(
                    f"{stack.name}: {key.split('.')[1]}: its current image {before} has no "
                    "digest (in the config or from a registry pull), so a failed deploy could "
                    f"not put it back; pin it first: set {key}.digest in Pulumi.{stack.name}.yaml"
                )
        if digest:
            changes[f"{key}.digest"] = digest
        return changes

    def _undo(self, service: str, revert: Mapping[str, str], what: str) -> None:
        try:
            self._apply(f"napdms-ops: {service}: {what}", revert)
        except ApplyError as error:
            raise ApplyError(f"putting the previous image back failed: {error.reason}") from None

    def _wait_ready(
        self,
        stack: Stack,
        runtime: Runtime,
        proxy: Proxy | None,
        names: list[str],
        urls: list[str | None],
        timeout_s: float,
    ) -> str | None:
        """None once every replica is Docker-healthy and answers its probe from the proxy; else
        why not, at once when Docker calls one unhealthy, or when `timeout_s` is over."""
        started = self._clock()
        while True:
            waited = self._clock() - started
            problem = None
            for name, url in zip(names, urls, strict=True):
                container = self._docker(stack, name)
                state = runtime.state(container)
                if state.health == "unhealthy":
                    return f"{container} unhealthy after {waited:.0f} s: {state.health_output}"
                if not (state.running and state.health in ("healthy", None)):
                    problem = f"{container} {_describe(state)} after {waited:.0f} s"
                    break
                if proxy is not None and url and not proxy.ready(url):
                    problem = f"{url} not ready from the proxy after {waited:.0f} s"
                    break
            if problem is None:
                return None
            if waited >= timeout_s:
                return problem
            self._sleep(self.windows.poll_s)

    def _watch(
        self,
        stack: Stack,
        runtime: Runtime,
        proxy: Proxy | None,
        names: list[str],
        urls: list[str | None],
        restarts: Mapping[str, int],
        baseline: Counter[str],
        window_s: float,
    ) -> str | None:
        """Why the new version must go, if it shows trouble within `window_s`: a replica not
        running, unhealthy or restarted, a replica failing its probe `failed_probes` times in a
        row, or the proxy's 5xx ratio since `baseline` over the budget."""
        windows = self.windows
        failures = dict.fromkeys(names, 0)
        started = self._clock()
        while self._clock() - started < window_s:
            for name, url in zip(names, urls or [None] * len(names), strict=True):
                container = self._docker(stack, name)
                state = runtime.state(container)
                if not state.running or state.health == "unhealthy":
                    return f"{container} {_describe(state)}"
                if state.restart_count > restarts[name]:
                    return f"{container} restarted ({state.restart_count - restarts[name]}x)"
                if proxy is not None and url:
                    failures[name] = 0 if proxy.ready(url) else failures[name] + 1
                    if failures[name] >= windows.failed_probes:
                        return f"{url} failed {failures[name]} readiness probes in a row"
            if proxy is not None:
                since = proxy.responses() - baseline
                total, errors = sum(since.values()), since["5xx"]
                if total >= windows.min_responses and errors > windows.max_5xx_ratio * total:
                    return (
                        f"5xx on {errors} of {total} responses since the switch "
                        f"({100 * errors / total:.1f} %, budget {100 * windows.max_5xx_ratio:g} %)"
                    )
            self._sleep(windows.check_s)
        return None


def _service_pin(service: str, version: Version, spec: ServiceSpec) -> dict[str, str]:
    """Config that makes a coloured service's own tag (and digest) the live colour's version, so
    the stack file names what serves (`deploy --all` compares the two). Both colours have their
    own tag by then, so it moves no container. Nothing when the version has no digest but the
    service's has one: a colour's own tag equal to the service's would then inherit it."""
    if spec.digest and not version.digest:
        return {}
    pin = {f"services.{service}.tag": version.tag}
    if version.digest:
        pin[f"services.{service}.digest"] = version.digest
    return pin


def _version(text: str) -> Version:
    """A version as the audit trail records it (`TAG` or `TAG@sha256:...`)."""
    tag, _, digest = text.partition("@")
    return Version(tag, digest or None)


def _replaced(old: ContainerState, new: ContainerState) -> bool:
    """Whether the container `old` described has stopped or given way to another."""
    return not new.exists or not new.running or new.started_at != old.started_at


def _describe(state: ContainerState) -> str:
    if not state.exists:
        return "missing"
    if not state.running:
        return f"not running (restarts: {state.restart_count})"
    if state.health == "unhealthy":
        return f"unhealthy: {state.health_output}"
    return state.health or "running"

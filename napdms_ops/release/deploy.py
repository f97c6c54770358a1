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

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

from components.catalog import proxy as proxy_catalog
from components.model.release import Colour
from components.model.spec import ServiceSpec
from components.settings import SettingsError, Stack, load_stack
from napdms_ops.release.engine import ApplyError, StackEngine, with_changes
from napdms_ops.release.gates import (
    Pace,
    Proxy,
    Windows,
    describe,
    health_timeout_s,
    probe_url,
    wait_ready,
)
from napdms_ops.release.gates import watch as watch_window
from napdms_ops.release.journal import Journal, Result, Strategy
from napdms_ops.release.proxy import ProxyControl, ProxyError
from napdms_ops.release.runtime import ContainerState, DaemonError, Runtime
from napdms_ops.release.versions import ReleaseError, Version, parse_image, version_of

PROXY_SERVICE = "proxy"
DEFAULT_WINDOWS = Windows()


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
        windows: Windows = DEFAULT_WINDOWS,
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
        self._pace = Pace(windows, clock, sleep)
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
            for service in stack.start_order():
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
            target, current = version_of(last.from_digest), Version(spec.tag, spec.digest)
            if target == current:
                raise ReleaseError(
                    f"{stack.name}: {service}: already runs {current}, the image its last "
                    "deploy replaced; nothing to roll back"
                )
            return self._replace(stack, service, "rollback", target, current, 0.0)

    def switch_to_idle(
        self, stack: Stack, service: str, reason: str, watch_s: float | None = None
    ) -> str | None:
        """Route `service` to its idle colour, which another flow has just changed (a rotated
        secret's files), through the deploy's gates: once the idle colour is Docker-healthy and
        ready from inside the proxy, switch the proxy to it, drain the live colour and watch the
        idle one; trouble in the window switches back. The stack config is the caller's to
        change (it records the new live colour with its own changes); the switches are
        journalled with `reason`. Returns None when the idle colour serves now, else why not
        (nothing switched, or switched back). The caller holds the stack's lock."""
        spec = stack.services[service]
        assert spec.colours is not None
        live, idle = spec.colours.live, spec.colours.idle
        versions = {
            colour: Version.of_ref(spec.colour_image_ref(colour), spec.image)
            for colour in (live, idle)
        }
        runtime = self._runtime(stack, service)
        names = stack.context.colour_replica_names(service, idle)
        containers = [self._docker(stack, name) for name in names]
        urls = [probe_url(spec, name) for name in names]
        proxy = self._proxy(stack) if spec.public is not None else None
        problem = wait_ready(self._pace, runtime, proxy, containers, urls, health_timeout_s(spec))
        if problem:
            return f"{problem}; nothing switched, {live} keeps serving"
        self._say(f"{service}: {idle} healthy and ready")
        restarts = {c: runtime.state(c).restart_count for c in containers}
        baseline = Counter[str]()
        if proxy is not None:
            baseline = proxy.responses()
            self._switch(proxy, service, (live, idle), (versions[live], versions[idle]), reason)
            self._drain(proxy, service, live)
        window = self.windows.watch_s if watch_s is None else watch_s
        problem = watch_window(
            self._pace, runtime, proxy, containers, urls, restarts, baseline, window
        )
        if problem is None:
            return None
        self._say(f"{service}: {problem}; switching back to {live}")
        if proxy is not None:
            self._switch(proxy, service, (idle, live), (versions[idle], versions[live]), problem)
        return f"{problem}; switched back to {live}"

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
            containers = [self._docker(stack, name) for name in idle_names]
            problem = wait_ready(
                self._pace, runtime, proxy, containers, urls, health_timeout_s(spec)
            )
            outcome["timings"]["ready"] = self._clock() - started
            if problem:
                self._undo(service, revert, f"revert {idle}")
                raise _Stop("refused", f"{problem}; nothing switched, {live} keeps serving")
            self._say(f"{service}: {idle} healthy and ready")
            restarts = {c: runtime.state(c).restart_count for c in containers}
            baseline = Counter[str]()
            if proxy is not None:
                baseline = proxy.responses()
                outcome["timings"]["switch"] = self._switch(
                    proxy, service, (live, idle), (live_version, target)
                )
                outcome["timings"]["drain"] = self._drain(proxy, service, live)
            # Watched from the switch on; the stack file learns the new live colour only after
            # the window (an `up` takes long, and a bad version must not serve meanwhile). Until
            # then a proxy restart would bring back the old colour, which still runs.
            watch = self.windows.watch_s if watch_s is None else watch_s
            started = self._clock()
            problem = watch_window(
                self._pace, runtime, proxy, containers, urls, restarts, baseline, watch
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
                    {**revert, **_service_pin(service, live_version, spec)},
                )
                raise _Stop("rolled-back", f"{problem}; switched back to {live}")
            outcome["timings"]["apply"] = self._apply(
                f"napdms-ops deploy {service} {target}: {idle} live",
                {f"{base}.live": idle, **_service_pin(service, target, spec)},
            )
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
                        f"{self._docker(stack, name)} is {describe(state)}; nothing switched, "
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
                running = version_of(last.to_digest)
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
            stack, service, "deploy", named, version_of(last.to_digest), watch_s, preset=True
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
                    self._answers(stack, spec, names[0]) if strategy == "held" else None,
                )
            except ApplyError as error:
                raise self._back(service, revert, error.reason) from None
            if strategy == "snapshot":
                outcome["timings"]["downtime"] = outcome["timings"].pop("gap")
            # A rollback goes back to what ran before; the watch is for new versions.
            watch = 0.0 if action == "rollback" else watch_s
            proxy = self._proxy(stack) if strategy == "held" else None
            urls = [probe_url(spec, name) for name in names] if proxy else []
            containers = [self._docker(stack, name) for name in names]
            restarts = {c: runtime.state(c).restart_count for c in containers}
            baseline = proxy.responses() if proxy else Counter[str]()
            watch = self.windows.watch_s if watch is None else watch
            started = self._clock()
            problem = watch_window(
                self._pace, runtime, proxy, containers, urls, restarts, baseline, watch
            )
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
        answers: Callable[[], bool] | None = None,
    ) -> float:
        """`up` with `changes` while watching `container`: seconds from the old container's stop
        until the new one `answers` (its probe through the proxy: what users wait for), else
        until it is healthy (Docker's own verdict, whose first check may come a whole interval
        later). Raises `ApplyError` when `up` fails or the new container does not turn healthy
        within `timeout_s` after it."""
        old = runtime.state(container)
        failure: list[BaseException] = []
        done = threading.Event()
        answered: float | None = None

        def answering(stopped: float | None) -> float | None:
            if answered is None and stopped is not None and answers is not None and answers():
                return self._clock()
            return answered

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
            answered = answering(stopped)
            self._sleep(self.windows.poll_s)
        worker.join()
        if failure:
            raise failure[0]
        returned = self._clock()
        deadline = returned + timeout_s
        while True:
            state = runtime.state(container)
            answered = answering(stopped if stopped is not None else returned)
            if state.running and state.health in ("healthy", None):
                back = answered if answered is not None else self._clock()
                return back - (stopped if stopped is not None else returned)
            if state.health == "unhealthy" or self._clock() >= deadline:
                waited = self._clock() - returned
                raise ApplyError(f"{container} {describe(state)} {waited:.0f} s after up")
            self._sleep(self.windows.poll_s)

    def _answers(self, stack: Stack, spec: ServiceSpec, replica: str) -> Callable[[], bool]:
        """Whether `replica` answers its probe through the proxy now."""
        url = probe_url(spec, replica)
        proxy = self._proxy(stack)
        return lambda: url is not None and proxy.ready(url)

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


def _replaced(old: ContainerState, new: ContainerState) -> bool:
    """Whether the container `old` described has stopped or given way to another."""
    return not new.exists or not new.running or new.started_at != old.started_at

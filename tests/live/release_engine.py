"""A `StackEngine` for the live tests: the stack's config in memory, and `up()` that brings the
test engine's containers to what the real program declares for it, the way `pulumi up` would.

The Pulumi CLI cannot run here, so `ReplayEngine.up` runs the program under mocks
(`tests.program.run_program`) for the current config and compares every declared container and
command of the services under test with what the last `up` applied (Pulumi's state, kept here):

- a container whose declared inputs changed, or whose image changed, or that holds the id of a
  resource renewed in this `up`, is replaced: the old one stopped with its grace period and
  removed first (the program declares `delete_before_replace`), the new one created and waited
  for as the provider waits (healthy, or exited 0 for an init container); containers whose
  dependencies are done are handled in parallel, as the engine walks its graph;
- a command runs again when its `create` or environment changed or when a resource its
  `triggers` name (by the id the mocks give, `<name>-id`) was replaced or ran again in this
  `up`: its `create` string exactly as declared (`tests.live.replay.run_command`). That is how
  the proxy's new Caddyfile arrives: the init container is replaced, runs, and the declared
  `docker exec ... caddy reload` follows; the proxy container itself is not replaced.

Images: each declared `repo:tag@digest` runs the local test application image of that tag
(`tests.live.deploy_app`) for the application services, the stand-in of its repository for the
rest (proxy, init). A failure raises `ApplyError` with the container's state and log tail, and
leaves that container as the failed `up` left it (Pulumi would replace it on the next `up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.errors import NotFound

from components.catalog import CATALOG
from napdms_ops.release.deploy import Deployer, Windows
from napdms_ops.release.engine import ApplyError, with_changes, without_paths
from napdms_ops.release.journal import Journal
from napdms_ops.release.lock import StackLock
from napdms_ops.release.proxy import ProxyControl
from napdms_ops.release.runtime import DockerRuntime
from napdms_ops.trail.mirror import LocalMirror
from napdms_ops.workstation.state import commit
from policies.rules.from_pulumi import COMMAND
from tests.live.deploy_app import app_image
from tests.live.engine import engine_url, ensure_engine
from tests.live.load import Load
from tests.live.replay import prepare, run_command, run_container
from tests.live.standins import standin_image, upstream_repo_of
from tests.program import (
    OPERATOR_CONFIG,
    Declared,
    Program,
    labels_of,
    run_program,
    stack_config,
    unwrap,
)

REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"


@dataclass
class Applied:
    """What one `up` did."""

    message: str
    replaced: list[str] = field(default_factory=list)
    """Docker names of the containers created (or replaced), in order."""
    commands: list[str] = field(default_factory=list)
    """The `create` strings run, in order."""
    seconds: float = 0.0
    error: str | None = None


class ReplayEngine:
    """`StackEngine` for stack `stack` on the test engine, limited to `services` on `host`;
    `apps` are the services whose image is the test application."""

    def __init__(
        self,
        stack: str,
        values: Mapping[str, Any],
        secret_keys: Iterable[str],
        services: Iterable[str],
        apps: Iterable[str],
        client: docker.DockerClient,
        host: str = "local",
        free_host_ports: bool = False,
    ):
        self.stack = stack
        self.free_host_ports = free_host_ports
        """Publish each declared port on a host port the engine picks instead of the declared
        one: the proxy's 80/443 are the engine host's, which other stacks' tests (and other
        test processes) share."""
        self.services = tuple(services)
        self.apps = frozenset(apps)
        self.host = host
        self.client = client
        self.history: list[Applied] = []
        self._values = copy.deepcopy(dict(values))
        self._secret_keys = set(secret_keys)
        self._state: dict[str, Any] = {}
        """Resource name -> what the last `up`s applied: a container's inputs and image, a
        command's create, environment and interpreter (Pulumi's state)."""
        self._created = False
        self._program = ThreadPoolExecutor(1, "program", initializer=_own_event_loop)
        """Runs the program, always in this one thread: the Pulumi SDK wants an event loop of
        its thread, and a release flow may call `up` from any thread."""
        self._config_lock = threading.Lock()
        self._up_lock = threading.Lock()
        """One `up` at a time, as the Pulumi backend's own lock allows; config reads go on."""

    # StackEngine

    def values(self) -> dict[str, Any]:
        with self._config_lock:
            return copy.deepcopy(self._values)

    def secret_keys(self) -> set[str]:
        return set(self._secret_keys)

    def set_values(self, changes: Mapping[str, str]) -> None:
        with self._config_lock:
            self._values = with_changes(self._values, _as_pulumi_stores(changes))

    def remove_values(self, paths: Iterable[str]) -> None:
        with self._config_lock:
            self._values = without_paths(self._values, paths)

    def up(self, message: str) -> None:
        with self._up_lock:
            started = time.monotonic()
            applied = Applied(message)
            self.history.append(applied)
            try:
                program = self._program.submit(
                    run_program, self.stack, self.values(), tuple(self._secret_keys)
                ).result()
                self._apply(program, applied)
            except ApplyError as error:
                applied.error = error.reason
                raise
            except Exception as error:  # the program refused the config, a command failed
                applied.error = f"{type(error).__name__}: {error}"
                raise ApplyError(applied.error) from error
            finally:
                applied.seconds = time.monotonic() - started

    # What the tests inspect

    def container(self, docker_name: str) -> docker.models.containers.Container:
        """The live container called `docker_name`."""
        return self.client.containers.get(docker_name)

    def published(self, docker_name: str, internal: int) -> int:
        """The host port on which container `docker_name` publishes `internal`."""
        ports = self.container(docker_name).attrs["NetworkSettings"]["Ports"]
        return int(ports[f"{internal}/tcp"][0]["HostPort"])

    def remove(self) -> None:
        """Delete every container, volume and network of the stack on the engine (also what a
        failed first `up` left)."""
        self._program.shutdown(wait=False)
        prefix = f"napdms-{self.stack}-"
        for container in self.client.containers.list(
            all=True, filters={"label": f"napdms.stack={self.stack}"}
        ):
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        for volume in self.client.volumes.list():
            if volume.name.startswith(prefix):
                with contextlib.suppress(NotFound):
                    volume.remove(force=True)
        for network in self.client.networks.list():
            if network.name.startswith(prefix):
                with contextlib.suppress(NotFound):
                    network.remove()

    # Applying

    def _chosen(self, program: Program) -> list[Declared]:
        return [
            c
            for c in program.containers()
            if labels_of(c)["napdms.host"] == self.host
            and labels_of(c)["napdms.service"] in self.services
        ]

    def _apply(self, program: Program, applied: Applied) -> None:
        """Bring the containers and commands to what `program` declares, in waves as the engine
        walks its graph: every container whose dependencies are done in parallel (replaced when
        it changed), then every command that became ready."""
        chosen = self._chosen(program)
        if not self._created:
            prepare(program, chosen, self.client)
            self._created = True
        commands = program.of_type(COMMAND)
        known = {c.urn for c in chosen} | {c.urn for c in commands}
        done: set[str] = set()
        renewed: set[str] = set()
        """Resource names replaced or run again in this `up` (a new id, for triggers)."""
        pending = list(chosen)
        while pending:
            wave = [c for c in pending if all(u in done for u in c.dependencies if u in known)]
            if not wave:
                raise ApplyError(f"{[c.name for c in pending]} wait for commands that never ran")
            desired = {c.name: self._desired(program, c) for c in wave}
            changed = [
                c
                for c in wave
                if self._state.get(c.name) != desired[c.name]
                or _names_renewed(desired[c.name][0], renewed)
                or not self._exists(c.plain("name"))
            ]
            with ThreadPoolExecutor(max(1, len(changed))) as pool:
                results = {
                    c.name: pool.submit(self._replace, c, desired[c.name][1]) for c in changed
                }
            failures = [f.exception() for f in results.values() if f.exception() is not None]
            for declared in changed:
                if results[declared.name].exception() is None:
                    self._state[declared.name] = desired[declared.name]
                    applied.replaced.append(declared.plain("name"))
                    renewed.add(declared.name)
            if failures:
                raise failures[0]
            for declared in wave:
                done.add(declared.urn)
                pending.remove(declared)
            self._run_commands(commands, done, renewed, applied)

    def _run_commands(
        self, commands: list[Declared], done: set[str], renewed: set[str], applied: Applied
    ) -> None:
        progress = True
        while progress:
            progress = False
            for command in commands:
                if command.urn in done or not command.dependencies:
                    continue
                if not all(urn in done for urn in command.dependencies):
                    continue
                done.add(command.urn)
                progress = True
                triggers = [str(t) for t in command.plain("triggers") or []]
                inputs = _command_inputs(command)
                if self._state.get(command.name) == inputs and not any(
                    t.removesuffix("-id") in renewed for t in triggers
                ):
                    continue
                try:
                    run_command(command)
                except RuntimeError as error:
                    raise ApplyError(str(error)) from error
                self._state[command.name] = inputs
                applied.commands.append(command.plain("create"))
                renewed.add(command.name)

    def _replace(self, declared: Declared, image: str) -> None:
        """Delete before create, as the provider does for these containers: stop with the
        declared grace period (SIGTERM, then SIGKILL), remove, then create and wait."""
        name = declared.plain("name")
        try:
            old = self.client.containers.get(name)
        except NotFound:
            old = None
        if old is not None:
            grace = declared.plain("destroyGraceSeconds") or declared.plain("stopTimeout") or 0
            if old.status == "running":
                old.stop(timeout=int(grace))
            old.remove(force=True)
        try:
            run_container(self.client, self._as_created(declared), image=image)
        except RuntimeError as error:
            raise ApplyError(str(error)) from error

    def _as_created(self, declared: Declared) -> Declared:
        """What is created on the engine: as declared, but with free host ports if asked."""
        ports = declared.inputs.get("ports")
        if not (self.free_host_ports and ports):
            return declared
        free = [{**port, "external": 0} for port in unwrap(ports)]
        return dataclasses.replace(declared, inputs={**declared.inputs, "ports": free})

    def _exists(self, docker_name: str) -> bool:
        try:
            self.client.containers.get(docker_name)
        except NotFound:
            return False
        return True

    def _desired(self, program: Program, declared: Declared) -> tuple[Any, str]:
        """What a container must be: its declared inputs and the local image it runs."""
        return unwrap(declared.inputs), self._image(program, declared)

    def _image(self, program: Program, declared: Declared) -> str:
        """The local image for the `repo:tag@digest` the container's image resource pulls."""
        pulled = [
            program.by_urn(urn).plain("name")
            for urn in declared.dependencies
            if program.by_urn(urn).type == REMOTE_IMAGE
        ]
        ref = pulled[0] if pulled else declared.plain("image")
        if labels_of(declared)["napdms.service"] in self.apps and not _is_init(declared):
            return app_image(tag_of(ref), self.client)
        return standin_image(upstream_repo_of(ref), self.client)


def _as_pulumi_stores(changes: Mapping[str, str]) -> dict[str, Any]:
    """What `pulumi config set --path` stores: a whole number as a number, but one with a
    leading zero ("007") as text (a rotation counter, a colour's secret pin)."""
    return {
        path: int(value) if value.isdigit() and (value == "0" or value[0] != "0") else value
        for path, value in changes.items()
    }


def _own_event_loop() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


def tag_of(ref: str) -> str:
    """The tag of `repo:tag[@digest]`."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        raise ValueError(f"{ref} names no tag")
    return last.rsplit(":", 1)[1]


def _names_renewed(value: Any, renewed: set[str]) -> bool:
    """Whether `value` holds the id of a resource renewed in this `up` (the mocks' `<name>-id`):
    under the real engine that input would change too, and the container with it."""
    if isinstance(value, str):
        return value.endswith("-id") and value.removesuffix("-id") in renewed
    if isinstance(value, dict):
        return any(_names_renewed(v, renewed) for v in value.values())
    if isinstance(value, list):
        return any(_names_renewed(v, renewed) for v in value)
    return False


def _is_init(declared: Declared) -> bool:
    return labels_of(declared).get("napdms.role") == "init"


def _command_inputs(command: Declared) -> tuple[Any, Any, Any]:
    return command.plain("create"), command.plain("environment"), command.plain("interpreter")


def stack_values(services: Iterable[str], base: str = "dev") -> tuple[dict[str, Any], set[str]]:
    """Config values and secret keys for a test stack: stack `base`'s file with only `services`
    enabled, plus the operator's secrets (`OPERATOR_CONFIG`) as a real stack holds them."""
    values = stack_config(base)
    overrides = values.get("services", {})
    wanted = set(services)
    values["services"] = {
        name: {**overrides.get(name, {}), "enabled": name in wanted} for name in CATALOG
    }
    return {**values, **OPERATOR_CONFIG}, set(OPERATOR_CONFIG)


SERVICES = ("proxy", "napdms-backend", "gitea")
"""The services a release test runs: the proxy, a blue-green service, a service it holds."""
APPS = ("napdms-backend", "gitea")
"""Those that run the test application image."""
VERSIONS = ("1.0.0", "1.0.1", "broken", "fails-later")
PROXY_ADDRESS = "127.0.0.1"
"""Users reach the proxy's published port over loopback."""
HTTPS_PORT = 8443
"""The proxy's HTTPS port inside; the engine publishes it on a free host port."""
OPERATOR = "live-test@nap-dms.localhost"
SWITCH_SETTLE_S = 1.0
"""How long after a proxy reload a request still counts as `during the switch`: clients whose
idle keep-alive connection the reload closed reconnect within it."""


class _MarkedProxy:
    """The real `ProxyControl`, marking each config load as a `switch` phase of the load that
    runs at the time (so latencies around a switch are told apart from steady ones)."""

    def __init__(self, proxy: ProxyControl, rig: Rig):
        self._proxy, self._rig = proxy, rig

    def load(self, caddyfile: str) -> None:
        load = self._rig.current
        with load.mark("switch", settle_s=SWITCH_SETTLE_S) if load else contextlib.nullcontext():
            self._proxy.load(caddyfile)

    def ready(self, url: str) -> bool:
        return self._proxy.ready(url)

    def upstreams(self) -> dict[str, int]:
        return self._proxy.upstreams()

    def responses(self) -> Counter[str]:
        return self._proxy.responses()


@dataclass
class Rig:
    """A release test stack on the engine: `ReplayEngine`, its state dir (locks, audit trail),
    and the Deployers, loads and containers the tests use."""

    engine: ReplayEngine
    state_dir: Path
    windows: Windows
    current: Load | None = None
    """The load running now (its phases get the switches)."""

    @property
    def stack(self) -> str:
        return self.engine.stack

    @property
    def prefix(self) -> str:
        return f"napdms-{self.stack}"

    def runtime(self, endpoint: str | None = None) -> DockerRuntime:
        """Every service's endpoint is the test engine (the stack's hosts name none)."""
        return DockerRuntime(engine_url(), client=self.engine.client)

    def journal(self) -> Journal:
        return Journal(
            self.state_dir,
            self.stack,
            OPERATOR,
            commit(),
            mirror=LocalMirror(self.state_dir / "audit-mirror", self.stack),
        )

    def lock(self, operator: str = OPERATOR, command: str = "napdms-ops deploy") -> StackLock:
        return StackLock(self.state_dir, self.stack, operator, command)

    def deployer(
        self, operator: str = OPERATOR, say: Callable[[str], None] = lambda line: None
    ) -> Deployer:
        """The ops package's flows on this stack, with the real proxy, lock and journal."""
        return Deployer(
            self.engine,
            self.runtime,
            self.journal(),
            lock=self.lock(operator, f"napdms-ops deploy --stack {self.stack} (by {operator})"),
            proxy=lambda runtime, container: _MarkedProxy(ProxyControl(runtime, container), self),
            windows=self.windows,
            say=say,
        )

    def container(self, replica: str) -> docker.models.containers.Container:
        """The live container of `replica` (`proxy-1`, `napdms-backend-green-1`, ...)."""
        return self.engine.container(f"{self.prefix}-{replica}")

    def site(self, service: str) -> str:
        """The public name of `service`."""
        values = self.engine.values()
        return f"{CATALOG[service].public.subdomain}.{values['domain']}"

    @contextlib.contextmanager
    def load(self, service: str, **options) -> Iterator[Load]:
        """A load on `service`'s public site for the block; it is the `current` one."""
        port = self.engine.published(f"{self.prefix}-proxy-1", HTTPS_PORT)
        load = Load(PROXY_ADDRESS, port, self.site(service), **options)
        load.start()
        self.current = load
        try:
            load.wait_until(lambda summary: summary.requests >= load.clients, timeout_s=30)
            yield load
        finally:
            self.current = None
            load.stop()


@contextlib.contextmanager
def rig(stack: str, state_dir: Path, windows: Windows) -> Iterator[Rig]:
    """Stack `stack` (dev's settings, SERVICES only) created on the engine, removed afterwards."""
    client = ensure_engine()
    for version in VERSIONS:
        app_image(version, client)
    values, secret_keys = stack_values(SERVICES)
    engine = ReplayEngine(stack, values, secret_keys, SERVICES, APPS, client, free_host_ports=True)
    try:
        engine.up("create")
        yield Rig(engine, state_dir, windows)
    finally:
        engine.remove()

"""Replay what the program declares onto a real Docker engine, the way pulumi-docker would.

The Pulumi CLI and its providers cannot run here, so this translates the declared
`docker.Network`, `docker.Volume` and `docker.Container` inputs into the Docker API calls the
provider makes: same user, capabilities, read-only root, tmpfs, limits, ulimits, health check,
networks with aliases, volumes, and uploads copied through `/` of the created container before
it starts (or not at all with `start: false`). The declared `command:local:Command`s run as
pulumi-command runs them, each as soon as what it depends on exists: its `create` string, exactly
as declared, through `/bin/sh -c` with its environment and DOCKER_HOST set to the test engine
(the PIDs limits, the init containers' runs). Images are swapped for local stand-ins (no registry
here); nothing else changes.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import docker
from docker.types import LogConfig, Mount, Ulimit

from components.model.units import duration_seconds
from policies.rules.from_pulumi import COMMAND
from tests.live.engine import engine_url
from tests.live.standins import standin_image, upstream_repo_of
from tests.program import Declared, Program, labels_of

_NS = 1_000_000_000
_missing_ok = contextlib.suppress(docker.errors.NotFound)
"""Cleanup of something already gone is fine."""


@dataclass
class Replay:
    """What a replay created on the engine, so tests can inspect it and clean it up."""

    client: docker.DockerClient
    containers: dict[str, docker.models.containers.Container] = field(default_factory=dict)
    """Declared resource name -> live container."""
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    """Declared name of each command run, in order -> the `create` string it ran."""

    def remove(self) -> None:
        """Delete every container, volume and network this replay created."""
        for container in self.containers.values():
            with _missing_ok:
                container.remove(force=True, v=False)
        for name in self.volumes:
            with _missing_ok:
                self.client.volumes.get(name).remove(force=True)
        for name in self.networks:
            with _missing_ok:
                self.client.networks.get(name).remove()


def replay(
    program: Program, services: Iterable[str], client: docker.DockerClient, host: str = "local"
) -> Replay:
    """Create and start, in declared order, the containers of `services` on `host` and all they
    need (networks, volumes, init containers); wait like the provider: init containers to exit 0,
    services to be healthy. Raises with the container's log tail on any failure."""
    wanted = set(services)
    chosen = [
        c
        for c in program.containers()
        if labels_of(c)["napdms.host"] == host and labels_of(c)["napdms.service"] in wanted
    ]
    result = prepare(program, chosen, client)
    # Init containers first (the services depend on them), then services in dependency order;
    # after each, every command that now has all it depends on.
    commands = program.of_type(COMMAND)
    done: set[str] = set()
    for declared in sorted(chosen, key=lambda c: labels_of(c).get("napdms.role") != "init"):
        waiting = [c.name for c in commands if c.urn in declared.dependencies and c.urn not in done]
        if waiting:
            raise RuntimeError(f"{declared.name} depends on commands that have not run: {waiting}")
        result.containers[declared.name] = run_container(
            client, declared, _image_of(program, declared)
        )
        done.add(declared.urn)
        _run_ready_commands(commands, done, result)
    return result


def prepare(program: Program, chosen: list[Declared], client: docker.DockerClient) -> Replay:
    """Create the volumes and networks the `chosen` containers use, as declared (a stale one of
    the same name is removed first); the `Replay` that records them."""
    result = Replay(client)
    needed_volumes = {
        m["volumeName"] for c in chosen for m in c.plain("volumes", []) if "volumeName" in m
    }
    needed_volumes |= {
        m["source"] for c in chosen for m in c.plain("mounts", []) if m["type"] == "volume"
    }
    needed_networks = {n["name"] for c in chosen for n in c.plain("networksAdvanced", [])}
    for volume in program.of_type("docker:index/volume:Volume"):
        if volume.plain("name") in needed_volumes:
            _remove_stale_volume(client, volume.plain("name"), chosen)
            client.volumes.create(
                name=volume.plain("name"), driver=volume.plain("driver"), labels=labels_of(volume)
            )
            result.volumes.append(volume.plain("name"))
    for network in program.of_type("docker:index/network:Network"):
        if network.plain("name") in needed_networks:
            with _missing_ok:
                client.networks.get(network.plain("name")).remove()
            client.networks.create(
                network.plain("name"),
                driver=network.plain("driver"),
                internal=bool(network.plain("internal")),
                labels={i["label"]: i["value"] for i in network.plain("labels", [])},
            )
            result.networks.append(network.plain("name"))
    return result


def _run_ready_commands(commands: list[Declared], done: set[str], result: Replay) -> None:
    """Run, in declared order, each command whose dependencies have all been replayed, until none
    is left: as the engine would, once the resources it waits for exist."""
    progress = True
    while progress:
        progress = False
        for command in commands:
            if command.urn in done or not command.dependencies:
                continue
            if all(urn in done for urn in command.dependencies):
                result.commands[command.name] = run_command(command)
                done.add(command.urn)
                progress = True


def run_command(command: Declared) -> str:
    """Run a declared local command as pulumi-command does (its interpreter, default `/bin/sh
    -c`, the inherited environment plus its own), pointed at the test engine."""
    create = command.plain("create")
    interpreter = command.plain("interpreter") or ["/bin/sh", "-c"]
    environment = {**os.environ, **(command.plain("environment") or {})}
    environment["DOCKER_HOST"] = engine_url()
    finished = subprocess.run(
        [*interpreter, create],
        env=environment,
        cwd=command.plain("dir"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if finished.returncode != 0:
        raise RuntimeError(
            f"{command.name}: `{create}` exited {finished.returncode}: "
            f"{(finished.stdout + finished.stderr).strip()[-2000:]}"
        )
    return create


def _image_of(program: Program, declared: Declared) -> str:
    """The image reference a container runs: an image the program builds (`docker.Image`) gives
    the container only its id, so its declared `imageName` names the stand-in."""
    image = declared.plain("image")
    if not image.startswith("sha256:"):
        return image
    built = [
        program.by_urn(urn)
        for urn in declared.dependencies
        if program.by_urn(urn).type == "docker:index/image:Image"
    ]
    return built[0].plain("imageName") if built else image


def run_container(
    client: docker.DockerClient,
    declared: Declared,
    image_ref: str | None = None,
    image: str | None = None,
) -> docker.models.containers.Container:
    """Create (uploads included) and start one declared container as the provider does, and wait
    as it would: for a one-shot container to exit 0, for a service to be healthy. It runs the
    local `image` if given, else the stand-in of `image_ref`'s (or its declared image's)
    repository. Raises RuntimeError with the log tail when it fails."""
    api = client.api
    name = declared.plain("name")
    with _missing_ok:
        client.containers.get(name).remove(force=True)
    image = image or standin_image(upstream_repo_of(image_ref or declared.plain("image")), client)
    networks = declared.plain("networksAdvanced", [])
    first = networks[0] if networks else None
    ports = declared.plain("ports", [])
    health = declared.plain("healthcheck")
    created = api.create_container(
        image=image,
        name=name,
        hostname=declared.plain("hostname"),
        user=declared.plain("user"),
        command=declared.plain("command"),
        entrypoint=declared.plain("entrypoints"),
        environment=declared.plain("envs"),
        labels=labels_of(declared),
        ports=[(int(p["internal"]), p.get("protocol", "tcp")) for p in ports] or None,
        stop_timeout=int(declared.plain("stopTimeout", 10)),
        healthcheck=_health(health) if health else None,
        networking_config=(
            api.create_networking_config(
                {first["name"]: api.create_endpoint_config(aliases=first.get("aliases"))}
            )
            if first
            else None
        ),
        host_config=_host_config(api, declared),
    )
    container = client.containers.get(created["Id"])
    for network in networks[1:]:
        api.connect_container_to_network(
            container.id, network["name"], aliases=network.get("aliases")
        )
    uploads = declared.plain("uploads")
    if uploads:
        # As the provider does: one archive extracted at `/` of the created container.
        api.put_archive(container.id, "/", _archive(uploads))
    if declared.plain("start") is False:
        return container  # created only; a declared command starts it
    container.start()
    if declared.plain("attach"):
        status = container.wait(timeout=60)["StatusCode"]
        if status != 0:
            raise RuntimeError(f"{name} exited {status}: {_tail(container)}")
    elif declared.plain("wait"):
        _wait_healthy(container, int(declared.plain("waitTimeout", 60)))
    return container


def _host_config(api: docker.APIClient, declared: Declared) -> dict:
    caps = declared.plain("capabilities") or {}
    memory = declared.plain("memory")
    swap = declared.plain("memorySwap")
    restart = declared.plain("restart", "no")
    mounts = [
        Mount(
            target=m["containerPath"],
            source=m.get("volumeName") or m["hostPath"],
            type="volume" if "volumeName" in m else "bind",
            read_only=bool(m.get("readOnly")),
        )
        for m in declared.plain("volumes", [])
    ]
    mounts += [
        Mount(
            target=m["target"],
            source=m["source"],
            type=m["type"],
            read_only=bool(m.get("readOnly")),
            no_copy=bool((m.get("volumeOptions") or {}).get("noCopy")),
        )
        for m in declared.plain("mounts", [])
    ]
    networks = declared.plain("networksAdvanced", [])
    return api.create_host_config(
        cap_drop=caps.get("drops"),
        cap_add=caps.get("adds"),
        read_only=bool(declared.plain("readOnly")),
        tmpfs=declared.plain("tmpfs"),
        security_opt=declared.plain("securityOpts"),
        cgroupns=declared.plain("cgroupnsMode"),
        mem_limit=f"{int(memory)}m" if memory else None,
        memswap_limit=f"{int(swap)}m" if swap else None,
        nano_cpus=int(float(declared.plain("cpus")) * _NS) if declared.plain("cpus") else None,
        ulimits=[
            Ulimit(name=u["name"], soft=int(u["soft"]), hard=int(u["hard"]))
            for u in declared.plain("ulimits", [])
        ],
        restart_policy={
            "Name": restart,
            "MaximumRetryCount": int(declared.plain("maxRetryCount", 0)),
        }
        if restart != "no"
        else None,
        log_config=LogConfig(
            type=declared.plain("logDriver", "json-file"), config=declared.plain("logOpts") or {}
        ),
        mounts=mounts or None,
        port_bindings={
            f"{int(p['internal'])}/{p.get('protocol', 'tcp')}": (p["ip"], int(p["external"]))
            for p in declared.plain("ports", [])
        }
        or None,
        network_mode=declared.plain("networkMode") or (networks[0]["name"] if networks else None),
    )


def _health(health: dict) -> dict:
    return {
        "test": health["tests"],
        "interval": int(duration_seconds(health["interval"]) * _NS),
        "timeout": int(duration_seconds(health["timeout"]) * _NS),
        "retries": int(health["retries"]),
        "start_period": int(duration_seconds(health["startPeriod"]) * _NS),
    }


def _archive(uploads: list[dict]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for upload in uploads:
            data = upload["content"].encode()
            info = tarfile.TarInfo(upload["file"].lstrip("/"))
            info.size = len(data)
            info.mode = (
                int(upload["permissions"], 8)
                if upload.get("permissions")
                else (0o744 if upload.get("executable") else 0o644)
            )
            info.uid = int(upload.get("owner") or 0)
            info.gid = int(upload.get("group") or 0)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _wait_healthy(container, timeout_s: int) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        status = state.get("Health", {}).get("Status")
        if status == "healthy":
            return
        if status == "unhealthy" or state["Status"] in ("exited", "dead"):
            break
        time.sleep(0.5)
    state = container.attrs["State"]
    raise RuntimeError(
        f"{container.name} is not healthy ({state.get('Health', {}).get('Status')}, "
        f"{state['Status']}): {_tail(container)}"
    )


def _tail(container) -> str:
    return container.logs(tail=30).decode(errors="replace")


def _remove_stale_volume(client: docker.DockerClient, name: str, chosen: list[Declared]) -> None:
    for declared in chosen:
        with _missing_ok:
            client.containers.get(declared.plain("name")).remove(force=True)
    with _missing_ok:
        client.volumes.get(name).remove(force=True)

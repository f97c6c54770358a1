"""Shared fixtures of the live tests: the Docker engine, the backup agent's stand-in image, the
ASUSTOR (a network namespace with sshd), an S3 endpoint (moto) and PostgreSQL with generated data.

    docker_client                 session   the engine (tests/live/engine.ensure_engine)
    agent_image                   session   tag of the napdms/backup-agent stand-in
    asustor                       function  Asustor: fresh namespace, keys and data_dir per test
    s3_server                     function  S3Server inside that test's asustor
    agent_network                 module    a non-internal bridge network for agent containers
    postgres_with_data            module    PostgresServer on agent_network, filled with 100k rows
    run_agent                     function  run(argv, ...) -> (exit code, output) in the agent image

Every fixture removes what it made, also when the test fails. A test module may define its own
fixture of the same name (e.g. a module-scoped `asustor`) to override these.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable

import docker
import pytest
from docker.errors import NotFound

from tests.live.asustor import CONTAINER_KEY_FILE, CONTAINER_KNOWN_HOSTS_FILE, Asustor
from tests.live.engine import ensure_engine
from tests.live.postgres_data import start_postgres
from tests.live.s3server import S3Server
from tests.live.standins import standin_image

AGENT_TIMEOUT_S = 300


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("network namespaces, veth pairs and tmpfs mounts need root")


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return ensure_engine()


@pytest.fixture(scope="session")
def agent_image(docker_client) -> str:
    """The backup agent stand-in (built once; later a napdms_ops/backup change rebuilds its last
    layer)."""
    return standin_image("napdms/backup-agent", docker_client)


@pytest.fixture
def asustor():
    """The ASUSTOR for one test: sshd in a fresh network namespace (about 0.1 s to set up)."""
    _needs_root()
    box = Asustor()
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def s3_server(asustor):
    """moto's S3 server in the test's asustor namespace, at s3_server.endpoint_url."""
    server = S3Server(asustor)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def agent_network(docker_client) -> str:
    """Name of a user-defined bridge network (not internal: it must reach the ASUSTOR via the
    host)."""
    name = f"napdms-live-backup-{secrets.token_hex(4)}"
    network = docker_client.networks.create(
        name, driver="bridge", labels={"napdms.test": "live-backup"}
    )
    try:
        yield name
    finally:
        try:
            network.reload()
            for container in network.containers:
                network.disconnect(container, force=True)
            network.remove()
        except NotFound:
            pass


@pytest.fixture(scope="module")
def postgres_with_data(docker_client, agent_network):
    """PostgreSQL (the stand-in) on agent_network as `postgres`, database napdms filled with
    generated data (documents: 100k rows with text, bytea and indexes; folders; audit_log; a
    sequence). Tests that change the data should use their own database or start_postgres()."""
    server = start_postgres(docker_client, agent_network)
    try:
        server.fill(rows=100_000)
        yield server
    finally:
        server.remove()


@pytest.fixture
def run_agent(docker_client, agent_image, agent_network) -> Callable[..., tuple[int, str]]:
    """run(argv, *, entrypoint=None, env=None, volumes=None, asustor=None, timeout_s=300, **options)
    -> (exit code, combined output): a one-shot container of the agent stand-in on agent_network.

    argv runs as given (entrypoint defaults to the image's, `python3 -m napdms_ops.backup`; pass
    entrypoint=[] to run a plain command). With asustor=..., its key and known_hosts are mounted
    read-only at CONTAINER_KEY_FILE and CONTAINER_KNOWN_HOSTS_FILE. /tmp is a tmpfs, as in
    production. Further keyword arguments go to docker's containers.create."""
    created = []

    def run(
        argv,
        *,
        entrypoint: list[str] | None = None,
        env: dict[str, str] | None = None,
        volumes: dict | None = None,
        asustor=None,
        timeout_s: float = AGENT_TIMEOUT_S,
        **options,
    ) -> tuple[int, str]:
        mounts = dict(volumes or {})
        if asustor is not None:
            mounts[str(asustor.key_file)] = {"bind": CONTAINER_KEY_FILE, "mode": "ro"}
            mounts[str(asustor.known_hosts_file)] = {
                "bind": CONTAINER_KNOWN_HOSTS_FILE,
                "mode": "ro",
            }
        options.setdefault("tmpfs", {"/tmp": "rw,size=256m"})
        container = docker_client.containers.create(
            agent_image,
            list(argv),
            entrypoint=entrypoint,
            environment=env or {},
            volumes=mounts,
            network=agent_network,
            name=f"napdms-live-agent-{secrets.token_hex(4)}",
            **options,
        )
        created.append(container)
        container.start()
        try:
            status = container.wait(timeout=timeout_s)["StatusCode"]
        except Exception as exc:  # requests' ReadTimeout, among others
            container.kill()
            raise AssertionError(
                "agent container {} did not finish within {:.0f} s: {}\n{}".format(
                    argv, timeout_s, exc, container.logs(tail=40).decode(errors="replace")
                )
            ) from exc
        return status, container.logs().decode(errors="replace")

    yield run
    for container in created:
        try:
            container.remove(force=True, v=True)
        except NotFound:
            pass

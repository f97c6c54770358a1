"""Generated config files with a `/` in their name (Grafana's provisioning/datasources/...,
provisioning/dashboards/napdms/...) reach the service as declared: the dev program's Grafana init
container, replayed onto the engine (uploads through `/` as the provider does, then its declared
run command), leaves every nested file readable by the service user on the read-only mount, with
the modes and owner of a flat one, also when a later deploy runs it again over the last run's
files. Grafana itself has no stand-in here: a busybox reader takes its place, as its user.
"""

from __future__ import annotations

import hashlib
import os
import subprocess

import docker
import pytest

from components.catalog import generated_files
from components.catalog.grafana import SPEC
from components.settings import load_stack
from policies.rules.from_pulumi import COMMAND
from policies.rules.names import INIT_ROLE, ROLE_LABEL, SERVICE_LABEL
from tests.live.engine import engine_url, ensure_engine
from tests.live.replay import replay
from tests.live.standins import standin_image
from tests.program import Program, labels_of, run_program, stack_config

SERVICE = SPEC.name


def _without_replicas(program: Program) -> Program:
    """The program with the service's own containers left out: its init container stays."""
    replicas = {c.urn for c in program.services() if labels_of(c)[SERVICE_LABEL] == SERVICE}
    return Program(
        program.stack, [r for r in program.resources if r.urn not in replicas], program.outputs
    )


@pytest.fixture(scope="module")
def initialised():
    """(the replay, the config volume's name, the generated files) once the init ran."""
    program = _without_replicas(run_program("dev"))
    client = ensure_engine()
    done = replay(program, [SERVICE], client)
    try:
        init = next(
            c
            for c in program.containers()
            if labels_of(c) == {**labels_of(c), SERVICE_LABEL: SERVICE, ROLE_LABEL: INIT_ROLE}
        )
        volume = next(
            m["volumeName"] for m in init.plain("volumes") if m["containerPath"] == SPEC.config_dir
        )
        context = load_stack("dev", stack_config("dev"), set()).context
        rerun = next(c for c in program.of_type(COMMAND) if c.name == f"{init.name}-run")
        yield done, volume, generated_files(SERVICE, context), rerun.plain("create")
    finally:
        done.remove()


def _as_service_user(client, volume: str, script: str) -> str:
    """Run `script` as the service's uid:gid, no capability, the volume mounted read-only where
    the service mounts it."""
    output = client.containers.run(
        standin_image("docker.io/library/busybox", client),
        ["sh", "-c", script],
        user=SPEC.user,
        cap_drop=["ALL"],
        network_mode="none",
        mounts=[docker.types.Mount(SPEC.config_dir, volume, read_only=True)],
        remove=True,
    )
    return output.decode()


def _modes(client, volume: str) -> dict[str, str]:
    """Path below the config dir -> `<mode> <uid>:<gid>`, for the folder and all it holds."""
    listing = _as_service_user(
        client, volume, f"find {SPEC.config_dir} -exec stat -c '%n %a %u:%g' {{}} +"
    )
    return {
        path.removeprefix(SPEC.config_dir).lstrip("/"): rest
        for path, _, rest in (line.partition(" ") for line in listing.splitlines())
    }


def _expected_modes(files: dict[str, str]) -> dict[str, str]:
    owner = f"{SPEC.uid}:{SPEC.gid}"
    folders = {""} | {
        "/".join(name.split("/")[:depth])
        for name in files
        for depth in range(1, name.count("/") + 1)
    }
    return {**{f: f"500 {owner}" for f in folders}, **{n: f"400 {owner}" for n in files}}


def test_nested_files_hold_the_generated_content_for_the_service_user(initialised):
    done, volume, files, _ = initialised
    assert any("/" in name for name in files), "grafana has no nested file to check"
    # Digests, not contents: a container's output comes back through its log, which need not
    # hold a 200 kB dashboard whole.
    listing = _as_service_user(
        done.client, volume, f"cd {SPEC.config_dir} && sha256sum {' '.join(files)}"
    )
    read = {name: digest for digest, name in (line.split() for line in listing.splitlines())}
    assert read == {
        name: hashlib.sha256(content.encode()).hexdigest() for name, content in files.items()
    }


def test_nested_files_and_folders_get_the_modes_and_owner_of_flat_ones(initialised):
    done, volume, files, _ = initialised
    assert _modes(done.client, volume) == _expected_modes(files)


def test_a_later_deploy_runs_the_init_again_over_the_last_runs_files(initialised):
    done, volume, files, run_command = initialised
    # The last run left 0500 folders of the service user, which root without DAC_READ_SEARCH
    # cannot read: the declared run command, run again as `up` would after a config change.
    again = subprocess.run(
        ["/bin/sh", "-c", run_command],
        env={**os.environ, "DOCKER_HOST": engine_url()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, f"second init run failed: {again.stdout}{again.stderr}"
    assert _modes(done.client, volume) == _expected_modes(files)

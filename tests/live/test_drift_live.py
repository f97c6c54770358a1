"""The live view of drift on a real engine: the dev stack's Redis and blackbox exporter (init
containers, PIDs commands, volumes, internal networks), replayed as declared under the stack name
`driftlive`, report no drift; each hand change an operator could make is then reported with its
class: a container run by hand with the stack's label or name, a changed user, a stopped
service, a swapped image, an added capability, a raised PIDs or memory limit (major), an added
environment variable (minor)."""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from napdms_ops.drift.live import live_view
from policies.rules.from_pulumi import COMMAND
from tests.live.engine import engine_url, ensure_engine
from tests.live.replay import Replay, replay, run_command, run_container
from tests.live.standins import standin_image, upstream_repo_of
from tests.program import OPERATOR_CONFIG, Program, labels_of, run_program, stack_config

STACK = "driftlive"
SERVICES = ("redis", "blackbox")
TARGET = "local-blackbox-1"
"""The declared container the tests change (and restore as declared afterwards)."""
TARGET_NAME = f"napdms-{STACK}-blackbox-1"


def _replayed_part(program: Program, done: Replay) -> Program:
    """What the program declares for the replayed services only: the rest of the dev stack is
    not on the engine, and would only be reported missing."""
    kept = {c.urn for c in program.containers() if labels_of(c)["napdms.service"] in SERVICES}
    names = {
        "docker:index/volume:Volume": done.volumes,
        "docker:index/network:Network": done.networks,
    }
    return Program(
        program.stack,
        [
            r
            for r in program.resources
            if not (r.type == "docker:index/container:Container" and r.urn not in kept)
            and not (r.type in names and r.plain("name") not in names[r.type])
        ],
        program.outputs,
    )


@pytest.fixture(scope="module")
def stack():
    """(the declared part that was replayed, the replay, the engine) for stack `driftlive`."""
    client = ensure_engine()
    program = run_program(STACK, {**stack_config("dev"), **OPERATOR_CONFIG}, tuple(OPERATOR_CONFIG))
    done = replay(program, SERVICES, client)
    try:
        yield _replayed_part(program, done), done, client
    finally:
        done.remove()


def _standin(client):
    return lambda ref: standin_image(upstream_repo_of(ref), client)


def findings(stack) -> list[tuple[str, str, str]]:
    """(subject, field, severity) of each finding of the live view of the engine."""
    program, _done, client = stack
    view = live_view(STACK, {"local": client}, _standin(client), program=program)
    return [(f.subject, f.field, f.severity) for f in view.findings]


def _declared(program: Program, name: str):
    return next(c for c in program.containers() if c.name == name)


def _recreate(stack, image: str | None = None, **inputs) -> None:
    """Recreate the target as a hand change would: its declared inputs with `inputs` changed
    (not waiting for health), then its declared PIDs command, so only `inputs` differ."""
    program, done, client = stack
    declared = _declared(program, TARGET)
    changed = dataclasses.replace(declared, inputs={**declared.inputs, **inputs, "wait": False})
    done.containers[TARGET] = run_container(client, changed, image=image)
    _run_pids_command(program)


def _run_pids_command(program: Program) -> None:
    run_command(next(c for c in program.of_type(COMMAND) if c.name == f"{TARGET}-pids"))


def _docker(*argv: str) -> None:
    subprocess.run(
        ["docker", *argv],
        env={**os.environ, "DOCKER_HOST": engine_url()},
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def tamper(stack) -> Iterator[None]:
    """Put the target back as declared after a test changed it (health is not drift: no wait)."""
    yield
    _recreate(stack)


def test_a_clean_replay_reports_no_drift(stack):
    assert findings(stack) == []


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        (f"drift-by-hand-{secrets.token_hex(3)}", {"napdms.stack": STACK}),
        (f"napdms-{STACK}-debug-{secrets.token_hex(3)}", {}),
    ],
    ids=["with the stack's label", "with the stack's name prefix"],
)
def test_a_container_run_by_hand_for_the_stack_is_unmanaged_and_major(stack, name, labels):
    _program, _done, client = stack
    busybox = standin_image("busybox", client)
    client.containers.run(busybox, ["sleep", "300"], name=name, labels=labels, detach=True)
    try:
        assert findings(stack) == [(name, "unmanaged", "major")]
    finally:
        client.containers.get(name).remove(force=True)


def test_a_changed_user_is_major(stack, tamper):
    _recreate(stack, user="0:0")
    # Root without capabilities cannot read the service user's 0400 files: it may exit, too.
    assert (TARGET_NAME, "user", "major") in findings(stack)


def test_a_stopped_service_is_major(stack, tamper):
    _program, done, _client = stack
    done.containers[TARGET].stop(timeout=5)
    assert findings(stack) == [(TARGET_NAME, "stopped", "major")]


def test_a_swapped_image_is_major(stack, tamper):
    """Another image under the declared image's settings: a commit of the running container has
    the same config and files, but another id, as a retagged or rebuilt image would."""
    _program, done, client = stack
    tag = f"napdms-driftlive-swapped:{secrets.token_hex(4)}"
    done.containers[TARGET].commit(*tag.split(":"))
    try:
        _recreate(stack, image=tag)
        assert findings(stack) == [(TARGET_NAME, "image", "major")]
    finally:
        client.containers.get(TARGET_NAME).remove(force=True)
        client.images.remove(tag)


def test_an_added_capability_is_major(stack, tamper):
    """`docker update` has no capability flags: adding one takes a new container."""
    _recreate(stack, capabilities={"drops": ["ALL"], "adds": ["NET_RAW"]})
    assert findings(stack) == [(TARGET_NAME, "capabilities", "major")]


@pytest.mark.parametrize(
    ("update", "fields"),
    [
        (["--pids-limit", "4096"], {"pids_limit"}),
        (["--memory", "512m", "--memory-swap", "512m"], {"memory", "memory_swap"}),
    ],
    ids=["pids limit raised", "memory raised"],
)
def test_a_limit_raised_with_docker_update_is_major(stack, tamper, update, fields):
    _docker("update", *update, TARGET_NAME)
    assert findings(stack) == [(TARGET_NAME, field, "major") for field in sorted(fields)]


def test_an_added_environment_variable_is_minor(stack, tamper):
    program, _done, _client = stack
    declared = _declared(program, TARGET)
    _recreate(stack, envs=[*(declared.plain("envs") or []), "DRIFT_DEBUG=1"])
    assert findings(stack) == [(TARGET_NAME, "env", "minor")]

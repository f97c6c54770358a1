"""Every container of every stack gets a real PIDs cgroup limit (CIS 5.29) from a pulumi-command
`docker update --pids-limit` on its own Docker host, set again whenever it is replaced."""

from __future__ import annotations

import os

import pytest

from components.hardened_service import INIT_PIDS_LIMIT, pids_limit_command
from components.model.release import COLOURS
from components.settings import load_stack
from policies.rules import from_pulumi
from policies.rules.names import COLOUR_LABEL
from tests.conftest import program_of
from tests.program import STACKS, Declared, Program, is_secret, labels_of, stack_config


def _containers():
    for stack in STACKS:
        for container in program_of(stack).containers():
            yield pytest.param(stack, container, id=f"{stack}:{container.name}")


CONTAINERS = list(_containers())


def _commands(program: Program) -> list[Declared]:
    return program.of_type(from_pulumi.COMMAND)


def _declared_limit(stack: str, container: Declared) -> int:
    labels = labels_of(container)
    if labels.get("napdms.role") == "init":
        return INIT_PIDS_LIMIT
    # As the stack resolves it: prod raises postgres' limit.
    return load_stack(stack, stack_config(stack), set()).services[labels["napdms.service"]].pids


def _endpoint(program: Program, container: Declared) -> str:
    provider_urn = container.provider.rsplit("::", 1)[0]
    return from_pulumi.docker_endpoint(program.by_urn(provider_urn).inputs)


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_each_container_has_one_pids_command_with_its_limit_on_its_own_host(stack, container):
    program = program_of(stack)
    # A service on every host has the same Docker name on each: the host tells them apart.
    target = (_endpoint(program, container), container.plain("name"))
    [(command, limit)] = [
        (command, found[2])
        for command in _commands(program)
        for found in [from_pulumi.read_pids_command(command.inputs)]
        if found is not None and found[:2] == target
    ]
    assert limit == _declared_limit(stack, container) >= 16, f"{container.name}: limit {limit}"
    assert labels_of(container)["napdms.pids-limit"] == str(limit), "the label records another"
    assert command.name == f"{container.name}-pids"
    assert command.parent == container.parent, f"{command.name} is not the component's child"
    assert command.plain("triggers") == [f"{container.name}-id"], (
        f"{command.name} does not run again when {container.name} is replaced"
    )
    assert container.urn in command.dependencies, f"{command.name} may run before the container"
    host = load_stack(stack, stack_config(stack), set()).settings.hosts[
        labels_of(container)["napdms.host"]
    ]
    # Without an endpoint in the stack, the provider and the command both take DOCKER_HOST.
    expected = host.docker_host or os.environ.get("DOCKER_HOST", "")
    assert target[0] == expected, f"{command.name} runs against {target[0]!r}"


@pytest.mark.parametrize("stack", STACKS)
def test_pids_commands_target_exactly_the_declared_containers(stack):
    program = program_of(stack)
    found = [
        from_pulumi.read_pids_command(c.inputs)[:2]
        for c in _commands(program)
        if c.name.endswith("-pids")
    ]
    expected = [(_endpoint(program, c), c.plain("name")) for c in program.containers()]
    assert sorted(found) == sorted(expected)


def test_prod_sets_each_limit_on_the_host_that_runs_the_container():
    program = program_of("prod")
    endpoints = {
        from_pulumi.read_pids_command(c.inputs)[0]
        for c in _commands(program)
        if c.name.endswith("-pids")
    }
    assert endpoints == {
        "ssh://deploy@qnap.nap-dms.example.org",
        "ssh://deploy@asustor.nap-dms.example.org",
    }


@pytest.mark.parametrize("stack", STACKS)
def test_commands_are_plain_known_strings_without_secrets(stack):
    for command in _commands(program_of(stack)):
        for key, value in command.inputs.items():
            assert not is_secret(value), f"{command.name}.{key} is a secret"
        # Known at preview (the container's name is a plain string), so the pack can read it.
        assert isinstance(command.inputs["create"], str)
        assert set(command.inputs) <= {"create", "environment", "triggers"}, (
            f"{command.name}: {sorted(command.inputs)}"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_every_pids_command_is_the_one_the_pack_accepts(stack):
    for command in _commands(program_of(stack)):
        if command.name.endswith("-pids"):
            _, name, limit = from_pulumi.read_pids_command(command.inputs)
            assert command.inputs["create"] == pids_limit_command(name, limit)


@pytest.mark.parametrize("stack", STACKS)
def test_init_runs_only_after_its_limit_is_set_and_services_wait_for_the_run(stack):
    program = program_of(stack)
    inits = [c for c in program.containers() if labels_of(c).get("napdms.role") == "init"]
    assert inits
    commands = {c.name: c for c in _commands(program)}
    for init in inits:
        assert init.plain("start") is False, f"{init.name} starts before its limit is set"
        run = commands[f"{init.name}-run"]
        assert run.plain("create") == f"docker start --attach {init.plain('name')}"
        assert commands[f"{init.name}-pids"].urn in run.dependencies
        assert run.plain("triggers") == [f"{init.name}-id"]
        assert run.plain("environment") == commands[f"{init.name}-pids"].plain("environment")
        # A blue-green service has an init container per colour, which that colour waits for.
        colour = next((c for c in COLOURS if init.name.endswith(f"-{c}-init")), None)
        services = [
            c
            for c in program.services()
            if labels_of(c)["napdms.service"] == labels_of(init)["napdms.service"]
            and labels_of(c)["napdms.host"] == labels_of(init)["napdms.host"]
            and labels_of(c).get(COLOUR_LABEL) == colour
        ]
        assert services and all(run.urn in s.dependencies for s in services), (
            f"a replica may start before {init.name} has run"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_no_container_uses_an_nproc_ulimit(stack):
    for container in program_of(stack).containers():
        names = {u["name"] for u in container.plain("ulimits", None) or []}
        assert "nproc" not in names, f"{container.name} still sets nproc"

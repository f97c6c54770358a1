"""A stack is resolved once into a frozen, validated `Stack` that every reader takes."""

import copy
import dataclasses

import pytest
from pydantic import ValidationError

from components.catalog import CATALOG, backup_agent
from components.model.plan import AGENT_SERVICE
from components.model.spec import ImageBuild, ServiceSpec
from components.settings import SettingsError, Stack, load_stack, read_stack
from components.settings.model import ServiceOverride
from napdms_ops import backups
from tests.program import STACKS, stack_config


def _config(stack: str, **services) -> dict:
    config = copy.deepcopy(stack_config(stack))
    for name, override in services.items():
        config.setdefault("services", {}).setdefault(name.replace("_", "-"), {}).update(override)
    return config


def test_an_override_reaches_the_resolved_entry():
    stack = load_stack("prod", _config("prod", gitea={"memory": "768m", "tag": "1.24.7"}), set())
    gitea = stack.services["gitea"]
    assert (gitea.memory, gitea.tag) == (768, "1.24.7"), (
        f"prod gitea resolved as {gitea.memory}m, {gitea.tag}"
    )


def test_a_resolved_entry_is_a_validated_catalog_entry():
    stack = load_stack("prod", _config("prod", gitea={"memory": "768m"}), set())
    entry = stack.services["gitea"]
    assert ServiceSpec.model_validate(entry.model_dump(mode="json")) == entry, (
        "prod gitea does not validate again"
    )


def test_an_override_is_merged_by_validating_the_whole_entry_again():
    # The settings refuse this one earlier; `apply` alone must refuse it too, by the catalog's
    # own rule.
    with pytest.raises(ValidationError, match="a built image has no registry digest"):
        ServiceOverride(digest="sha256:" + "a" * 64).apply(backup_agent.SPEC)


def test_a_volume_override_changes_only_that_volumes_backup_policy():
    override = {
        "volumes": {"data": {"backup": {"policy": "exclude", "reason": "a test copy, thrown away"}}}
    }
    stack = load_stack("dev", _config("dev", gitea=override), set())
    policies = {volume.name: volume.backup.policy for volume in stack.services["gitea"].volumes}
    catalog = {volume.name: volume.backup.policy for volume in CATALOG["gitea"].volumes}
    assert policies == {**catalog, "data": "exclude"}, f"dev gitea volumes resolved as {policies}"


def test_a_disabled_service_is_left_out():
    stack = load_stack("dev", _config("dev", n8n={"enabled": False}), set())
    assert "n8n" not in stack.services and "n8n" not in stack.placements, (
        "dev: disabled n8n still resolved"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_every_enabled_service_has_a_placement(stack):
    resolved = read_stack(stack)
    assert set(resolved.placements) == set(resolved.services), (
        f"{stack}: services without placement"
    )


def test_the_catalog_is_merged_once_per_stack(monkeypatch):
    calls = []
    original = ServiceOverride.apply
    monkeypatch.setattr(
        ServiceOverride, "apply", lambda self, spec: calls.append(spec.name) or original(self, spec)
    )
    stack = load_stack("prod", stack_config("prod"), set())
    for _ in range(3):
        _ = stack.services, stack.context, stack.secret_names
    assert sorted(calls) == sorted(set(calls)), (
        f"prod: overrides merged more than once: {sorted(calls)}"
    )


def test_a_stack_cannot_be_changed_after_it_is_resolved():
    stack = read_stack("dev")
    with pytest.raises(dataclasses.FrozenInstanceError):
        stack.name = "prod"  # type: ignore[misc]
    with pytest.raises(TypeError):
        stack.services["gitea"] = CATALOG["gitea"]  # type: ignore[index]


def _agent_moved_to(host: str) -> Stack:
    """dev with a second daemon that runs the backup agent, and with it every service whose
    volumes the agent backs up (it reaches only its own host)."""
    config = copy.deepcopy(stack_config("dev"))
    config["hosts"][host] = {
        "docker_host": "unix:///run/second.sock",
        "memory": "16g",
        "cpus": 4,
        "roles": ["backup"],
    }
    for name, spec in CATALOG.items():
        if spec.volumes or name == AGENT_SERVICE:
            config["services"].setdefault(name, {})["host"] = host
    return load_stack("dev", config, set())


def test_the_backup_commands_reach_the_agent_where_the_stack_places_it():
    stack = _agent_moved_to("second")
    assert stack.placements[AGENT_SERVICE] == ("second",), "dev: agent override ignored"
    assert backups.endpoint(stack) == "unix:///run/second.sock", (
        "backup commands look for the agent elsewhere"
    )


def test_the_backup_commands_use_the_local_daemon_when_the_agents_host_names_none(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/test-dockerd.sock")
    assert backups.endpoint(read_stack("dev")) == "unix:///tmp/test-dockerd.sock", (
        "dev agent endpoint"
    )


def test_an_entry_the_merge_makes_invalid_is_one_line_naming_the_service(monkeypatch):
    # No override of today's stack files can break a catalog rule (their fields share the
    # catalog's types), so stand in a catalog entry that a digest override breaks.
    merge = ServiceOverride.apply
    built = ImageBuild(dockerfile="napdms_ops/backup/Dockerfile")
    monkeypatch.setattr(
        ServiceOverride,
        "apply",
        lambda self, spec: merge(self, spec.model_copy(update={"build": built})),
    )
    config = _config("prod", gitea={"digest": "sha256:" + "a" * 64})
    with pytest.raises(SettingsError) as raised:
        load_stack("prod", config, set())
    assert raised.value.lines == [
        "prod: services.gitea: a built image has no registry digest; remove digest (the container "
        "runs the build's id); change this stack's override"
    ]

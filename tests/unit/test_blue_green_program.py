"""Blue-green as the program declares it: both colours of every stateless service, each with the
image its stack config names, the proxy routing to the live colour alone, and a switch or a new
image touching nothing but what it must."""

from __future__ import annotations

import copy
import json

import pytest

from components.catalog import generated_files
from components.model.release import COLOURS
from components.settings import SettingsError, load_settings
from components.settings.stack import load_stack, read_stack
from tests.conftest import program_of
from tests.program import (
    OPERATOR_CONFIG,
    STACKS,
    Program,
    labels_of,
    run_program,
    stack_config,
)

BACKEND = "napdms-backend"
DIGEST = "sha256:" + "ab" * 32


def _values(stack: str, colours: dict[str, dict]) -> dict:
    """The stack file's config (and the operator's secrets) with these `colours` per service."""
    values = copy.deepcopy({**stack_config(stack), **OPERATOR_CONFIG})
    for service, setting in colours.items():
        values["services"].setdefault(service, {})["colours"] = setting
    return values


def _run(stack: str, colours: dict[str, dict]) -> Program:
    return run_program(stack, _values(stack, colours), tuple(OPERATOR_CONFIG))


def _declarations(program: Program) -> dict[str, str]:
    """Each resource's inputs and dependencies, as text, by resource name."""
    return {
        r.name: json.dumps([r.inputs, sorted(r.dependencies)], sort_keys=True, default=str)
        for r in program.resources
    }


def _changed(before: Program, after: Program) -> set[str]:
    """Names of the resources added, removed or declared differently."""
    old, new = _declarations(before), _declarations(after)
    return {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}


def _host(stack: str, service: str) -> str:
    return read_stack(stack).placements[service][0]


@pytest.mark.parametrize("stack", STACKS)
def test_every_stateless_service_behind_the_proxy_runs_replicas_of_both_colours(stack):
    resolved, program = read_stack(stack), program_of(stack)
    names = {c.plain("name"): c for c in program.services()}
    for service, spec in resolved.services.items():
        if not (spec.stateless and spec.public):
            continue
        for colour in COLOURS:
            for n in range(1, spec.replicas + 1):
                name = f"{resolved.name_prefix}-{service}-{colour}-{n}"
                assert name in names, f"{stack}: {name} is not declared"
                assert labels_of(names[name])["napdms.colour"] == colour, f"{name} colour label"
        assert f"{resolved.name_prefix}-{service}-1" not in names, (
            f"{stack}: {service} still has an uncoloured replica"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_services_that_are_stateful_or_internal_run_no_colours(stack):
    resolved = read_stack(stack)
    for container in program_of(stack).services():
        spec = resolved.services[labels_of(container)["napdms.service"]]
        if not (spec.stateless and spec.public):
            assert "napdms.colour" not in labels_of(container), f"{container.name} has a colour"


def test_coloured_replicas_answer_to_their_colours_names_only():
    for container in program_of("prod").services():
        labels = labels_of(container)
        colour = labels.get("napdms.colour")
        if colour is None:
            continue
        service, n = labels["napdms.service"], labels["napdms.replica"]
        for network in container.plain("networksAdvanced"):
            assert network["aliases"] == [f"{service}-{colour}", f"{service}-{colour}-{n}"], (
                f"{container.name} aliases on {network['name']}"
            )
        assert container.plain("hostname") == f"{service}-{colour}-{n}", f"{container.name}"


def test_each_colour_pulls_the_image_its_stack_config_names():
    stack, host = "prod", _host("prod", BACKEND)
    program = _run(stack, {BACKEND: {"green": {"tag": "1.0.1", "digest": DIGEST}}})
    images = {r.name: r for r in program.of_type("docker:index/remoteImage:RemoteImage")}
    repository = read_stack(stack).services[BACKEND].image
    assert images[f"{host}-{BACKEND}-green-image"].plain("name") == (
        f"{repository}:1.0.1@{DIGEST}"
    ), "green's image"
    assert images[f"{host}-{BACKEND}-blue-image"].plain("name") == f"{repository}:1.0.0", (
        "blue's image"
    )


def test_each_colours_replicas_run_their_colours_image():
    stack, host = "prod", _host("prod", BACKEND)
    program = _run(stack, {BACKEND: {"green": {"tag": "1.0.1"}}})
    images = {r.name: r for r in program.of_type("docker:index/remoteImage:RemoteImage")}
    for container in program.services():
        labels = labels_of(container)
        if labels["napdms.service"] != BACKEND:
            continue
        image = images[f"{host}-{BACKEND}-{labels['napdms.colour']}-image"]
        assert container.plain("image").startswith(image.plain("name").split(":")[0] + "@"), (
            f"{container.name} image"
        )
        assert image.urn in container.dependencies, f"{container.name} does not run {image.name}"


@pytest.mark.parametrize("stack", STACKS)
def test_the_proxy_routes_to_the_live_colour_alone(stack):
    for live in COLOURS:
        values = _values(stack, {BACKEND: {"live": live}})
        context = load_stack(stack, values, set(OPERATOR_CONFIG)).context
        caddyfile = generated_files("proxy", context)["Caddyfile"]
        idle = "green" if live == "blue" else "blue"
        assert f"{BACKEND}-{live}-1:8000" in caddyfile, f"{stack}: live {live} is not routed"
        assert f"{BACKEND}-{idle}-" not in caddyfile, f"{stack}: idle {idle} shares traffic"


@pytest.mark.parametrize("stack", STACKS)
def test_switching_the_live_colour_changes_only_the_proxys_files(stack):
    switched = _run(stack, {BACKEND: {"live": "green"}})
    changed = _changed(program_of(stack), switched)
    # Its init container writes the new Caddyfile; the proxy container and every service's stay.
    assert changed == {f"{_host(stack, 'proxy')}-proxy-init"}, f"{stack}: {sorted(changed)}"


@pytest.mark.parametrize("stack", STACKS)
def test_a_new_green_tag_changes_only_greens_image_and_containers(stack):
    host, replicas = _host(stack, BACKEND), read_stack(stack).services[BACKEND].replicas
    changed = _changed(program_of(stack), _run(stack, {BACKEND: {"green": {"tag": "1.0.1"}}}))
    expected = {f"{host}-{BACKEND}-green-image"} | {
        f"{host}-{BACKEND}-green-{n}" for n in range(1, replicas + 1)
    }
    assert changed == expected, f"{stack}: {sorted(changed)}"


@pytest.mark.parametrize("stack", STACKS)
def test_both_colours_share_the_volumes_and_the_init_container(stack):
    resolved = read_stack(stack)
    prefix, program = resolved.name_prefix, program_of(stack)
    inits = {c.plain("name") for c in program.containers()} - {
        c.plain("name") for c in program.services()
    }
    assert f"{prefix}-{BACKEND}-init" in inits, f"{stack}: {BACKEND} has no shared init container"
    for container in program.services():
        if labels_of(container)["napdms.service"] != BACKEND:
            continue
        mounted = {v.get("volumeName") for v in container.plain("volumes")}
        assert f"{prefix}-{BACKEND}-documents" in mounted, f"{container.name} volumes"


@pytest.mark.parametrize("stack", STACKS)
def test_the_host_memory_rule_counts_both_colours(stack):
    values = copy.deepcopy(stack_config(stack))
    resolved = read_stack(stack)
    host = _host(stack, BACKEND)
    used = sum(
        spec.memory * spec.containers_per_host
        for name, spec in resolved.services.items()
        if host in resolved.placements[name]
    )
    # A host that fits every service with one colour of each stateless one, but not both.
    one_colour = used - sum(
        spec.memory * spec.replicas
        for name, spec in resolved.services.items()
        if spec.colours and host in resolved.placements[name]
    )
    values["hosts"][host]["memory"] = f"{one_colour}m"
    with pytest.raises(SettingsError) as raised:
        load_settings(stack, values, set())
    assert any(line.startswith(f"{stack}: hosts.{host}.memory:") for line in raised.value.lines), (
        raised.value.lines
    )


@pytest.mark.parametrize(
    "service,colours,line",
    [
        (
            "gitea",
            {"live": "green"},
            "dev: services.gitea.colours: gitea is not stateless (one instance per volume), so it "
            "cannot run two colours side by side (a deploy restarts it while the proxy holds its "
            "requests); remove colours and set services.gitea.tag/digest",
        ),
        (
            "blackbox",
            {"live": "green"},
            "dev: services.blackbox.colours: blackbox is not behind the proxy, so nothing "
            "switches its traffic between colours (a deploy replaces it in place, health-gated); "
            "remove colours and set services.blackbox.tag/digest",
        ),
        (
            BACKEND,
            {"live": "red"},
            f'dev: services.{BACKEND}.colours.live: "red" is not allowed; use one of: blue, green',
        ),
        (
            BACKEND,
            {"yellow": {"tag": "1.0.1"}},
            f"dev: services.{BACKEND}.colours.yellow: unknown key; use one of: live, blue, green",
        ),
        (
            BACKEND,
            {"green": {"tag": "latest"}},
            f'dev: services.{BACKEND}.colours.green.tag: "latest" floats; use a released version '
            'such as "16.4"',
        ),
    ],
    ids=[
        "stateful-service",
        "internal-service",
        "unknown-colour",
        "colour-key-typo",
        "floating-tag",
    ],
)
def test_a_wrong_colours_setting_ends_in_one_line_with_stack_key_and_fix(service, colours, line):
    values = copy.deepcopy(stack_config("dev"))
    values["services"].setdefault(service, {})["colours"] = colours
    with pytest.raises(SettingsError) as raised:
        load_settings("dev", values, set())
    assert raised.value.lines == [line]


def test_a_colour_with_its_own_tag_is_not_pinned_by_the_services_digest():
    spec = read_stack("dev").services[BACKEND]
    coloured = type(spec).model_validate(
        {**spec.model_dump(mode="json"), "digest": DIGEST, "colours": {"green": {"tag": "1.0.1"}}}
    )
    assert coloured.colour_image_ref("blue") == f"{spec.image}:1.0.0@{DIGEST}", "blue's ref"
    assert coloured.colour_image_ref("green") == f"{spec.image}:1.0.1", "green's ref"

"""Blue-green as the program declares it: both colours of every stateless service, each with the
image its stack config names, the proxy routing to the live colour alone, and a switch or a new
image touching nothing but what it must."""

from __future__ import annotations

import copy
import json

import pytest

from components.catalog import generated_files
from components.model.release import COLOURS
from components.model.spec import SECRETS_DIR
from components.settings import SettingsError, load_settings
from components.settings.stack import load_stack, read_stack
from napdms_ops.declared import mock_password
from tests.conftest import program_of
from tests.program import (
    OPERATOR_CONFIG,
    STACKS,
    Declared,
    Program,
    labels_of,
    run_program,
    stack_config,
)

BACKEND = "napdms-backend"
APP_KEY = "napdms-app-key"
"""A secret only NAP-DMS backend reads."""
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


def _other(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


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


def _init_of(program: Program, service: str, colour: str) -> Declared:
    """The init container that writes `colour`'s files of `service`."""
    return next(
        c
        for c in program.containers()
        if labels_of(c).get("napdms.role") == "init"
        and labels_of(c)["napdms.service"] == service
        and c.plain("name").endswith(f"-{service}-{colour}-init")
    )


def _secret_file(program: Program, service: str, colour: str, secret: str) -> str:
    """What `colour`'s init container writes as `secret`'s file."""
    uploads = {u["file"]: u["content"] for u in _init_of(program, service, colour).plain("uploads")}
    return uploads[f"{SECRETS_DIR}/{secret}"]


@pytest.mark.parametrize("stack", STACKS)
def test_each_colour_has_its_own_init_container_writing_its_own_files_volumes(stack):
    prefix, program = read_stack(stack).name_prefix, program_of(stack)
    inits = {c.plain("name") for c in program.containers()} - {
        c.plain("name") for c in program.services()
    }
    assert f"{prefix}-{BACKEND}-init" not in inits, f"{stack}: a shared init container is left"
    for colour in COLOURS:
        init = _init_of(program, BACKEND, colour)
        assert init.plain("name") == f"{prefix}-{BACKEND}-{colour}-init"
        written = {v["volumeName"] for v in init.plain("volumes")}
        assert f"{prefix}-{BACKEND}-{colour}-run-secrets" in written, f"{stack}: {colour} files"


@pytest.mark.parametrize("stack", STACKS)
def test_each_colours_replicas_mount_their_colours_files_and_the_shared_data(stack):
    prefix, program = read_stack(stack).name_prefix, program_of(stack)
    for container in program.services():
        labels = labels_of(container)
        if labels["napdms.service"] != BACKEND:
            continue
        colour, other = labels["napdms.colour"], _other(labels["napdms.colour"])
        mounted = {v.get("volumeName") for v in container.plain("volumes")}
        assert f"{prefix}-{BACKEND}-documents" in mounted, f"{container.name} data volume"
        assert f"{prefix}-{BACKEND}-{colour}-run-secrets" in mounted, f"{container.name} files"
        assert f"{prefix}-{BACKEND}-{other}-run-secrets" not in mounted, f"{container.name}"


@pytest.mark.parametrize("stack", STACKS)
def test_each_colours_replicas_are_labelled_with_their_colours_init_container(stack):
    host, program = _host(stack, BACKEND), program_of(stack)
    for container in program.services():
        labels = labels_of(container)
        if labels["napdms.service"] != BACKEND:
            continue
        init = f"{host}-{BACKEND}-{labels['napdms.colour']}-init"
        assert labels["napdms.init-container"] == f"{init}-id", f"{container.name}"
        (run,) = [r for r in program.resources if r.name == f"{init}-run"]
        assert run.urn in container.dependencies, f"{container.name} starts before its files"


def test_a_colour_pinned_at_the_previous_counter_gets_the_previous_value():
    values = _values("prod", {BACKEND: {"blue": {"secrets": {APP_KEY: 0}}}})
    values["secrets"] = {"rotation": {APP_KEY: 1}}
    program = run_program("prod", values, tuple(OPERATOR_CONFIG))
    # Counter 0 sits in the even slot, counter 1 in the odd one (`GeneratedSecret`).
    assert _secret_file(program, BACKEND, "blue", APP_KEY) == mock_password(f"{APP_KEY}-value")
    assert _secret_file(program, BACKEND, "green", APP_KEY) == mock_password(f"{APP_KEY}-value-odd")


def test_without_a_pin_both_colours_get_the_current_value():
    values = _values("prod", {})
    values["secrets"] = {"rotation": {APP_KEY: 1}}
    program = run_program("prod", values, tuple(OPERATOR_CONFIG))
    current = mock_password(f"{APP_KEY}-value-odd")
    assert {_secret_file(program, BACKEND, c, APP_KEY) for c in COLOURS} == {current}


@pytest.mark.parametrize("stack", STACKS)
def test_a_rotation_with_the_live_colour_pinned_rewrites_only_the_idle_colours_files(stack):
    host = _host(stack, BACKEND)
    pinned = _values(stack, {BACKEND: {"blue": {"secrets": {APP_KEY: 0}}}})
    pinned["secrets"] = {"rotation": {APP_KEY: 1}}
    changed = _changed(program_of(stack), run_program(stack, pinned, tuple(OPERATOR_CONFIG)))
    # The new value (its slot) and the files of green; under the engine green's init container
    # gets a new id, which its replicas carry, so they are replaced and blue's are not.
    assert changed == {f"{APP_KEY}-value-odd", f"{host}-{BACKEND}-green-init"}, sorted(changed)


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


@pytest.mark.parametrize(
    "pin,counter,line",
    [
        (
            {"gitea-db-password": 0},
            None,
            f"dev: services.{BACKEND}.colours.blue.secrets.gitea-db-password: {BACKEND} reads no "
            "secret of that name; remove the pin (use one of: napdms-app-key, napdms-db-password, "
            "redis-password)",
        ),
        (
            {APP_KEY: 0},
            None,
            f"dev: services.{BACKEND}.colours.blue.secrets.{APP_KEY}: 0 is not the counter before "
            f"secrets.rotation.{APP_KEY} (0), the only earlier value kept; remove it",
        ),
        (
            {APP_KEY: 0},
            2,
            f"dev: services.{BACKEND}.colours.blue.secrets.{APP_KEY}: 0 is not the counter before "
            f"secrets.rotation.{APP_KEY} (2), the only earlier value kept; set it to 1 or remove "
            "it",
        ),
        (
            {APP_KEY: "0"},
            1,
            f'dev: services.{BACKEND}.colours.blue.secrets.{APP_KEY}: "0" is not a whole number; '
            "use e.g. 2",
        ),
    ],
    ids=["secret-not-held", "nothing-rotated-yet", "not-the-previous-counter", "not-a-number"],
)
def test_a_wrong_secret_pin_ends_in_one_line_with_stack_key_and_fix(pin, counter, line):
    values = copy.deepcopy(stack_config("dev"))
    values["services"].setdefault(BACKEND, {})["colours"] = {"blue": {"secrets": pin}}
    if counter is not None:
        values["secrets"] = {"rotation": {APP_KEY: counter}}
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

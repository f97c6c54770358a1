"""The proxy takes new routes by a reload, never by a new container, and holds the requests of a
restarting stateful service instead of failing them."""

from __future__ import annotations

import shlex

import pytest
from pydantic import ValidationError

from components.catalog import blackbox, proxy
from components.model.spec import SecretUse, ServiceSpec
from components.settings.stack import read_stack
from tests.conftest import program_of
from tests.program import STACKS, Declared, Program, labels_of
from tests.unit.test_tls_config import adapted, site_handlers

COMMAND = "command:local:Command"


def _proxies(program: Program) -> list[Declared]:
    return [c for c in program.services() if labels_of(c)["napdms.service"] == "proxy"]


def _command(program: Program, name: str) -> Declared:
    (found,) = [c for c in program.of_type(COMMAND) if c.name == name]
    return found


def _init(program: Program, host: str) -> Declared:
    (found,) = [c for c in program.containers() if c.name == f"{host}-proxy-init"]
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_the_proxy_container_does_not_carry_its_init_containers_id(stack):
    for container in _proxies(program_of(stack)):
        assert "napdms.init-container" not in labels_of(container), (
            f"{container.name}: a new Caddyfile would replace it"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_each_proxy_replica_reloads_caddy_with_the_catalogs_command(stack):
    program = program_of(stack)
    for container in _proxies(program):
        reload = _command(program, f"{container.name}-reload")
        assert shlex.split(reload.plain("create")) == [
            "docker",
            "exec",
            container.plain("name"),
            *proxy.RELOAD,
        ], f"{reload.name} create"


@pytest.mark.parametrize("stack", STACKS)
def test_the_reload_runs_again_whenever_the_init_container_is_replaced(stack):
    program = program_of(stack)
    for container in _proxies(program):
        host = labels_of(container)["napdms.host"]
        reload = _command(program, f"{container.name}-reload")
        assert reload.plain("triggers") == [f"{_init(program, host).name}-id"], (
            f"{reload.name} triggers"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_the_reload_waits_for_the_init_run_and_the_replica(stack):
    program = program_of(stack)
    for container in _proxies(program):
        host = labels_of(container)["napdms.host"]
        reload = _command(program, f"{container.name}-reload")
        init_run = _command(program, f"{host}-proxy-init-run")
        assert {init_run.urn, container.urn} <= set(reload.dependencies), (
            f"{reload.name} dependencies"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_the_reload_talks_to_the_proxys_own_docker_host(stack):
    program = program_of(stack)
    for container in _proxies(program):
        reload = _command(program, f"{container.name}-reload")
        pids = _command(program, f"{container.name}-pids")
        assert reload.plain("environment") == pids.plain("environment"), (
            f"{reload.name} environment"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_services_without_a_reload_are_still_replaced_by_new_files(stack):
    program, resolved = program_of(stack), read_stack(stack)
    inits = {c.name for c in program.containers() if labels_of(c).get("napdms.role") == "init"}
    for container in program.services():
        labels = labels_of(container)
        service, host = labels["napdms.service"], labels["napdms.host"]
        if f"{host}-{service}-init" in inits and resolved.services[service].reload is None:
            assert labels["napdms.init-container"] == f"{host}-{service}-init-id", (
                f"{container.name} ignores its init container"
            )


def test_only_the_proxy_reloads():
    commands = [c.name for c in program_of("prod").of_type(COMMAND) if c.name.endswith("-reload")]
    assert commands == [f"{c.name}-reload" for c in _proxies(program_of("prod"))]


def test_a_service_that_reloads_may_not_read_secrets():
    entry = proxy.SPEC.model_dump(mode="json")
    entry["secrets"] = [SecretUse(secret="proxy-token").model_dump(mode="json")]
    with pytest.raises(ValidationError) as raised:
        ServiceSpec.model_validate(entry)
    message = str(raised.value)
    assert "a rotated secret is read only at start and needs a restart" in message, message
    assert "remove reload, or deliver no secrets to proxy" in message, message


def test_a_catalog_entry_with_colours_must_be_stateless_and_behind_the_proxy():
    entry = {**proxy.SPEC.model_dump(mode="json"), "colours": {}}
    with pytest.raises(ValidationError) as raised:
        ServiceSpec.model_validate(entry)
    assert "proxy is not stateless" in str(raised.value), str(raised.value)
    entry = {**blackbox.SPEC.model_dump(mode="json"), "colours": {}}
    with pytest.raises(ValidationError) as raised:
        ServiceSpec.model_validate(entry)
    assert "blackbox is not behind the proxy" in str(raised.value), str(raised.value)


def test_a_service_name_ending_in_a_colour_is_refused():
    entry = {**proxy.SPEC.model_dump(mode="json"), "name": "proxy-green"}
    with pytest.raises(ValidationError) as raised:
        ServiceSpec.model_validate(entry)
    assert "ends in a colour" in str(raised.value), str(raised.value)


def _reverse_proxy(config: dict, site: str) -> dict:
    (handler,) = [h for h in site_handlers(config, site) if h["handler"] == "reverse_proxy"]
    return handler


def _sites(stack: str):
    resolved = read_stack(stack)
    for spec in resolved.services.values():
        if spec.public is not None:
            yield f"{spec.public.subdomain}.{resolved.settings.domain}", spec


@pytest.mark.parametrize("stack", STACKS)
def test_a_stateful_site_holds_requests_for_its_services_hold_time(stack, tmp_path):
    config = adapted(proxy.files(read_stack(stack).context), tmp_path)
    for site, spec in _sites(stack):
        if spec.stateless:
            continue
        handler = _reverse_proxy(config, site)
        balancing = handler["load_balancing"]
        assert balancing["try_duration"] == spec.hold_s * 10**9, f"{site} hold"
        assert balancing["try_interval"] == 250 * 10**6, f"{site} retry interval"
        # Its only upstream marked down would hold requests after the service is back.
        assert "passive" not in handler.get("health_checks", {}), f"{site} marks it down"


@pytest.mark.parametrize("stack", STACKS)
def test_a_stateless_site_retries_briefly_on_another_replica(stack, tmp_path):
    config = adapted(proxy.files(read_stack(stack).context), tmp_path)
    for site, spec in _sites(stack):
        if not spec.stateless:
            continue
        handler = _reverse_proxy(config, site)
        assert handler["load_balancing"]["try_duration"] == proxy.STATELESS_TRY_S * 10**9, site
        assert handler["health_checks"]["passive"]["fail_duration"] > 0, f"{site} fail_duration"


@pytest.mark.parametrize("stack", STACKS)
def test_a_removed_replicas_address_fails_within_a_second(stack, tmp_path):
    config = adapted(proxy.files(read_stack(stack).context), tmp_path)
    for site, _spec in _sites(stack):
        assert _reverse_proxy(config, site)["transport"]["dial_timeout"] == 10**9, site

"""Central logs (issue 13 §5): every container's json-file lines carry its service, stack and
host; Alloy tails those files (never the Docker socket) under the host's Docker data root; Loki
keeps 90 days and alerts on a sustained rate of error lines."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from components.catalog import CATALOG, generated_files, log_shipper, loki
from components.settings import SettingsError, load_settings, load_stack
from components.settings.stack import read_stack
from policies.rules.isolation import DOCKER_SOCKET, classify_host_path
from policies.rules.names import HOST_LABEL, SERVICE_LABEL, STACK_LABEL
from tests.program import ROOT, STACKS, labels_of, run_program, stack_config

SHIPPER = log_shipper.SPEC.name
QNAP_ROOT = "/share/CACHEDEV1_DATA/Container/container-station-data/lib/docker"


def _context(stack: str):
    return load_stack(stack, stack_config(stack), set()).context


def _alloy(stack: str) -> str:
    return generated_files(SHIPPER, _context(stack))["config.alloy"]


def _components(alloy: str) -> list[str]:
    """The Alloy components the config declares, as `kind "label"`."""
    return re.findall(r'^([a-z_.]+ "[a-z_]+") \{', alloy, re.M)


def _block(alloy: str, name: str) -> str:
    """The body of the nested block `name { ... }` (one level of inner braces)."""
    match = re.search(rf"^\s*{re.escape(name)} \{{\n((?:.*\n)*?)\s*\}}\n", alloy, re.M)
    assert match, f"no {name} block"
    return match[1]


def _loki_files(stack: str) -> dict[str, dict]:
    return {
        name: yaml.safe_load(text)
        for name, text in generated_files(loki.SPEC.name, _context(stack)).items()
    }


def _shipper_container(program):
    return next(c for c in program.services() if labels_of(c)["napdms.service"] == SHIPPER)


def _dev_with_docker_root(value) -> dict:
    config = copy.deepcopy(stack_config("dev"))
    config["hosts"]["local"]["docker_root"] = value
    return config


# The shipper reads files, not the Docker API


@pytest.mark.parametrize("stack", STACKS)
def test_alloy_tails_the_json_file_logs_and_nothing_else(stack):
    alloy = _alloy(stack)
    assert _components(alloy) == [
        'local.file_match "containers"',
        'loki.source.file "containers"',
        'loki.process "containers"',
        'loki.write "loki"',
    ]
    assert f'"__path__" = "{log_shipper.LOGS_DIR}/*/*-json.log"' in alloy
    assert "docker.sock" not in alloy and "discovery.docker" not in alloy


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_log_shipper_mounts_no_docker_socket_in_any_environment(environment):
    spec = CATALOG[SHIPPER].in_environment(environment)
    judged = [classify_host_path(m.source) for m in spec.host_mounts]
    assert all(j is None or j[0] != DOCKER_SOCKET for j in judged), judged
    assert not spec.exempt(DOCKER_SOCKET)


@pytest.mark.parametrize("stack", STACKS)
def test_no_container_mounts_the_docker_socket_but_cadvisor_in_dev(stack):
    mounting = {
        labels_of(container)["napdms.service"]
        for container in run_program(stack).containers()
        for volume in container.plain("volumes", [])
        if (judged := classify_host_path(volume.get("hostPath", ""))) and judged[0] == DOCKER_SOCKET
    }
    assert mounting == ({"cadvisor"} if stack == "dev" else set())


@pytest.mark.parametrize("stack", STACKS)
def test_no_stack_grants_the_log_shipper_the_docker_socket(stack):
    config = json.loads((ROOT / "policies" / "config" / f"{stack}.json").read_text())
    rule = config[DOCKER_SOCKET]
    exempt = rule.get("exempt", {}) if isinstance(rule, dict) else {}
    assert f"napdms-{stack}-{SHIPPER}" not in exempt


def test_declared_shipper_mounts_only_the_containers_folder_read_only():
    binds = [v for v in _shipper_container(run_program("dev")).plain("volumes") if "hostPath" in v]
    assert binds == [
        {
            "hostPath": "/var/lib/docker/containers",
            "containerPath": log_shipper.LOGS_DIR,
            "readOnly": True,
        }
    ]


# Labels: service, stack, host from every line's attrs


def test_every_container_of_every_stack_writes_its_service_stack_and_host_into_each_line():
    for stack in STACKS:
        for container in run_program(stack).containers():
            opts = container.plain("logOpts")
            assert container.plain("logDriver") == "json-file", container.name
            assert opts["labels"].split(",") == [SERVICE_LABEL, STACK_LABEL, HOST_LABEL], (
                f"{stack} {container.name}: {opts}"
            )
            assert opts["tag"] == "{{.Name}}", f"{stack} {container.name}: {opts}"


def test_alloy_labels_each_line_from_the_attrs_the_log_driver_writes():
    expressions = _block(_alloy("dev"), "expressions =")
    # JMESPath quotes a key holding dots; Alloy escapes the quotes.
    attrs = {
        label: path.replace('\\"', "")
        for label, path in re.findall(r'^\s*(\w+)\s*= "attrs\.(.+)",$', expressions, re.M)
    }
    assert attrs == {
        "service": SERVICE_LABEL,
        "stack": STACK_LABEL,
        "host": HOST_LABEL,
        "container": "tag",
    }
    labels = re.findall(r"^\s*(\w+)\s*= \"\",$", _block(_alloy("dev"), "values ="), re.M)
    assert labels == ["service", "stack", "host", "container", "stream"]


def test_alloy_drops_the_per_container_file_name_label():
    assert '"filename"' in _block(_alloy("dev"), "stage.label_drop")


# Alloy's own HTTP server, scraped and probed


def test_alloy_serves_metrics_and_readiness_on_the_port_prometheus_scrapes():
    spec = CATALOG[SHIPPER]
    assert f"--server.http.listen-addr=0.0.0.0:{spec.metrics.port}" in spec.command
    assert (spec.probe.kind, spec.probe.port, spec.probe.path) == (
        "http",
        spec.metrics.port,
        "/-/ready",
    )
    assert f"/dev/tcp/127.0.0.1/{spec.metrics.port}" in spec.health.test[-1]
    assert "GET /-/ready " in spec.health.test[-1]
    assert not spec.ports, "Alloy's HTTP server is for the monitoring network only"


# docker_root: per host, plumbed to the shipper's mount


def test_docker_root_defaults_to_var_lib_docker():
    settings = load_settings("dev", stack_config("dev"), set())
    assert settings.hosts["local"].docker_root == "/var/lib/docker"


def test_shipper_mounts_the_containers_folder_of_its_hosts_docker_root():
    container = _shipper_container(run_program("dev", _dev_with_docker_root(QNAP_ROOT)))
    binds = {
        v["hostPath"]: v["containerPath"] for v in container.plain("volumes") if "hostPath" in v
    }
    assert binds == {f"{QNAP_ROOT}/containers": log_shipper.LOGS_DIR}


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (
            "var/lib/docker",
            'dev: hosts.local.docker_root: "var/lib/docker" is not an absolute path; use the '
            'path `docker info --format "{{.DockerRootDir}}"` prints on the host',
        ),
        (
            "/srv/../var/lib/docker",
            'dev: hosts.local.docker_root: "/srv/../var/lib/docker" is not a plain path (no .., '
            '. or repeated /); write it as "/var/lib/docker"',
        ),
        (
            "/",
            'dev: hosts.local.docker_root: "/" is the whole filesystem, not a data root; use the '
            'path `docker info --format "{{.DockerRootDir}}"` prints on the host',
        ),
        (
            "/var/lib/docker\n/etc",
            'dev: hosts.local.docker_root: "/var/lib/docker\\n/etc" holds line breaks or control '
            'characters; use the path `docker info --format "{{.DockerRootDir}}"` prints on the '
            "host",
        ),
    ],
    ids=["relative", "dot-dot", "root", "control-character"],
)
def test_docker_root_refuses_paths_that_are_not_a_plain_data_root(value, line):
    with pytest.raises(SettingsError) as raised:
        load_settings("dev", _dev_with_docker_root(value), set())
    assert raised.value.lines == [line]


# Loki: 90 days, filesystem, single binary


@pytest.mark.parametrize("stack", STACKS)
def test_loki_keeps_logs_90_days_and_deletes_older_ones(stack):
    config = _loki_files(stack)[loki.CONFIG_FILE]
    compactor = config["compactor"]
    assert compactor["retention_enabled"] is True
    assert compactor["delete_request_store"] == "filesystem"
    assert config["limits_config"]["retention_period"] == "2160h"
    assert int(config["limits_config"]["retention_period"].removesuffix("h")) == 90 * 24


def test_loki_stores_tsdb_v13_on_its_volume_without_auth_or_analytics():
    config = _loki_files("prod")[loki.CONFIG_FILE]
    (schema,) = config["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == (
        "tsdb",
        "v13",
        "filesystem",
    )
    volume = next(v.path for v in loki.SPEC.volumes)
    storage = config["common"]["storage"]["filesystem"]
    assert all(path.startswith(f"{volume}/") for path in storage.values())
    assert config["compactor"]["working_directory"].startswith(f"{volume}/")
    assert config["auth_enabled"] is False
    assert config["analytics"] == {"reporting_enabled": False}


def test_loki_runs_the_rendered_config_from_its_config_dir():
    assert loki.SPEC.config_dir == loki.CONFIG_DIR
    assert f"-config.file={loki.CONFIG_DIR}/{loki.CONFIG_FILE}" in loki.SPEC.command[0]
    assert all("/" not in name for name in _loki_files("dev"))


def test_loki_volume_backup_reason_states_the_retention():
    (volume,) = loki.SPEC.volumes
    assert volume.backup.policy == "exclude" and "90 days" in volume.backup.reason


# Loki's ruler: one alert on the error-line rate


@pytest.mark.parametrize("stack", STACKS)
def test_ruler_alerts_on_a_sustained_error_line_rate_of_the_stack(stack):
    (group,) = _loki_files(stack)[loki.RULES_FILE]["groups"]
    (rule,) = group["rules"]
    assert rule["labels"] == {"severity": "warning"}
    assert rule["expr"].startswith(f'sum by (service) (rate({{stack="{stack}"}} |~ ')
    assert rule["expr"].endswith(f"[5m])) > {loki.ERROR_RATE_THRESHOLD}")
    assert rule["for"] == "10m"


def test_ruler_pattern_matches_error_words_and_not_their_substrings():
    pattern = re.compile(loki.ERROR_PATTERN)
    assert all(pattern.search(line) for line in ("ERROR db down", "level=error", "panic: nil"))
    assert not any(pattern.search(line) for line in ("errors=0", "terrorist", "0 panicked"))


def test_ruler_sends_to_alertmanager_and_reads_the_rules_from_the_tenant_folder():
    ruler = _loki_files("dev")[loki.CONFIG_FILE]["ruler"]
    assert ruler["alertmanager_url"] == "http://alertmanager:9093"
    assert ruler["storage"] == {"type": "local", "local": {"directory": loki.RULES_DIR}}
    copied = f"cp {loki.CONFIG_DIR}/{loki.RULES_FILE} {loki.RULES_DIR}/{loki.TENANT}/"
    assert copied in loki.SPEC.command[0]
    assert loki.RULES_DIR.startswith(tuple(f"{path}/" for path in loki.SPEC.tmpfs))


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_ships_its_logs_with_the_containers_folder_grant_alone(stack):
    resolved = read_stack(stack)
    assert "log-shipper" in resolved.services, f"{stack}: the log shipper is off"
    assert set(resolved.services["log-shipper"].waivers()) == {
        "run-as-root",
        "container-logs-mount",
    }, f"{stack}: the shipper is waived more than reading the containers folder"

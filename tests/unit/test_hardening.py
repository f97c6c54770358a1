"""Every service container the program declares is hardened, in every stack."""

import pytest

from components.catalog import CATALOG
from components.hardened_service import LOG_OPTS
from components.settings import load_settings, load_stack
from components.settings.stack import read_stack
from tests.conftest import program_of
from tests.program import STACKS, labels_of, stack_config


def _service_containers():
    for stack in STACKS:
        for container in program_of(stack).services():
            yield pytest.param(stack, container, id=f"{stack}:{container.name}")


CONTAINERS = list(_service_containers())


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_runs_as_numeric_non_root_user_unless_exempted(stack, container):
    user = container.plain("user")
    assert user and user.split(":")[0].isdigit(), f"{container.name}: user {user!r} is not numeric"
    if user.split(":")[0] == "0":
        assert labels_of(container).get("napdms.exempt.run-as-root"), (
            f"{container.name} runs as root without a reason"
        )


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_drops_all_capabilities_and_justifies_each_added_one(stack, container):
    caps = container.plain("capabilities")
    assert caps["drops"] == ["ALL"], f"{container.name} keeps capabilities"
    for cap in caps.get("adds", []):
        assert labels_of(container).get(f"napdms.cap-add.{cap}"), (
            f"{container.name} adds {cap} without a reason"
        )


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_root_filesystem_is_read_only(stack, container):
    assert container.plain("readOnly") is True, f"{container.name} has a writable root filesystem"


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_every_tmpfs_says_noexec_nosuid_nodev(stack, container):
    for path, options in (container.plain("tmpfs") or {}).items():
        flags = set(options.split(","))
        assert {"noexec", "nosuid", "nodev"} <= flags, f"{container.name}: tmpfs {path} {options}"
        assert not flags & {"exec", "suid", "dev"}, f"{container.name}: tmpfs {path} {options}"


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_cgroup_namespace_is_private(stack, container):
    assert container.plain("cgroupnsMode") == "private", (
        f"{container.name} would share the host's cgroup namespace on a cgroup v1 host"
    )


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_no_new_privileges(stack, container):
    assert "no-new-privileges:true" in container.plain("securityOpts"), (
        f"{container.name} may gain privileges"
    )


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_memory_and_cpu_limits_are_set(stack, container):
    assert container.plain("memory", 0) >= 4, f"{container.name} has no memory limit"
    assert container.plain("memorySwap") == container.plain("memory"), f"{container.name} may swap"
    assert float(container.plain("cpus", 0)) > 0, f"{container.name} has no CPU limit"
    # The PIDs limit is a command beside the container (tests/unit/test_pids_limits.py); an nproc
    # ulimit would be no substitute (per uid across the host, not enforced for uid 0).
    assert not container.plain("ulimits"), f"{container.name} sets ulimits"


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_health_check_is_real_and_up_waits_for_it(stack, container):
    health = container.plain("healthcheck")
    assert health["tests"][0] in ("CMD", "CMD-SHELL") and len(health["tests"]) >= 2, (
        f"{container.name}: no check"
    )
    assert container.plain("wait") is True, f"{container.name}: up does not wait for healthy"
    assert container.plain("waitTimeout") >= 60, f"{container.name}: wait timeout too short"


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_restarts_and_rotates_logs(stack, container):
    assert container.plain("restart") == "unless-stopped", f"{container.name}: no restart policy"
    assert container.plain("logDriver") == "json-file", f"{container.name}: unexpected log driver"
    options = container.plain("logOpts")
    assert (options["max-size"], options["max-file"]) == ("10m", "3"), (
        f"{container.name}: logs not rotated"
    )
    assert options == LOG_OPTS, f"{container.name}: log lines without the shipper's labels"


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_image_is_referenced_by_digest_or_built_image_id(stack, container):
    image = container.plain("image")
    if CATALOG[labels_of(container)["napdms.service"]].build:
        assert image.startswith("sha256:"), (
            f"{container.name} runs {image!r}, not the built image's id"
        )
    else:
        assert "@sha256:" in image, f"{container.name} runs a floating tag"


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_ports_bind_the_lan_address_unless_exempted(stack, container):
    settings = load_settings(stack, stack_config(stack), set())
    address = settings.hosts[labels_of(container)["napdms.host"]].bind_address
    for port in container.plain("ports", []):
        if port["ip"] == "0.0.0.0":
            assert labels_of(container).get("napdms.exempt.port-all-interfaces"), (
                f"{container.name}: {port}"
            )
        else:
            assert port["ip"] == address, f"{container.name} binds {port['ip']}, not {address}"


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_joins_only_the_networks_its_catalog_entry_names(stack, container):
    service = labels_of(container)["napdms.service"]
    joined = {n["name"].rsplit("-", 1)[-1] for n in container.plain("networksAdvanced")}
    assert joined == set(CATALOG[service].networks), f"{container.name} joins {joined}"


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_labels_name_service_stack_and_backup_policy(stack, container):
    labels = labels_of(container)
    assert labels["napdms.stack"] == stack, f"{container.name}: wrong stack label"
    assert labels["napdms.service"], f"{container.name}: no service label"
    assert labels["napdms.backup"], f"{container.name}: no backup label"


def _init_of(stack, container):
    labels = labels_of(container)
    return next(
        c
        for c in program_of(stack).containers()
        if labels_of(c).get("napdms.role") == "init"
        and (labels_of(c)["napdms.service"], labels_of(c)["napdms.host"])
        == (labels["napdms.service"], labels["napdms.host"])
    )


WITH_SECRETS = [p for p in CONTAINERS if CATALOG[labels_of(p.values[1])["napdms.service"]].secrets]


@pytest.mark.parametrize("stack,container", WITH_SECRETS)
def test_secret_files_are_0400_and_owned_by_the_service_user(stack, container):
    # As the stack resolves it: the backup agent's secrets depend on the stack's databases and
    # target.
    service = load_stack(stack, stack_config(stack), set()).services[
        labels_of(container)["napdms.service"]
    ]
    uploads = {u["file"]: u for u in _init_of(stack, container).plain("uploads")}
    for use in service.secrets:
        upload = uploads[use.path]
        assert upload["permissions"] == "0400", (
            f"{container.name}: {use.path} mode {upload['permissions']}"
        )
        assert (upload["owner"], upload["group"]) == (str(service.uid), str(service.gid)), (
            f"{container.name}: {use.path}"
        )


@pytest.mark.parametrize("stack,container", CONTAINERS)
def test_secret_and_config_files_are_mounted_read_only(stack, container):
    # As the stack runs it: a stack's alerting may move Alertmanager's config among the secrets.
    service = read_stack(stack).services[labels_of(container)["napdms.service"]]
    seeded = {"/run/secrets"} if service.secrets else set()
    seeded |= {service.config_dir} if service.config_dir else set()
    mounts = {m["containerPath"]: m.get("readOnly", False) for m in container.plain("volumes", [])}
    for path in seeded:
        assert mounts.get(path) is True, f"{container.name}: {path} is not a read-only mount"
    assert not container.plain("uploads"), f"{container.name} uploads onto its read-only root"

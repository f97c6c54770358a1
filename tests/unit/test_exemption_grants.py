"""Which exemptions a stack grants, and the catalog entries that changed so that staging and prod
grant nothing that hands a container the host."""

from __future__ import annotations

import pytest

from components.catalog import CATALOG, cadvisor
from components.model.spec import Exemption
from components.settings import SettingsError, read_stack
from components.settings import model as settings_model
from policies.rules.grants import UNWAIVABLE, grant_key
from tests.program import labels_of, run_program

STRICT = ("staging", "prod")


@pytest.mark.parametrize("stack", STRICT)
def test_no_catalog_service_is_granted_an_unwaivable_rule(stack):
    for name, rules in read_stack(stack).grants.items():
        assert not set(rules) & UNWAIVABLE, f"{stack}: {name} is granted {set(rules) & UNWAIVABLE}"


@pytest.mark.parametrize("stack", STRICT)
def test_cadvisor_has_no_docker_socket_outside_dev(stack):
    spec = read_stack(stack).services["cadvisor"]
    sources = {m.source for m in spec.host_mounts}
    assert sources == {"/sys"}, f"{stack}: cadvisor mounts {sorted(sources)}"


def test_cadvisor_names_containers_through_the_socket_in_dev():
    spec = read_stack("dev").services["cadvisor"]
    assert "/var/run/docker.sock" in {m.source for m in spec.host_mounts}
    assert spec.exempt("docker-socket")


@pytest.mark.parametrize("stack", ["dev", *STRICT])
def test_node_exporter_reads_proc_and_sys_not_the_hosts_root(stack):
    spec = read_stack(stack).services["node-exporter"]
    assert {m.source for m in spec.host_mounts} == {"/proc", "/sys"}, f"{stack}: node-exporter"


@pytest.mark.parametrize("stack", STRICT)
def test_log_shipper_reads_only_the_containers_folder_read_only(stack):
    spec = read_stack(stack).services["log-shipper"]
    assert [m.source for m in spec.host_mounts] == ["/var/lib/docker/containers"], stack
    assert "docker-socket" not in spec.waivers() and "runtime-state-mount" not in spec.waivers()


def _cadvisor_also_privileged(monkeypatch) -> None:
    """The catalog's cAdvisor with one more exemption, from `privileged`, in every environment."""
    owner = CATALOG["cadvisor"].model_copy(
        update={
            "exemptions": [
                *cadvisor.SPEC.exemptions,
                Exemption(rule="privileged", reason="would need every device"),
            ]
        }
    )
    monkeypatch.setitem(settings_model.CATALOG, "cadvisor", owner)


def test_an_unwaivable_exemption_outside_dev_is_one_settings_line(monkeypatch):
    _cadvisor_also_privileged(monkeypatch)
    with pytest.raises(SettingsError) as error:
        read_stack("prod")
    assert str(error.value).splitlines() == [
        "prod: services.cadvisor.exemptions: privileged can never be waived in prod (it hands the "
        "container the host); change the service so it no longer needs it, or limit the "
        'exemption to environments: ["dev"]'
    ]


def test_the_same_exemption_is_granted_in_dev(monkeypatch):
    _cadvisor_also_privileged(monkeypatch)
    granted = read_stack("dev").grants["napdms-dev-cadvisor"]
    assert granted["privileged"] == "would need every device"


@pytest.mark.parametrize("stack", ["dev", *STRICT])
def test_every_container_the_program_labels_exempt_is_granted(stack):
    stack_grants = read_stack(stack).grants
    program = run_program(stack)
    for container in program.containers():
        name = container.plain("name")
        key = grant_key(name)
        recorded = {
            label.removeprefix("napdms.exempt."): reason
            for label, reason in labels_of(container).items()
            if label.startswith("napdms.exempt.")
        }
        assert recorded == stack_grants.get(key, {}), f"{stack}: {name} records {recorded}"

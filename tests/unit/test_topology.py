"""What is declared where: hosts, providers, networks, volumes, names, replicas."""

import os
from collections import Counter

import pytest

from components.catalog import CATALOG
from tests.conftest import program_of
from tests.program import labels_of

DOCKER_TYPES = (
    "docker:index/container:Container",
    "docker:index/network:Network",
    "docker:index/volume:Volume",
    "docker:index/remoteImage:RemoteImage",
    "docker:index/image:Image",
)


def _host_of(program, resource) -> str:
    """The host whose provider this resource is bound to."""
    provider_urn = (
        resource.provider.split("::id")[0].rsplit("::", 1)[0] if resource.provider else ""
    )
    return program.by_urn(provider_urn).name.removesuffix("-docker")


def test_every_docker_resource_is_bound_to_its_hosts_provider(program):
    for resource in program.resources:
        if resource.type in DOCKER_TYPES:
            assert resource.provider, f"{resource.name} uses the default provider"
            host = _host_of(program, resource)
            assert resource.name.startswith(f"{host}-"), f"{resource.name} is bound to host {host}"


def test_no_two_resources_share_a_name(program):
    counts = Counter((r.type, r.name) for r in program.resources)
    assert [key for key, n in counts.items() if n > 1] == []


def test_no_two_docker_objects_share_a_name_on_one_host(program):
    counts = Counter(
        (_host_of(program, r), r.type, r.plain("name"))
        for r in program.resources
        if r.type in DOCKER_TYPES[:3]
    )
    assert [key for key, n in counts.items() if n > 1] == []


def test_data_chat_and_monitoring_networks_are_internal_and_the_others_are_not(program):
    for network in program.of_type("docker:index/network:Network"):
        segment = labels_of(network)["napdms.segment"]
        assert network.plain("internal") == (segment in ("data", "chat", "monitoring")), (
            f"{network.name} internal flag"
        )


def _members(program, network_name: str) -> set[str]:
    return {
        labels_of(c)["napdms.service"]
        for c in program.services()
        if network_name in {n["name"] for n in c.plain("networksAdvanced")}
    }


def test_mongodb_shares_its_only_network_with_rocketchat_and_the_backup_agent_alone(program):
    [mongodb] = [c for c in program.services() if labels_of(c)["napdms.service"] == "mongodb"]
    [network] = [n["name"] for n in mongodb.plain("networksAdvanced")]
    assert network == f"napdms-{program.stack}-chat", f"{mongodb.name} joins {network}"
    assert _members(program, network) == {"mongodb", "rocketchat", "backup-agent"}, (
        f"{network} members"
    )
    declared = next(
        n for n in program.of_type("docker:index/network:Network") if n.plain("name") == network
    )
    assert declared.plain("internal") is True, f"{network} has a route out"


def test_rocketchat_no_longer_joins_the_shared_data_network(program):
    assert "rocketchat" not in _members(program, f"napdms-{program.stack}-data")


def test_docker_hosts_are_the_stack_files_endpoints():
    assert {
        p.name: p.plain("host") for p in program_of("prod").of_type("pulumi:providers:docker")
    } == {
        "qnap-docker": "ssh://deploy@qnap.nap-dms.example.org",
        "asustor-docker": "ssh://deploy@asustor.nap-dms.example.org",
    }
    # dev names no endpoint: the provider takes DOCKER_HOST, else the local socket.
    dev = program_of("dev").of_type("pulumi:providers:docker")
    assert [(p.name, p.plain("host")) for p in dev] == [
        ("local-docker", os.environ.get("DOCKER_HOST"))
    ]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_qnap_runs_every_service_and_asustor_only_its_own(stack):
    program = program_of(stack)
    placed = {
        (labels_of(c)["napdms.host"], labels_of(c)["napdms.service"]) for c in program.services()
    }
    watcher = {"watcher", "watcher-alertmanager"}
    assert {s for h, s in placed if h == "qnap"} == set(CATALOG) - watcher
    assert {s for h, s in placed if h == "asustor"} == {"node-exporter"} | watcher


def test_dev_runs_every_service_on_the_local_daemon():
    placed = {
        (labels_of(c)["napdms.host"], labels_of(c)["napdms.service"])
        for c in program_of("dev").services()
    }
    assert placed == {("local", s) for s in CATALOG}


def test_prod_runs_two_replicas_of_every_stateless_service():
    replicas = Counter(labels_of(c)["napdms.service"] for c in program_of("prod").services())
    for name, spec in CATALOG.items():
        if spec.stateless:
            assert replicas[name] >= 2, f"prod runs {replicas[name]} replica(s) of {name}"


def test_every_volume_is_backed_up_or_excluded_with_a_reason(program):
    for volume in program.of_type("docker:index/volume:Volume"):
        labels = labels_of(volume)
        assert labels["napdms.backup"] in ("daily", "exclude"), (
            f"{volume.name} has no backup policy"
        )
        if labels["napdms.backup"] == "exclude":
            assert labels.get("napdms.backup.reason"), f"{volume.name} is excluded without a reason"


def test_backup_agent_reads_every_daily_volume_of_its_host_without_a_dump_read_only(program):
    agent = next(c for c in program.services() if labels_of(c)["napdms.service"] == "backup-agent")
    host = labels_of(agent)["napdms.host"]
    daily = {
        v.plain("name")
        for v in program.of_type("docker:index/volume:Volume")
        if labels_of(v)["napdms.backup"] == "daily"
        and labels_of(v)["napdms.host"] == host
        and not CATALOG[labels_of(v)["napdms.service"]].backup_hook
    }
    mounted = {
        m["volumeName"]: m.get("readOnly", False)
        for m in agent.plain("volumes")
        if "volumeName" in m
    }
    missing = daily - set(mounted)
    assert not missing, f"backup-agent does not read {missing}"
    assert all(mounted[v] for v in daily), "backup-agent mounts a source volume writable"


def _inits(program):
    return [c for c in program.containers() if labels_of(c).get("napdms.role") == "init"]


def test_every_service_with_files_or_root_owned_volumes_has_an_init_container(program):
    needing = {
        (labels_of(c)["napdms.host"], labels_of(c)["napdms.service"])
        for c in program.services()
        if any(
            m.get("containerPath")
            in ("/run/secrets", CATALOG[labels_of(c)["napdms.service"]].config_dir)
            for m in c.plain("volumes", [])
        )
        or any(v.chown for v in CATALOG[labels_of(c)["napdms.service"]].volumes)
    }
    having = {
        (labels_of(c)["napdms.host"], labels_of(c)["napdms.service"]) for c in _inits(program)
    }
    assert needing and needing == having


def test_init_container_seeds_files_then_exits(program):
    for init in _inits(program):
        # Created with its uploads, started by its run command once its PIDs limit is set
        # (tests/unit/test_pids_limits.py).
        assert init.plain("mustRun") is False and init.plain("start") is False, (
            f"{init.name} is not one-shot"
        )
        assert init.plain("restart") == "no", f"{init.name} would restart"
        assert init.plain("capabilities") == {"drops": ["ALL"], "adds": ["CHOWN", "FOWNER"]}, (
            f"{init.name} caps"
        )
        assert init.plain("networkMode") == "none", f"{init.name} has a network"
        # What its new files do to the service (replace it, or reload it): test_proxy_reload.py.


@pytest.mark.parametrize("stack,protected", [("dev", False), ("staging", True), ("prod", True)])
def test_backed_up_volumes_are_protected_from_deletion_outside_dev(stack, protected):
    for volume in program_of(stack).of_type("docker:index/volume:Volume"):
        expected = protected and labels_of(volume)["napdms.backup"] == "daily"
        assert volume.protect == expected, f"{volume.name}: protect={volume.protect}"


def test_services_start_after_the_services_they_depend_on(program):
    urns = {c.name: c.urn for c in program.containers()}
    for container in program.services():
        service = CATALOG[labels_of(container)["napdms.service"]]
        host = labels_of(container)["napdms.host"]
        for dependency in service.depends_on:
            needed = urns[f"{host}-{dependency}-1"]
            assert needed in container.dependencies, (
                f"{container.name} may start before {dependency}"
            )


def test_volumes_prepared_by_the_init_container_are_not_refilled_from_the_image(program):
    for container in program.services():
        service = CATALOG[labels_of(container)["napdms.service"]]
        prepared = {m["target"]: m for m in container.plain("mounts", [])}
        for volume in service.volumes:
            if volume.chown:
                assert prepared[volume.path]["volumeOptions"]["noCopy"] is True, (
                    f"{container.name} {volume.path}"
                )
            else:
                assert volume.path not in prepared, f"{container.name} {volume.path}"

"""The adapters turn pulumi-docker properties and `docker inspect` documents into the same facts."""

import copy

import pytest

from policies.rules import (
    CONTAINER_RULES,
    Mount,
    NetworkFacts,
    PublishedPort,
    VolumeFacts,
    check_container,
    from_docker,
    from_pulumi,
)

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
DIGEST = "sha256:" + "0123456789abcdef" * 4
MB = 1024 * 1024

HARDENED_PROPS = {
    "name": "napdms-dev-web-blue",
    "image": f"registry.lan/web@{DIGEST}",
    "user": "1000:1000",
    "capabilities": {"drops": ["ALL"]},
    "memory": 256,
    "memorySwap": 256,
    "cpus": "0.5",
    "ulimits": [
        {"name": "nofile", "soft": 1024, "hard": 1024},
        {"name": "nproc", "soft": 128, "hard": 128},
    ],
    "healthcheck": {
        "tests": ["CMD-SHELL", "wget -qO- http://127.0.0.1:8080/up"],
        "interval": "10s",
    },
    "readOnly": True,
    "securityOpts": ["no-new-privileges:true"],
    "restart": "unless-stopped",
    "logDriver": "json-file",
    "logOpts": {"max-size": "10m", "max-file": "3"},
    "ports": [{"internal": 8080, "external": 8080, "ip": "192.168.1.10"}],
    "networksAdvanced": [{"name": "napdms-dev-app"}],
    "labels": [
        {"label": "napdms.managed-by", "value": "pulumi"},
        {"label": "napdms.stack", "value": "dev"},
    ],
}

HARDENED_INSPECT = {
    "Id": "4f1c2b3a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a",
    "Name": "/napdms-dev-web-blue",
    "Config": {
        "User": "1000:1000",
        "Image": f"registry.lan/web@{DIGEST}",
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "WEB_SECRET_FILE=/run/secrets/web",
        ],
        "Labels": {"napdms.managed-by": "pulumi", "napdms.stack": "dev"},
        "Healthcheck": {
            "Test": ["CMD-SHELL", "wget -qO- http://127.0.0.1:8080/up"],
            "Interval": 10_000_000_000,
        },
    },
    "HostConfig": {
        "Privileged": False,
        "CapAdd": None,
        "CapDrop": ["ALL"],
        "Memory": 268435456,
        "NanoCpus": 500_000_000,
        "CpuShares": 0,
        "CpuQuota": 0,
        "CpuPeriod": 0,
        "PidsLimit": 256,
        "Ulimits": None,
        "ReadonlyRootfs": True,
        "SecurityOpt": ["no-new-privileges:true"],
        "NetworkMode": "napdms-dev-app",
        "PidMode": "",
        "IpcMode": "private",
        "UTSMode": "",
        "UsernsMode": "",
        "Devices": [],
        "PortBindings": {"8080/tcp": [{"HostIp": "192.168.1.10", "HostPort": "8080"}]},
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        "LogConfig": {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}},
        "Tmpfs": {"/tmp": "rw,noexec,nosuid,size=65536k"},
    },
    "Mounts": [
        {
            "Type": "volume",
            "Name": "napdms-dev-web-data",
            "Source": "/var/lib/docker/volumes/napdms-dev-web-data/_data",
            "Destination": "/data",
            "Driver": "local",
            "Mode": "z",
            "RW": True,
            "Propagation": "",
        }
    ],
    "NetworkSettings": {"Networks": {"napdms-dev-edge": {}, "napdms-dev-app": {}}},
}


def props(**changes):
    """The hardened pulumi-docker properties with `changes` applied."""
    return {**HARDENED_PROPS, **changes}


def inspect(host_config=None, config=None, **top):
    """The hardened inspect document with HostConfig / Config / top-level keys changed."""
    document = copy.deepcopy(HARDENED_INSPECT)
    document["HostConfig"].update(host_config or {})
    document["Config"].update(config or {})
    document.update(top)
    return document


@pytest.mark.parametrize(
    "adapt",
    [
        pytest.param(lambda: from_pulumi.container(HARDENED_PROPS, "web"), id="from_pulumi"),
        pytest.param(lambda: from_docker.container(HARDENED_INSPECT), id="from_docker"),
    ],
)
def test_hardened_container_passes_every_rule(adapt):
    facts = adapt()
    assert [f.message for rule in CONTAINER_RULES for f in check_container(facts, rule)] == []


# from_pulumi


def test_pulumi_name_property_wins_over_resource_name():
    assert from_pulumi.container(HARDENED_PROPS, "web").name == "napdms-dev-web-blue"
    assert from_pulumi.container({}, "web").name == "web"


def test_pulumi_memory_megabytes_become_bytes():
    assert from_pulumi.container(props(memory=512), "web").memory_bytes == 512 * MB


def test_pulumi_cpus_string_becomes_float():
    assert from_pulumi.container(props(cpus="1.5"), "web").cpus == 1.5


def test_pulumi_nproc_ulimit_is_the_pids_limit():
    assert from_pulumi.container(HARDENED_PROPS, "web").pids_limit == 128


def test_pulumi_without_nproc_ulimit_has_no_pids_limit():
    facts = from_pulumi.container(
        props(ulimits=[{"name": "nofile", "soft": 1024, "hard": 1024}]), "web"
    )
    assert facts.pids_limit == 0


def test_pulumi_volumes_and_mounts_become_mounts():
    facts = from_pulumi.container(
        props(
            volumes=[
                {"hostPath": "/srv/napdms/certs", "containerPath": "/certs", "readOnly": True},
                {"volumeName": "pgdata", "containerPath": "/var/lib/postgresql/data"},
            ],
            mounts=[{"type": "bind", "source": "/etc/ssl", "target": "/etc/ssl", "readOnly": True}],
            tmpfs={"/tmp": "size=64m"},
        ),
        "db",
    )
    assert facts.mounts == (
        Mount("bind", "/srv/napdms/certs", "/certs", read_only=True),
        Mount("volume", "pgdata", "/var/lib/postgresql/data"),
        Mount("bind", "/etc/ssl", "/etc/ssl", read_only=True),
        Mount("tmpfs", "", "/tmp"),
    )


def test_pulumi_port_without_ip_faces_every_interface():
    [port] = from_pulumi.container(props(ports=[{"internal": 80, "external": 8080}]), "web").ports
    assert port == PublishedPort("0.0.0.0", 8080, 80, "tcp")


def test_pulumi_port_keeps_ip_and_protocol():
    ports = [{"internal": 53, "external": 5353, "ip": "192.168.1.10", "protocol": "udp"}]
    [port] = from_pulumi.container(props(ports=ports), "dns").ports
    assert port == PublishedPort("192.168.1.10", 5353, 53, "udp")


def test_pulumi_unknown_image_is_none_and_not_judged():
    facts = from_pulumi.container(props(image=UNKNOWN), "web")
    assert facts.image is None
    [rule] = [r for r in CONTAINER_RULES if r.id == "image-not-pinned"]
    assert check_container(facts, rule) == []


def test_pulumi_exemption_label_unknown_during_preview_exempts_nothing():
    props = {
        "user": "root",
        "labels": [
            {"label": "napdms.exempt.run-as-root", "value": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}
        ],
    }
    assert from_pulumi.container(props, "x").exemption("run-as-root") is None


def test_pulumi_labels_list_becomes_dict():
    facts = from_pulumi.container(HARDENED_PROPS, "web")
    assert facts.labels == {"napdms.managed-by": "pulumi", "napdms.stack": "dev"}


def test_pulumi_envs_are_split_on_first_equals():
    facts = from_pulumi.container(
        props(envs=["DATABASE_URL=postgres://db/app?sslmode=require", "DEBUG"]), "web"
    )
    assert facts.env == (("DATABASE_URL", "postgres://db/app?sslmode=require"), ("DEBUG", ""))


def test_pulumi_on_failure_retries():
    facts = from_pulumi.container(props(restart="on-failure", maxRetryCount=3), "web")
    assert (facts.restart, facts.max_retries) == ("on-failure", 3)


def test_pulumi_volume_facts():
    volume = from_pulumi.volume(
        {"name": "pgdata", "labels": [{"label": "napdms.backup", "value": "daily"}]}, "db-data"
    )
    assert volume == VolumeFacts("pgdata", {"napdms.backup": "daily"})


def test_pulumi_network_facts():
    labels = [{"label": "napdms.segment", "value": "data"}]
    network = from_pulumi.network({"internal": True, "labels": labels}, "napdms-prod-data")
    assert network == NetworkFacts(
        "napdms-prod-data", internal=True, labels={"napdms.segment": "data"}
    )


# from_docker


def test_docker_name_loses_leading_slash():
    assert from_docker.container(HARDENED_INSPECT).name == "napdms-dev-web-blue"


def test_docker_nano_cpus():
    assert from_docker.container(HARDENED_INSPECT).cpus == 0.5


@pytest.mark.parametrize(
    "quota, period, cpus",
    [
        pytest.param(150_000, 100_000, 1.5, id="quota-and-period"),
        pytest.param(50_000, 0, 0.5, id="default-period"),
        pytest.param(-1, 100_000, 0.0, id="unlimited-quota"),
    ],
)
def test_docker_cpu_quota_and_period(quota, period, cpus):
    facts = from_docker.container(inspect({"NanoCpus": 0, "CpuQuota": quota, "CpuPeriod": period}))
    assert facts.cpus == cpus


def test_docker_cpu_shares():
    assert from_docker.container(inspect({"NanoCpus": 0, "CpuShares": 512})).cpu_shares == 512


@pytest.mark.parametrize(
    "pids_limit, ulimits, expected",
    [
        pytest.param(256, None, 256, id="pids-limit"),
        pytest.param(None, [{"Name": "nproc", "Soft": 64, "Hard": 128}], 128, id="nproc-ulimit"),
        pytest.param(
            -1, [{"Name": "nproc", "Soft": 64, "Hard": 128}], 128, id="unlimited-pids-then-nproc"
        ),
        pytest.param(None, [{"Name": "nofile", "Soft": 1024, "Hard": 1024}], 0, id="none"),
    ],
)
def test_docker_pids_limit(pids_limit, ulimits, expected):
    facts = from_docker.container(inspect({"PidsLimit": pids_limit, "Ulimits": ulimits}))
    assert facts.pids_limit == expected


def test_docker_mounts_name_volumes_and_keep_bind_sources():
    bind = {
        "Type": "bind",
        "Source": "/srv/napdms/certs",
        "Destination": "/certs",
        "Mode": "ro",
        "RW": False,
        "Propagation": "rprivate",
    }
    facts = from_docker.container(inspect(Mounts=HARDENED_INSPECT["Mounts"] + [bind]))
    assert facts.mounts == (
        Mount("volume", "napdms-dev-web-data", "/data"),
        Mount("bind", "/srv/napdms/certs", "/certs", read_only=True),
        Mount("tmpfs", "", "/tmp"),
    )


def test_docker_port_binding_with_empty_host_ip_faces_every_interface():
    bindings = {"53/udp": [{"HostIp": "", "HostPort": "5353"}]}
    [port] = from_docker.container(inspect({"PortBindings": bindings})).ports
    assert port == PublishedPort("", 5353, 53, "udp")
    assert port.all_interfaces


def test_docker_unpublished_exposed_port_has_no_binding():
    assert from_docker.container(inspect({"PortBindings": {"8080/tcp": None}})).ports == ()


def test_docker_restart_policy():
    facts = from_docker.container(
        inspect({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 6}})
    )
    assert (facts.restart, facts.max_retries) == ("on-failure", 6)


def test_docker_log_config():
    facts = from_docker.container(HARDENED_INSPECT)
    assert facts.log_driver == "json-file"
    assert facts.log_opts == {"max-file": "3", "max-size": "10m"}


def test_docker_health_check_test():
    facts = from_docker.container(HARDENED_INSPECT)
    assert facts.health_test == ("CMD-SHELL", "wget -qO- http://127.0.0.1:8080/up")


def test_docker_without_health_check_has_empty_test():
    document = inspect()
    del document["Config"]["Healthcheck"]
    assert from_docker.container(document).health_test == ()


def test_docker_env_is_split():
    facts = from_docker.container(HARDENED_INSPECT)
    assert ("WEB_SECRET_FILE", "/run/secrets/web") in facts.env


def test_docker_volume_facts():
    volume = from_docker.volume(
        {"Name": "pgdata", "Labels": {"napdms.backup": "daily"}, "Driver": "local"}, host="qnap"
    )
    assert volume == VolumeFacts("pgdata", {"napdms.backup": "daily"}, "qnap")


def test_docker_network_without_labels():
    network = from_docker.network({"Name": "napdms-prod-data", "Internal": True, "Labels": None})
    assert network == NetworkFacts("napdms-prod-data", internal=True)

"""The adapters turn pulumi-docker properties and `docker inspect` documents into the same facts."""

import copy

import pytest

from policies.rules import (
    CONTAINER_RULES,
    STACK_RULES,
    Mount,
    NetworkFacts,
    PublishedPort,
    StackFacts,
    VolumeFacts,
    check_container,
    check_stack,
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
        "MemorySwap": 268435456,
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


def test_pulumi_nproc_ulimit_is_no_pids_limit():
    # pulumi-docker 5.x has no pids field: the limit comes from a command beside the container
    # (tests/policy/test_pids_limit.py), and nproc (per uid across the host) is not one.
    assert from_pulumi.container(HARDENED_PROPS, "web").pids_limit == 0


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
        Mount("tmpfs", "", "/tmp", options="size=64m"),
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
        pytest.param(None, [{"Name": "nproc", "Soft": 64, "Hard": 128}], 0, id="nproc-is-none"),
        pytest.param(
            -1, [{"Name": "nproc", "Soft": 64, "Hard": 128}], 0, id="unlimited-despite-nproc"
        ),
        pytest.param(0, None, 0, id="zero-is-unlimited"),
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
        Mount("tmpfs", "", "/tmp", options="rw,noexec,nosuid,size=65536k"),
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
    assert volume == VolumeFacts("pgdata", {"napdms.backup": "daily"}, "qnap", driver="local")


def test_docker_network_without_labels():
    network = from_docker.network({"Name": "napdms-prod-data", "Internal": True, "Labels": None})
    assert network == NetworkFacts("napdms-prod-data", internal=True)


# The fields that reach the host another way (issue 11), from both adapters


def test_pulumi_groups_swap_namespaces_runtime_and_devices():
    facts = from_pulumi.container(
        props(
            groupAdds=["0", "docker"],
            memorySwap=-1,
            cgroupnsMode="host",
            runtime="nvidia",
            networkMode="container:napdms-prod-db-1",
            gpus="all",
            deviceRequests=[{"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}],
            deviceCgroupRules=["c 1:3 mr"],
            volumes=[{"fromContainer": "napdms-prod-db-1"}],
        ),
        "web",
    )
    assert facts.group_add == ("0", "docker")
    assert facts.memory_swap_bytes == -1
    assert (facts.cgroupns_mode, facts.runtime) == ("host", "nvidia")
    assert facts.network_mode == "container:napdms-prod-db-1"
    assert facts.device_requests == ("gpus all", "driver nvidia count -1 capabilities gpu")
    assert facts.device_cgroup_rules == ("c 1:3 mr",)
    assert facts.volumes_from == ("napdms-prod-db-1",)


@pytest.mark.parametrize(
    "swap, expected",
    [
        pytest.param(256, 256 * MB, id="megabytes"),
        pytest.param(-1, -1, id="unlimited"),
        pytest.param(None, 0, id="unset"),
        pytest.param(UNKNOWN, None, id="unknown"),
    ],
)
def test_pulumi_memory_swap(swap, expected):
    assert from_pulumi.container(props(memorySwap=swap), "web").memory_swap_bytes == expected


def test_pulumi_inline_bind_volume_becomes_a_bind_of_its_device():
    mounts = [
        {
            "type": "volume",
            "source": "disguised",
            "target": "/host",
            "readOnly": True,
            "volumeOptions": {
                "driverName": "local",
                "driverOptions": {"type": "none", "o": "bind", "device": "/."},
            },
        },
        {
            "type": "volume",
            "source": "pgdata",
            "target": "/data",
            "volumeOptions": {"noCopy": True},
        },
        {"type": "bind", "source": "/var/lib/docker", "target": "/docker", "readOnly": True},
        {"type": "tmpfs", "target": "/scratch", "tmpfsOptions": {"sizeBytes": 1024}},
    ]
    facts = from_pulumi.container(props(mounts=mounts), "web")
    assert facts.mounts == (
        Mount("bind", "/.", "/host", True, volume="disguised"),
        Mount("volume", "pgdata", "/data"),
        Mount("bind", "/var/lib/docker", "/docker", True),
        Mount("tmpfs", "", "/scratch"),
    )


def test_pulumi_volume_driver_options():
    volume = from_pulumi.volume(
        {"driver": "local", "driverOpts": {"type": "none", "o": "bind", "device": "/etc"}}, "v"
    )
    assert (volume.driver, volume.bind_source) == ("local", "/etc")


def test_docker_groups_swap_namespaces_runtime_and_devices():
    facts = from_docker.container(
        inspect(
            {
                "GroupAdd": ["0"],
                "MemorySwap": -1,
                "CgroupnsMode": "host",
                "Runtime": "io.containerd.runtime.v1.linux",
                "PidMode": "container:4f1c2b3a9d8e",
                "VolumesFrom": ["napdms-prod-db-1:ro"],
                "DeviceRequests": [
                    {"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]]}
                ],
                "DeviceCgroupRules": ["c 1:3 mr"],
            }
        )
    )
    assert facts.group_add == ("0",)
    assert facts.memory_swap_bytes == -1
    assert (facts.cgroupns_mode, facts.runtime) == ("host", "io.containerd.runtime.v1.linux")
    assert facts.pid_mode == "container:4f1c2b3a9d8e"
    assert facts.volumes_from == ("napdms-prod-db-1:ro",)
    assert facts.device_requests == ("driver any count -1 capabilities gpu",)
    assert facts.device_cgroup_rules == ("c 1:3 mr",)


@pytest.mark.parametrize(
    "masked, read_only, unconfined",
    [
        pytest.param([], [], True, id="systempaths-unconfined"),
        pytest.param(None, None, False, id="privileged-has-none"),
        pytest.param(["/proc/kcore"], ["/proc/sys"], False, id="default-lists"),
    ],
)
def test_docker_systempaths_unconfined_is_read_from_the_emptied_lists(
    masked, read_only, unconfined
):
    facts = from_docker.container(inspect({"MaskedPaths": masked, "ReadonlyPaths": read_only}))
    assert ("systempaths=unconfined" in facts.security_opts) is unconfined


def test_docker_inline_bind_volume_and_tmpfs_options():
    mounts = [
        {
            "Type": "volume",
            "Name": "disguised",
            "Source": "/x/_data",
            "Destination": "/host",
            "RW": False,
        },
        {"Type": "tmpfs", "Source": "", "Destination": "/scratch", "RW": True},
    ]
    specs = [
        {
            "Type": "volume",
            "Source": "disguised",
            "Target": "/host",
            "VolumeOptions": {
                "DriverConfig": {
                    "Name": "local",
                    "Options": {"type": "none", "o": "bind", "device": "/var/lib/docker"},
                }
            },
        },
        {
            "Type": "tmpfs",
            "Target": "/scratch",
            "TmpfsOptions": {"Options": [["exec"], ["mode", "1777"]]},
        },
    ]
    facts = from_docker.container(
        inspect({"Mounts": specs, "Tmpfs": {"/tmp": "exec,size=1m", "/run": ""}}, Mounts=mounts)
    )
    assert facts.mounts == (
        Mount("bind", "/var/lib/docker", "/host", True, volume="disguised"),
        Mount("tmpfs", "", "/scratch", options="exec,mode=1777"),
        Mount("tmpfs", "", "/tmp", options="exec,size=1m"),
        Mount("tmpfs", "", "/run"),
    )


def test_docker_volume_options():
    volume = from_docker.volume(
        {"Name": "v", "Driver": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}
    )
    assert (volume.driver, volume.bind_source) == ("local", "/")


def _found(facts):
    return {f.rule.id for rule in CONTAINER_RULES for f in check_container(facts, rule)}


FLAWED_PROPS = props(
    user="1000:0",
    groupAdds=["0"],
    capabilities={"drops": ["ALL"], "adds": ["cap_sys_time"]},
    labels=[
        {"label": "napdms.managed-by", "value": "pulumi"},
        {"label": "napdms.stack", "value": "dev"},
        {"label": "napdms.cap-add.SYS_TIME", "value": "fixture"},
    ],
    memorySwap=-1,
    securityOpts=["no-new-privileges:true", "label:disable", "systempaths=unconfined"],
    tmpfs={"/tmp": "rw,exec"},
    ports=[{"internal": 8080, "external": 8080, "ip": "::"}],
    volumes=[
        {"hostPath": "/var/lib/docker/", "containerPath": "/docker", "readOnly": True},
        {"hostPath": "/./etc//", "containerPath": "/host-etc", "readOnly": True},
    ],
    cgroupnsMode="host",
    runtime="io.containerd.runtime.v1.linux",
    deviceCgroupRules=["c 1:3 mr"],
)
FLAWED_INSPECT = inspect(
    {
        "GroupAdd": ["0"],
        "CapAdd": ["CAP_SYS_TIME"],
        "MemorySwap": -1,
        "SecurityOpt": ["no-new-privileges:true", "label:disable"],
        "MaskedPaths": [],
        "ReadonlyPaths": [],
        "Tmpfs": {"/tmp": "rw,exec"},
        "PortBindings": {"8080/tcp": [{"HostIp": "::", "HostPort": "8080"}]},
        "CgroupnsMode": "host",
        "Runtime": "io.containerd.runtime.v1.linux",
        "DeviceCgroupRules": ["c 1:3 mr"],
    },
    {
        "User": "1000:0",
        "Labels": {
            "napdms.managed-by": "pulumi",
            "napdms.stack": "dev",
            "napdms.cap-add.SYS_TIME": "fixture",
        },
    },
    Mounts=[
        {"Type": "bind", "Source": "/var/lib/docker/", "Destination": "/docker", "RW": False},
        {"Type": "bind", "Source": "/./etc//", "Destination": "/host-etc", "RW": False},
    ],
)


def test_the_pack_and_the_audit_see_the_same_flaws():
    declared = _found(from_pulumi.container(FLAWED_PROPS, "web"))
    running = _found(from_docker.container(FLAWED_INSPECT))
    assert (
        declared
        == running
        == {
            "privileged-group",
            "dangerous-capability",
            "unconfined-profile",
            "memory-swap",
            "exec-tmpfs",
            "runtime-state-mount",
            "host-mount",
            "host-cgroupns",
            "container-runtime",
            "host-devices",
            "port-all-interfaces",
        }
    )


def test_the_pack_and_the_audit_see_the_same_bind_volume():
    [rule] = [r for r in STACK_RULES if r.id == "bind-volume"]
    options = {"type": "none", "o": "bind", "device": "/etc"}
    declared = StackFacts(
        containers=(
            from_pulumi.container(
                props(volumes=[{"volumeName": "disguised", "containerPath": "/x"}]), "web"
            ),
        ),
        volumes=(from_pulumi.volume({"name": "disguised", "driverOpts": options}, "v"),),
    )
    running = StackFacts(
        containers=(
            from_docker.container(
                inspect(
                    Mounts=[
                        {"Type": "volume", "Name": "disguised", "Destination": "/x", "RW": True}
                    ]
                )
            ),
        ),
        volumes=(from_docker.volume({"Name": "disguised", "Driver": "local", "Options": options}),),
    )
    assert [f.problem for f in check_stack(declared, rule)] == [
        f.problem for f in check_stack(running, rule)
    ]
    assert check_stack(declared, rule)

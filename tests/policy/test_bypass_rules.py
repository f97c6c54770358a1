"""The rules against their bypasses: other spellings of a path, a mode, a capability or an
address, and other fields that reach the same effect (issue 11, section 2)."""

from dataclasses import replace

import pytest

from policies.rules import (
    CONTAINER_RULES,
    STACK_RULES,
    ContainerFacts,
    Mount,
    PublishedPort,
    StackFacts,
    VolumeFacts,
    check_container,
    check_stack,
    from_docker,
    from_pulumi,
)
from policies.rules.facts import local_bind_source, normalize_host_path
from policies.rules.identity import DANGEROUS_CAPABILITIES, seccomp_profile_name
from tests.policy.test_container_rules import HARDENED

RULES = {rule.id: rule for rule in CONTAINER_RULES}
MOUNT_RULES = {"runtime-state-mount", "docker-socket", "container-logs-mount", "host-mount"}
MB = 1024 * 1024


def problems(facts: ContainerFacts, rule_id: str, config: dict | None = None) -> list[str]:
    return [f.problem for f in check_container(facts, RULES[rule_id], config)]


def found_ids(facts: ContainerFacts) -> set[str]:
    return {f.rule.id for rule in CONTAINER_RULES for f in check_container(facts, rule)}


def bind(source: str, read_only: bool = True) -> ContainerFacts:
    return replace(HARDENED, mounts=(Mount("bind", source, "/mnt", read_only),))


# Host paths


@pytest.mark.parametrize(
    "path, normal",
    [
        ("/.", "/"),
        ("//", "/"),
        ("/srv/../etc", "/etc"),
        ("/etc/", "/etc"),
        ("//etc", "/etc"),
        ("///var//lib/docker/", "/var/lib/docker"),
        ("/./etc/./", "/etc"),
        ("/../../etc", "/etc"),
        (" /etc ", "/etc"),
    ],
)
def test_host_paths_are_normalised(path, normal):
    assert normalize_host_path(path) == normal


@pytest.mark.parametrize(
    "source",
    [
        "/",
        "/.",
        "//",
        "/./",
        "/srv/..",
        "/var/lib/docker",
        "/var/lib/docker/",
        "//var//lib//docker",
        "/var/lib/docker/volumes/napdms-prod-pgdata/_data",
        "/var/lib/docker/containers/../volumes",
        "/var/lib/docker/containers/x/../../image",
        "/var/lib/docker/containersX",
        "/var/lib/docker/container",
        "/var/lib/containerd/containers",
        "/var/lib/containerd",
        "/var/lib/containers/storage",
        "/run/containerd/io.containerd.runtime.v2.task",
        "/run/containers/storage",
        "/var",
        "/var/lib",
        "/share/CACHEDEV1_DATA/Container/container-station-data/lib/docker",
        "/volume1/@docker",
        "/home/deploy/.local/share/containers/storage",
    ],
)
def test_root_and_runtime_state_are_runtime_state_mount(source):
    for read_only in (True, False):
        facts = bind(source, read_only)
        assert found_ids(facts) & MOUNT_RULES == {"runtime-state-mount"}, source


@pytest.mark.parametrize(
    "source",
    [
        "/var/lib/docker/containers",
        "/var/lib/docker/containers/",
        "//var//lib//docker//containers",
        "/var/lib/docker/./containers",
        "/var/lib/docker/containers/0a1b/0a1b-json.log",
        "/var/snap/docker/common/var-lib-docker/containers",
        "/share/CACHEDEV1_DATA/Container/container-station-data/lib/docker/containers",
        "/volume1/@docker/containers",
    ],
)
def test_dockers_containers_folder_read_only_is_container_logs_mount_only(source):
    assert found_ids(bind(source, True)) & MOUNT_RULES == {"container-logs-mount"}, source


@pytest.mark.parametrize(
    "source",
    ["/var/lib/docker/containers", "/volume1/@docker/containers/0a1b"],
)
def test_dockers_containers_folder_writable_is_runtime_state(source):
    """Whoever writes a container's config.v2.json runs it as they like at its next start."""
    assert found_ids(bind(source, False)) & MOUNT_RULES == {"runtime-state-mount"}, source


def test_a_containers_folder_that_another_reading_makes_a_host_folder_is_a_host_mount():
    """`/var/run` is `/run` on the host: `/var/run/../lib/docker/containers` is
    `/usr/lib/docker/containers`, under /usr, so the grantable reading does not count."""
    facts = bind("/var/run/../lib/docker/containers", True)
    assert found_ids(facts) & MOUNT_RULES == {"host-mount"}


def test_a_data_roots_containers_folder_elsewhere_counts_when_the_stack_names_the_root():
    facts = bind("/srv/docker-data/containers")
    config = {"stateDirs": ["/srv/docker-data"]}
    assert problems(facts, "container-logs-mount") == []
    assert problems(facts, "container-logs-mount", config)
    assert problems(facts, "runtime-state-mount", config) == []


def test_the_root_filesystem_is_named_as_such():
    [problem] = problems(bind("/."), "runtime-state-mount")
    assert "root filesystem" in problem and "read-only" in problem


def test_a_data_root_elsewhere_is_runtime_state_when_the_stack_names_it():
    facts = bind("/srv/docker-data/volumes")
    assert problems(facts, "runtime-state-mount") == []
    config = {"stateDirs": ["/srv/docker-data/"]}
    assert problems(facts, "runtime-state-mount", config)
    assert problems(bind("/srv"), "runtime-state-mount", config), "a folder above it reaches it"


@pytest.mark.parametrize(
    "source",
    [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/var/run/./docker.sock",
        "//run//docker.sock",
        "/tmp/dockerd.sock",
        "/run/containerd/containerd.sock",
        "/var/run/crio/crio.sock",
        "/run/podman/podman.sock",
        "/run/user/1000/podman/podman.sock",
        "/run/user/1000/docker.sock",
        "/var/run",
        "/run/",
        "/run/containerd",
        "/var/run/crio",
        "/run/podman",
        "/run/user/1000",
        "/var/lock/../docker.sock",
    ],
)
def test_every_runtime_socket_and_its_folder_is_docker_socket(source):
    assert found_ids(bind(source)) & MOUNT_RULES == {"docker-socket"}, source


@pytest.mark.parametrize(
    "source",
    [
        "/etc",
        "/srv/../etc",
        "/etc/.",
        "/var/run/../etc",  # /var/run is a link to /run: /run/.. is /
        "/root",
        "/home",
        "/home/deploy",
        "/boot",
        "/lib/modules",
        "/proc",
        "/sys/fs/cgroup",
        "/dev",
        "/dev/sda1",
        "/usr",
        "/usr/lib/docker",
    ],
)
def test_sensitive_host_folders_are_host_mount_read_only_too(source):
    for read_only in (True, False):
        assert found_ids(bind(source, read_only)) & MOUNT_RULES == {"host-mount"}, source


@pytest.mark.parametrize(
    "source",
    ["/srv/napdms/web", "/etcetera", "/srv/etc", "/run/secrets", "/share/Public/napdms", ""],
)
def test_ordinary_host_folders_pass_every_mount_rule(source):
    assert found_ids(bind(source)) & MOUNT_RULES == set()


@pytest.mark.parametrize("kind", ["bind", "BIND", " bind "])
def test_bind_kind_in_any_case(kind):
    facts = replace(HARDENED, mounts=(Mount(kind, "/etc", "/mnt"),))
    assert problems(facts, "host-mount")


def test_a_named_volume_is_not_a_host_path():
    facts = replace(
        HARDENED, mounts=(Mount("volume", "etc", "/etc/app"), Mount("volume", "/", "/x"))
    )
    assert found_ids(facts) & MOUNT_RULES == set()


def test_inline_bind_volume_is_judged_by_its_host_path():
    facts = replace(HARDENED, mounts=(Mount("bind", "/", "/host", True, volume="rootfs"),))
    [problem] = problems(facts, "runtime-state-mount")
    assert "through the local volume rootfs" in problem


# Named volumes that are binds


@pytest.mark.parametrize(
    "driver, options, source",
    [
        ("local", {"type": "none", "o": "bind", "device": "/etc"}, "/etc"),
        ("", {"type": "none", "o": "bind", "device": "/etc"}, "/etc"),
        ("LOCAL", {"Type": "none", "O": "rbind,ro", "Device": "/etc/"}, "/etc/"),
        ("local", {"type": "ext4", "device": "/dev/sda1"}, "/dev/sda1"),
        ("local", {"type": "nfs", "o": "addr=nas", "device": ":/export"}, None),
        ("local", {"type": "cifs", "o": "bind", "device": "//nas/share"}, None),
        ("local", {"type": "tmpfs", "device": "tmpfs"}, None),
        ("local", {}, None),
        ("rexray", {"o": "bind", "device": "/etc"}, None),
    ],
)
def test_local_bind_source(driver, options, source):
    assert local_bind_source(driver, options) == source


def _stack(volume: VolumeFacts, container_host: str = "") -> StackFacts:
    user = replace(
        HARDENED, host=container_host, mounts=(Mount("volume", volume.name, "/data", True),)
    )
    return StackFacts(containers=(user,), volumes=(volume,))


BIND_VOLUME = next(rule for rule in STACK_RULES if rule.id == "bind-volume")


@pytest.mark.parametrize(
    "device, kind",
    [
        ("/.", "root filesystem"),
        ("/var/lib/docker", "runtime-state-mount"),
        ("/var/lib/docker/containers", "container-logs-mount"),
        ("/var/run", "docker-socket"),
        ("/srv/../etc", "host-mount"),
        ("/srv/napdms/data", None),
    ],
)
def test_bind_volume_is_judged_like_the_bind_it_is(device, kind):
    volume = VolumeFacts("disguised", driver="local", options={"o": "bind", "device": device})
    found = [f.problem for f in check_stack(_stack(volume), BIND_VOLUME)]
    if kind is None:
        assert found == []
    else:
        [problem] = found
        assert kind in problem and "through the local volume disguised" in problem


def test_bind_volume_of_another_daemon_is_not_this_containers():
    volume = VolumeFacts(
        "disguised", host="qnap", driver="local", options={"o": "bind", "device": "/etc"}
    )
    assert check_stack(_stack(volume, container_host="asustor"), BIND_VOLUME) == []
    assert check_stack(_stack(volume, container_host="qnap"), BIND_VOLUME)


def test_an_ordinary_volume_passes_bind_volume():
    volume = VolumeFacts("pgdata", driver="local")
    assert check_stack(_stack(volume), BIND_VOLUME) == []


# Inherited mounts and joined namespaces


def test_volumes_from():
    assert problems(replace(HARDENED, volumes_from=("napdms-prod-db-1:ro",)), "volumes-from")
    assert problems(HARDENED, "volumes-from") == []


@pytest.mark.parametrize(
    "field, mode, joined",
    [
        ("network_mode", "container:db", True),
        ("network_mode", "CONTAINER:db", True),
        ("network_mode", " container: 4f1c2b3a9d8e", True),
        ("pid_mode", "container:db", True),
        ("ipc_mode", "container:db", True),
        ("network_mode", "bridge", False),
        ("network_mode", "napdms-prod-app", False),
        ("network_mode", "none", False),
        ("ipc_mode", "shareable", False),
        ("ipc_mode", "private", False),
        ("pid_mode", "", False),
    ],
)
def test_shared_namespace(field, mode, joined):
    assert bool(problems(replace(HARDENED, **{field: mode}), "shared-namespace")) is joined


@pytest.mark.parametrize(
    "mode, host",
    [("host", True), ("HOST", True), (" host ", True), ("private", False), ("", False)],
)
def test_host_cgroupns(mode, host):
    assert bool(problems(replace(HARDENED, cgroupns_mode=mode), "host-cgroupns")) is host


@pytest.mark.parametrize(
    "runtime, flagged",
    [
        ("", False),
        ("runc", False),
        ("RUNC", False),
        ("io.containerd.runc.v2", False),
        ("nvidia", True),
        ("io.containerd.runtime.v1.linux", True),
        ("runsc", True),
        ("/usr/local/bin/evil-runc", True),
    ],
)
def test_container_runtime(runtime, flagged):
    assert bool(problems(replace(HARDENED, runtime=runtime), "container-runtime")) is flagged


def test_a_stack_may_allow_a_vetted_runtime():
    config = {"allowedRuntimes": ["runc", "runsc"]}
    assert problems(replace(HARDENED, runtime="runsc"), "container-runtime", config) == []


# Devices and groups


@pytest.mark.parametrize(
    "changes",
    [
        {"devices": ("/dev/ttyUSB0",)},
        {"device_requests": ("gpus all",)},
        {"device_requests": ("driver nvidia count -1 capabilities gpu",)},
        {"device_cgroup_rules": ("c 1:3 mr",)},
        {"device_cgroup_rules": ("a *:* rwm",)},
    ],
)
def test_host_devices_every_way(changes):
    assert problems(replace(HARDENED, **changes), "host-devices")


@pytest.mark.parametrize(
    "user, groups, flagged",
    [
        ("1000:0", (), True),
        ("1000:root", (), True),
        ("1000:00", (), True),
        ("app: 0", (), True),
        ("1000:1000", ("0",), True),
        ("1000:1000", ("root",), True),
        ("1000:1000", ("docker",), True),
        ("", ("0",), True),
        ("1000:1000", (), False),
        ("1000", (), False),
        ("1000:1000", ("998",), False),
        ("1000:1000", ("audio",), False),
        ("0:0", (), False),  # root: run-as-root's finding
        ("root", ("docker",), False),
    ],
)
def test_privileged_group(user, groups, flagged):
    facts = replace(HARDENED, user=user, group_add=groups)
    assert bool(problems(facts, "privileged-group")) is flagged


def test_the_docker_groups_gid_is_a_setting():
    facts = replace(HARDENED, group_add=("998",))
    assert problems(facts, "privileged-group", {"dockerGroups": ["docker", "998"]})


def test_user_with_root_group_is_not_run_as_root():
    assert problems(replace(HARDENED, user="1000:0"), "run-as-root") == []
    assert problems(replace(HARDENED, user="+0:1000"), "run-as-root")


# Capabilities

REQUIRED_DANGEROUS = {
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_BOOT",
    "NET_ADMIN",
    "AUDIT_CONTROL",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "BPF",
    "PERFMON",
    "SYSLOG",
    "DAC_READ_SEARCH",
    "SETFCAP",
    "LINUX_IMMUTABLE",
}


def test_the_whole_dangerous_set_is_listed():
    assert REQUIRED_DANGEROUS <= DANGEROUS_CAPABILITIES


@pytest.mark.parametrize("cap", sorted(REQUIRED_DANGEROUS))
@pytest.mark.parametrize(
    "spell",
    [str, lambda c: "cap_" + c.lower(), lambda c: f" Cap_{c.title()} "],
    ids=["", "cap_", "mixed"],
)
def test_dangerous_capability_in_any_spelling(cap, spell):
    props = {"capabilities": {"drops": ["ALL"], "adds": [spell(cap)]}}
    inspect = {"HostConfig": {"CapDrop": ["ALL"], "CapAdd": [spell(cap)]}}
    for facts in (from_pulumi.container(props, "x"), from_docker.container(inspect)):
        assert any(cap in p for p in problems(facts, "dangerous-capability")), spell(cap)


@pytest.mark.parametrize("cap", ["NET_BIND_SERVICE", "CHOWN", "FOWNER", "SETUID", "SETGID"])
def test_ordinary_capabilities_are_not_dangerous(cap):
    assert problems(replace(HARDENED, cap_add=(cap,)), "dangerous-capability") == []


# Security options

ALLOW_ALL_PROFILE = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}'
DENY_PROFILE = (
    '{"defaultAction": "SCMP_ACT_ERRNO", '
    '"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}'
)


@pytest.mark.parametrize(
    "opt, unconfined",
    [
        ("systempaths=unconfined", True),
        ("systempaths:unconfined", True),
        ("SYSTEMPATHS=Unconfined", True),
        ("label=disable", True),
        ("label:disable", True),
        ("LABEL = DISABLE", True),
        ("label=type:spc_t", True),
        ("label:type:spc_t", True),
        ("seccomp:unconfined", True),
        ("Seccomp=UNCONFINED", True),
        ("apparmor:unconfined", True),
        (f"seccomp={ALLOW_ALL_PROFILE}", True),
        ("label=level:s0:c100,c200", False),
        ("label=type:svirt_apache_t", False),
        ("apparmor=docker-default", False),
        ("seccomp=/etc/docker/seccomp/web.json", False),
        (f"seccomp={DENY_PROFILE}", False),
        ("no-new-privileges", False),
    ],
)
def test_unconfined_profile_every_spelling(opt, unconfined):
    facts = replace(HARDENED, security_opts=("no-new-privileges:true", opt))
    assert bool(problems(facts, "unconfined-profile")) is unconfined


def test_a_privileged_containers_label_disable_is_privilegeds_finding():
    # The daemon adds label=disable to every privileged container it reports.
    facts = replace(HARDENED, privileged=True, security_opts=("label=disable",))
    assert problems(facts, "unconfined-profile") == []
    assert problems(facts, "privileged")


@pytest.mark.parametrize(
    "opt, name",
    [
        ("seccomp=/etc/docker/seccomp/web.json", "/etc/docker/seccomp/web.json"),
        ("seccomp:/etc/docker/seccomp/web.json", "/etc/docker/seccomp/web.json"),
        (f"seccomp={DENY_PROFILE}", seccomp_profile_name(DENY_PROFILE)),
        ("seccomp=unconfined", None),
        ("seccomp=builtin", None),
        ("seccomp=", None),
        ("apparmor=napdms-web", None),
    ],
)
def test_custom_seccomp_profile_names_the_profile(opt, name):
    found = problems(
        replace(HARDENED, security_opts=("no-new-privileges:true", opt)), "custom-seccomp-profile"
    )
    if name is None:
        assert found == []
    else:
        [problem] = found
        assert name in problem


def test_inline_profile_is_named_by_its_hash():
    assert seccomp_profile_name(DENY_PROFILE).startswith("sha256:")
    assert len(seccomp_profile_name(DENY_PROFILE)) == len("sha256:") + 16


@pytest.mark.parametrize(
    "value", ["/etc/docker/seccomp/web.json", DENY_PROFILE], ids=["file", "inline"]
)
def test_a_reviewed_profile_passes(value):
    facts = replace(HARDENED, security_opts=(f"seccomp={value}",))
    reviewed = {"reviewedProfiles": [seccomp_profile_name(value)]}
    assert problems(facts, "custom-seccomp-profile", reviewed) == []
    other = {"reviewedProfiles": ["/etc/docker/seccomp/other.json"]}
    assert problems(facts, "custom-seccomp-profile", other)


# Ports


@pytest.mark.parametrize(
    "host_ip, exposed",
    [
        ("::", True),
        ("[::]", True),
        ("0:0:0:0:0:0:0:0", True),
        ("0000:0000::0000", True),
        ("::ffff:0.0.0.0", True),
        ("[::ffff:0.0.0.0]", True),
        ("::%eth0", True),
        (" 0.0.0.0 ", True),
        ("::1", False),
        ("::ffff:192.168.1.10", False),
        ("fe80::1", False),
        ("2001:db8::10", False),
        ("127.0.0.1", False),
    ],
)
def test_port_on_any_wildcard_spelling(host_ip, exposed):
    facts = replace(HARDENED, ports=(PublishedPort(host_ip, 8443, 443),))
    assert bool(problems(facts, "port-all-interfaces")) is exposed


# Swap


@pytest.mark.parametrize(
    "memory_mb, swap, flagged",
    [
        (256, -1, True),
        (256, 0, True),  # unset: Docker allows as much swap again
        (256, 512 * MB, True),
        (256, 257 * MB, True),
        (256, 256 * MB, False),
        (256, None, False),  # not known yet
        (0, -1, False),  # no memory limit at all: no-memory-limit's finding
    ],
)
def test_memory_swap(memory_mb, swap, flagged):
    facts = replace(HARDENED, memory_bytes=memory_mb * MB, memory_swap_bytes=swap)
    assert bool(problems(facts, "memory-swap")) is flagged


# Secrets in the environment


@pytest.mark.parametrize(
    "name, value, flagged",
    [
        ("PGPASSWORD", "hunter2", True),
        ("MYSQL_ROOT_PASSWORD", "hunter2", True),
        ("MONGO_INITDB_ROOT_PASSWORD", "hunter2", True),
        ("GITEA_TOKEN", "abc", True),
        ("JWT_SECRET", "abc", True),
        ("N8N_ENCRYPTION_KEY", "abc", True),
        ("STRIPE_KEY", "sk_live_abc", True),
        ("pgpassword", "hunter2", True),
        ("MONGO_URL", "mongodb://rocketchat:hunter2@mongodb:27017/rocketchat", True),
        ("MONGO_URL", "mongodb://rc:hunter2@mongo-1,mongo-2/rocketchat?replicaSet=rs0", True),
        ("DATABASE_URL", "postgres://napdms:hunter2@postgres/napdms", True),
        ("REDIS_URL", "redis://:hunter2@redis:6379/0", True),
        ("DATABASE_URL", "host=postgres dbname=napdms password=hunter2", True),
        ("DATABASE_URL", "postgres://postgres/napdms?user=napdms&password=hunter2", True),
        ("PGPASSWORD", "/run/secrets/postgres-password", False),
        ("PGPASSFILE", "/run/secrets/pgpass", False),
        ("N8N_ENCRYPTION_KEY_FILE", "/run/secrets/n8n-key", False),
        ("MONGO_URL", "mongodb://mongodb:27017/rocketchat?authSource=admin", False),
        ("DATABASE_URL", "postgres://napdms@postgres/napdms?passfile=/run/secrets/pgpass", False),
        ("GPG_KEY", "A035C8C19219BA821ECEA86B64E628F8D684696D", False),
        ("SSH_PUBLIC_KEY", "ssh-ed25519 AAAA", False),
        ("MONKEY", "banana", False),
    ],
)
def test_literal_secret_env_common_names(name, value, flagged):
    found = problems(replace(HARDENED, env=((name, value),)), "literal-secret-env")
    assert bool(found) is flagged
    assert all("hunter2" not in p for p in found)


# tmpfs


@pytest.mark.parametrize(
    "options, weak",
    [
        ("", None),
        ("rw,noexec,nosuid,nodev,size=64m,mode=1777", None),
        ("size=64m", None),
        ("exec,noexec", None),
        ("exec", "exec"),
        ("rw,exec,size=1m", "exec"),
        ("EXEC", "exec"),
        ("noexec,exec", "exec"),
        ("suid", "suid"),
        ("dev", "dev"),
        (" exec , suid ", "exec,suid"),
    ],
)
def test_exec_tmpfs(options, weak):
    facts = replace(HARDENED, mounts=(Mount("tmpfs", "", "/tmp", options=options),))
    found = problems(facts, "exec-tmpfs")
    if weak is None:
        assert found == []
    else:
        [problem] = found
        assert problem.endswith(f"mounted {weak}")

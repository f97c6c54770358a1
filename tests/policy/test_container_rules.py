"""Container rules as specifications: a hardened container passes every rule, and each rule
catches the one field that breaks it."""

from dataclasses import replace

import pytest

from policies.rules import (
    CONTAINER_RULES,
    ContainerFacts,
    Mount,
    PublishedPort,
    check_container,
    from_docker,
    from_pulumi,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4
LABELS = {"napdms.managed-by": "pulumi", "napdms.stack": "dev"}
HARDENED = ContainerFacts(
    name="web",
    labels=LABELS,
    image=f"registry.lan/web@{DIGEST}",
    user="1000:1000",
    cap_drop=("ALL",),
    memory_bytes=256 * 1024 * 1024,
    memory_swap_bytes=256 * 1024 * 1024,
    cpus=0.5,
    pids_limit=256,
    health_test=("CMD-SHELL", "wget -qO- http://127.0.0.1:8080/up"),
    read_only_root=True,
    security_opts=("no-new-privileges:true",),
    restart="unless-stopped",
    log_driver="json-file",
    log_opts={"max-size": "10m", "max-file": "3"},
)
RULES = {rule.id: rule for rule in CONTAINER_RULES}


def problems(facts: ContainerFacts, rule_id: str) -> list[str]:
    """What one rule reports about `facts`."""
    return [finding.problem for finding in check_container(facts, RULES[rule_id])]


def found_ids(facts: ContainerFacts) -> set[str]:
    """Ids of every container rule that reports something about `facts`."""
    return {finding.rule.id for rule in CONTAINER_RULES for finding in check_container(facts, rule)}


BAD = [
    ("run-as-root", {"user": "0"}),
    ("privileged-group", {"user": "1000:0"}),
    ("privileged", {"privileged": True}),
    ("capabilities", {"cap_drop": ()}),
    ("dangerous-capability", {"cap_add": ("SYS_ADMIN",)}),
    ("no-new-privileges", {"security_opts": ()}),
    ("unconfined-profile", {"security_opts": ("no-new-privileges:true", "seccomp=unconfined")}),
    (
        "custom-seccomp-profile",
        {"security_opts": ("no-new-privileges:true", "seccomp=/etc/docker/web.json")},
    ),
    ("no-memory-limit", {"memory_bytes": 0}),
    ("memory-swap", {"memory_swap_bytes": -1}),
    ("no-cpu-limit", {"cpus": 0.0}),
    ("writable-root", {"read_only_root": False}),
    ("exec-tmpfs", {"mounts": (Mount("tmpfs", "", "/tmp", options="exec"),)}),
    ("docker-socket", {"mounts": (Mount("bind", "/var/run/docker.sock", "/var/run/docker.sock"),)}),
    ("runtime-state-mount", {"mounts": (Mount("bind", "/var/lib/docker", "/docker"),)}),
    (
        "container-logs-mount",
        {"mounts": (Mount("bind", "/var/lib/docker/containers", "/logs", True),)},
    ),
    ("host-mount", {"mounts": (Mount("bind", "/etc", "/host-etc"),)}),
    ("volumes-from", {"volumes_from": ("db",)}),
    ("host-network", {"network_mode": "host"}),
    ("host-pid", {"pid_mode": "host"}),
    ("host-ipc", {"ipc_mode": "host"}),
    ("host-uts", {"uts_mode": "host"}),
    ("host-userns", {"userns_mode": "host"}),
    ("host-cgroupns", {"cgroupns_mode": "host"}),
    ("shared-namespace", {"pid_mode": "container:db"}),
    ("container-runtime", {"runtime": "nvidia"}),
    ("host-devices", {"devices": ("/dev/ttyUSB0",)}),
    ("port-all-interfaces", {"ports": (PublishedPort("0.0.0.0", 8080, 8080),)}),
    ("literal-secret-env", {"env": (("POSTGRES_PASSWORD", "hunter2"),)}),
    ("image-not-pinned", {"image": "registry.lan/web:1.2"}),
    ("no-health-check", {"health_test": ()}),
    ("no-restart-policy", {"restart": ""}),
    ("no-log-rotation", {"log_driver": ""}),
    ("unmanaged-container", {"labels": {}}),
]


def test_bad_input_table_covers_every_container_rule():
    assert {rule_id for rule_id, _ in BAD} == {rule.id for rule in CONTAINER_RULES}


@pytest.mark.parametrize("rule", CONTAINER_RULES, ids=lambda rule: rule.id)
def test_hardened_container_passes(rule):
    assert check_container(HARDENED, rule) == []


@pytest.mark.parametrize("rule_id, changes", [pytest.param(r, c, id=r) for r, c in BAD])
def test_bad_container_is_found(rule_id, changes):
    assert rule_id in found_ids(replace(HARDENED, **changes))


@pytest.mark.parametrize("rule", CONTAINER_RULES, ids=lambda rule: rule.id)
def test_finding_says_how_to_fix_and_cites_a_reference(rule):
    findings = check_container(replace(HARDENED, **dict(BAD)[rule.id]), rule)
    assert findings
    assert all(rule.fix in f.message and rule.reference in f.message for f in findings)


# Identity


@pytest.mark.parametrize(
    "user, root",
    [
        pytest.param("1000", False, id="uid"),
        pytest.param("1000:1000", False, id="uid-gid"),
        pytest.param("1000:0", False, id="root-group-only"),
        pytest.param("app:app", False, id="named"),
        pytest.param("0", True, id="0"),
        pytest.param("0:0", True, id="0:0"),
        pytest.param("root", True, id="root"),
        pytest.param("root:root", True, id="root:root"),
        pytest.param("", True, id="missing"),
    ],
)
def test_run_as_root_judges_the_user_part(user, root):
    assert bool(problems(replace(HARDENED, user=user), "run-as-root")) is root


def test_capabilities_from_pulumi_are_normalised():
    facts = from_pulumi.container(
        {"capabilities": {"adds": ["cap_sys_admin"], "drops": ["all"]}}, "x"
    )
    assert any("SYS_ADMIN" in p for p in problems(facts, "dangerous-capability"))
    # Drop ALL is recognised: the only capabilities complaint is the undocumented add.
    assert all("SYS_ADMIN" in p for p in problems(facts, "capabilities"))


def test_capabilities_from_docker_are_normalised():
    facts = from_docker.container({"HostConfig": {"CapAdd": ["CAP_NET_ADMIN"], "CapDrop": ["all"]}})
    assert any("NET_ADMIN" in p for p in problems(facts, "dangerous-capability"))
    assert all("NET_ADMIN" in p for p in problems(facts, "capabilities"))


def test_documented_cap_add_passes_capabilities():
    facts = replace(
        HARDENED,
        cap_add=("NET_BIND_SERVICE",),
        labels={**LABELS, "napdms.cap-add.NET_BIND_SERVICE": "the proxy binds 80 and 443"},
    )
    assert problems(facts, "capabilities") == []


def test_undocumented_cap_add_fails_capabilities():
    facts = replace(HARDENED, cap_add=("NET_BIND_SERVICE",))
    assert any("NET_BIND_SERVICE" in p for p in problems(facts, "capabilities"))


def test_blank_cap_add_label_documents_nothing():
    facts = replace(
        HARDENED,
        cap_add=("NET_BIND_SERVICE",),
        labels={**LABELS, "napdms.cap-add.NET_BIND_SERVICE": " "},
    )
    assert problems(facts, "capabilities")


def test_documented_dangerous_capability_still_fails():
    facts = replace(
        HARDENED,
        cap_add=("SYS_ADMIN",),
        labels={**LABELS, "napdms.cap-add.SYS_ADMIN": "needs mount"},
    )
    assert problems(facts, "capabilities") == []
    assert any("SYS_ADMIN" in p for p in problems(facts, "dangerous-capability"))


@pytest.mark.parametrize(
    "opt, ok",
    [
        pytest.param("no-new-privileges", True, id="bare"),
        pytest.param("no-new-privileges:true", True, id="colon-true"),
        pytest.param("no-new-privileges=true", True, id="equals-true"),
        pytest.param("no-new-privileges:false", False, id="colon-false"),
        pytest.param("label=disable", False, id="other-option"),
    ],
)
def test_no_new_privileges_forms(opt, ok):
    assert (problems(replace(HARDENED, security_opts=(opt,)), "no-new-privileges") == []) is ok


@pytest.mark.parametrize(
    "opt, unconfined",
    [
        pytest.param("seccomp=unconfined", True, id="seccomp-equals"),
        pytest.param("seccomp:unconfined", True, id="seccomp-colon"),
        pytest.param("apparmor=unconfined", True, id="apparmor"),
        pytest.param("seccomp=/etc/docker/seccomp.json", False, id="seccomp-profile"),
        pytest.param("apparmor=docker-default", False, id="apparmor-profile"),
    ],
)
def test_unconfined_profile_forms(opt, unconfined):
    facts = replace(HARDENED, security_opts=("no-new-privileges:true", opt))
    assert bool(problems(facts, "unconfined-profile")) is unconfined


# Resources


def test_cpu_shares_alone_is_no_cpu_limit():
    [problem] = problems(replace(HARDENED, cpus=0.0, cpu_shares=512), "no-cpu-limit")
    assert "cpu_shares" in problem


# Isolation


@pytest.mark.parametrize(
    "source, sensitive",
    [
        pytest.param("/etc", True, id="etc"),
        pytest.param("/etc/ssl", True, id="under-etc"),
        pytest.param("/etc/", True, id="trailing-slash"),
        pytest.param("/", False, id="root-is-runtime-state-mount"),
        pytest.param("/usr/local/bin", True, id="under-usr"),
        pytest.param("/var/lib/docker", False, id="var-lib-docker-is-runtime-state-mount"),
        pytest.param("/etcetera", False, id="etcetera"),
        pytest.param("/srv/napdms/web", False, id="service-folder"),
    ],
)
def test_host_mount_sensitive_paths(source, sensitive):
    facts = replace(HARDENED, mounts=(Mount("bind", source, "/mnt", read_only=True),))
    assert bool(problems(facts, "host-mount")) is sensitive


def test_host_mount_ignores_named_volumes():
    facts = replace(HARDENED, mounts=(Mount("volume", "etc", "/etc/app"),))
    assert problems(facts, "host-mount") == []


@pytest.mark.parametrize(
    "source", ["/var/run/docker.sock", "/run/docker.sock", "/tmp/dockerd.sock"]
)
def test_docker_socket_is_found_once(source):
    facts = replace(
        HARDENED, mounts=(Mount("bind", source, "/var/run/docker.sock", read_only=True),)
    )
    assert any(source in p for p in problems(facts, "docker-socket"))
    assert problems(facts, "host-mount") == []


@pytest.mark.parametrize("source", ["/var/run", "/run/"])
def test_docker_socket_folder_counts_as_the_socket(source):
    facts = replace(HARDENED, mounts=(Mount("bind", source, "/host/run", read_only=True),))
    assert problems(facts, "docker-socket") and problems(facts, "host-mount") == []


@pytest.mark.parametrize(
    "host_ip, exposed",
    [
        pytest.param("0.0.0.0", True, id="ipv4-any"),
        pytest.param("", True, id="empty"),
        pytest.param("::", True, id="ipv6-any"),
        pytest.param("127.0.0.1", False, id="loopback"),
        pytest.param("192.168.1.10", False, id="lan"),
    ],
)
def test_port_all_interfaces(host_ip, exposed):
    facts = replace(HARDENED, ports=(PublishedPort(host_ip, 8443, 443),))
    found = problems(facts, "port-all-interfaces")
    assert bool(found) is exposed
    assert all("8443" in p for p in found)


# Exposure


@pytest.mark.parametrize(
    "name, value, flagged",
    [
        pytest.param("POSTGRES_PASSWORD", "hunter2", True, id="literal-password"),
        pytest.param("POSTGRES_PASSWORD_FILE", "/run/secrets/x", False, id="password-file"),
        pytest.param("DATABASE_URL", "postgres://u:pw@db/x", True, id="password-in-url"),
        pytest.param("DATABASE_URL", "postgres://db/x", False, id="url-without-password"),
        pytest.param("API_TOKEN", "abc123", True, id="token"),
        pytest.param("GPG_KEY", "ABC", False, id="gpg-key-fingerprint"),
        pytest.param("PATH", "/usr/bin", False, id="path"),
        pytest.param("POSTGRES_PASSWORD", "", False, id="empty-value"),
    ],
)
def test_literal_secret_env(name, value, flagged):
    found = problems(replace(HARDENED, env=((name, value),)), "literal-secret-env")
    assert bool(found) is flagged
    assert all(name in p for p in found)


def test_literal_secret_env_does_not_repeat_the_secret():
    [finding] = check_container(
        replace(HARDENED, env=(("POSTGRES_PASSWORD", "hunter2"),)), RULES["literal-secret-env"]
    )
    assert "hunter2" not in finding.message


# Operations


@pytest.mark.parametrize(
    "image, complaint",
    [
        pytest.param(f"repo@{DIGEST}", None, id="digest"),
        pytest.param(f"repo:1.2@{DIGEST}", None, id="tag-and-digest"),
        pytest.param(f"registry:5000/repo@{DIGEST}", None, id="registry-port-digest"),
        pytest.param(DIGEST, None, id="local-image-id"),
        pytest.param("repo:1.2", "tag only", id="tag-only"),
        pytest.param("repo", "neither tag", id="no-tag"),
        pytest.param("repo:latest", "floats", id="latest"),
        pytest.param("registry:5000/repo", "neither tag", id="registry-port-no-tag"),
        pytest.param("registry:5000/repo:1.2", "tag only", id="registry-port-tag"),
    ],
)
def test_image_not_pinned(image, complaint):
    found = problems(replace(HARDENED, image=image), "image-not-pinned")
    if complaint is None:
        assert found == []
    else:
        [problem] = found
        assert complaint in problem and image in problem


def test_unknown_image_is_not_judged():
    assert problems(replace(HARDENED, image=None), "image-not-pinned") == []


@pytest.mark.parametrize(
    "health, healthy",
    [
        pytest.param(("CMD", "pg_isready"), True, id="command"),
        pytest.param((), False, id="missing"),
        pytest.param(("NONE",), False, id="disabled"),
    ],
)
def test_no_health_check(health, healthy):
    assert (problems(replace(HARDENED, health_test=health), "no-health-check") == []) is healthy


@pytest.mark.parametrize(
    "restart, retries, ok",
    [
        pytest.param("unless-stopped", 0, True, id="unless-stopped"),
        pytest.param("always", 0, True, id="always"),
        pytest.param("on-failure", 5, True, id="on-failure-5"),
        pytest.param("on-failure", 6, False, id="on-failure-6"),
        pytest.param("on-failure", 0, False, id="on-failure-unlimited"),
        pytest.param("no", 0, False, id="no"),
        pytest.param("", 0, False, id="unset"),
    ],
)
def test_no_restart_policy(restart, retries, ok):
    facts = replace(HARDENED, restart=restart, max_retries=retries)
    assert (problems(facts, "no-restart-policy") == []) is ok


@pytest.mark.parametrize(
    "driver, opts, ok",
    [
        pytest.param("json-file", {"max-size": "10m"}, True, id="json-file-max-size"),
        pytest.param("json-file", {"max-file": "3"}, False, id="json-file-no-max-size"),
        pytest.param("local", {}, True, id="local"),
        pytest.param("journald", {}, True, id="journald"),
        pytest.param("none", {}, False, id="none"),
        pytest.param("", {}, False, id="unset"),
    ],
)
def test_no_log_rotation(driver, opts, ok):
    facts = replace(HARDENED, log_driver=driver, log_opts=opts)
    assert (problems(facts, "no-log-rotation") == []) is ok


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param({}, id="no-labels"),
        pytest.param({"napdms.managed-by": "compose", "napdms.stack": "dev"}, id="other-manager"),
        pytest.param({"napdms.managed-by": "pulumi"}, id="no-stack"),
    ],
)
def test_unmanaged_container(labels):
    assert problems(replace(HARDENED, labels=labels), "unmanaged-container")

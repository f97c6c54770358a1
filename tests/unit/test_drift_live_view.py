"""The live view's comparison on hand-made `docker inspect` documents: a faithful container gives
no finding, and each field a hand change can reach is reported with its class (major when it is
security-relevant, a different image, or a missing or unmanaged resource)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from components.settings import SettingsError
from napdms_ops.declared import Declared, Program, mock_repo_digest
from napdms_ops.drift.compare import container_findings, object_findings, unmanaged_findings
from napdms_ops.drift.expected import expected
from napdms_ops.drift.live import LiveViewError, live_view
from napdms_ops.drift.observed import Observed
from policies.rules import from_pulumi

STACK = "unit"
MB = 1024 * 1024
NS = 1_000_000_000
NAME = "napdms-unit-web-1"
INIT = "napdms-unit-web-init"
REF = "example.org/web:1.0"
IMAGE_ID = "sha256:" + "1" * 64
OTHER_ID = "sha256:" + "2" * 64
INIT_REF = "docker.io/library/busybox:1.37.0"
INIT_ID = "sha256:" + "3" * 64
CONTAINER_ID = "a" * 64
HEALTH = ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/"]

_HOST_URN = "urn:pulumi:unit::p::napdms:hosts:DockerHost::local"
_PROVIDER_URN = "urn:pulumi:unit::p::pulumi:providers:docker::local-docker"


def _resource(type_: str, name: str, inputs: dict, dependencies=(), parent="") -> Declared:
    return Declared(
        type=type_,
        name=name,
        inputs=inputs,
        provider=f"{_PROVIDER_URN}::local-docker-id",
        parent=parent or _HOST_URN,
        urn=f"urn:pulumi:unit::p::{type_}::{name}",
        protect=False,
        dependencies=list(dependencies),
    )


def _labels(**labels: str) -> list[dict[str, str]]:
    return [{"label": key, "value": value} for key, value in labels.items()]


def program() -> Program:
    """One host with a web service (a RemoteImage, its init container, a PIDs command, a data
    volume, one network) as the program would declare it."""
    host = _resource("napdms:hosts:DockerHost", "local", {}, parent="root")
    host.urn = _HOST_URN
    provider = _resource("pulumi:providers:docker", "local-docker", {})
    provider.urn = _PROVIDER_URN
    image = _resource("docker:index/remoteImage:RemoteImage", "local-web-image", {"name": REF})
    init_image = _resource(
        "docker:index/remoteImage:RemoteImage", "local-init-image", {"name": INIT_REF}
    )
    init = _resource(
        from_pulumi.CONTAINER,
        "local-web-init",
        {
            "name": INIT,
            "image": mock_repo_digest(INIT_REF),
            "user": "0:0",
            "capabilities": {"drops": ["ALL"], "adds": ["CHOWN"]},
            "networkMode": "none",
            "start": False,
            "restart": "no",
            "securityOpts": ["no-new-privileges:true"],
            "memory": 32,
            "memorySwap": 32,
            "cpus": "0.1",
            "volumes": [{"volumeName": "napdms-unit-web-data", "containerPath": "/data"}],
            "labels": _labels(**{"napdms.stack": STACK, "napdms.role": "init"}),
            "logDriver": "json-file",
            "logOpts": {"max-size": "10m"},
        },
        [init_image.urn],
    )
    web = _resource(
        from_pulumi.CONTAINER,
        "local-web-1",
        {
            "name": NAME,
            "image": mock_repo_digest(REF),
            "hostname": "web-1",
            "user": "10001:10001",
            "capabilities": {"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]},
            "readOnly": True,
            "securityOpts": ["no-new-privileges:true"],
            "memory": 128,
            "memorySwap": 128,
            "cpus": "0.5",
            "cgroupnsMode": "private",
            "tmpfs": {"/tmp": "rw,noexec,nosuid,size=64m"},
            "volumes": [
                {"volumeName": "napdms-unit-web-data", "containerPath": "/data"},
                {"hostPath": "/srv/web", "containerPath": "/etc/web", "readOnly": True},
            ],
            "ports": [{"internal": 8080, "external": 18080, "ip": "127.0.0.1"}],
            "networksAdvanced": [{"name": "napdms-unit-app", "aliases": ["web", "web-1"]}],
            "envs": ["MODE=prod", "TOKEN_FILE=/run/secrets/token"],
            "labels": _labels(
                **{
                    "napdms.stack": STACK,
                    "napdms.managed-by": "pulumi",
                    "napdms.init-container": "local-web-init-id",
                    "napdms.exempt.no-cpu-limit": "batch job",
                }
            ),
            "restart": "unless-stopped",
            "healthcheck": {
                "tests": HEALTH,
                "interval": "10s",
                "timeout": "5s",
                "retries": 3,
                "startPeriod": "30s",
            },
            "logDriver": "json-file",
            "logOpts": {"max-size": "10m", "max-file": "3"},
        },
        [image.urn, init.urn],
    )
    pids = [
        _resource(
            from_pulumi.COMMAND,
            f"{declared.name}-pids",
            {"create": f"docker update --pids-limit {limit} {declared.inputs['name']}"},
            [declared.urn],
        )
        for declared, limit in ((web, 256), (init, 16))
    ]
    volume = _resource(
        from_pulumi.VOLUME,
        "local-web-data",
        {"name": "napdms-unit-web-data", "labels": _labels(**{"napdms.backup": "daily"})},
    )
    network = _resource(
        from_pulumi.NETWORK,
        "local-app",
        {
            "name": "napdms-unit-app",
            "internal": True,
            "labels": _labels(**{"napdms.segment": "app"}),
        },
    )
    return Program(STACK, [host, provider, image, init_image, init, web, *pids, volume, network])


def web_doc() -> dict[str, Any]:
    """What `docker inspect` shows for the web container as the program declares it: with what
    the daemon adds on its own (the image's ENV and labels, an anonymous volume for the image's
    VOLUME, the short id and hostname as aliases, the real init container id)."""
    return {
        "Id": CONTAINER_ID,
        "Name": f"/{NAME}",
        "Image": IMAGE_ID,
        "State": {"Status": "running", "Running": True, "Paused": False, "ExitCode": 0},
        "Config": {
            "Image": REF,
            "Hostname": "web-1",
            "User": "10001:10001",
            "Env": ["MODE=prod", "TOKEN_FILE=/run/secrets/token", "PATH=/usr/bin:/bin"],
            "Labels": {
                "napdms.stack": STACK,
                "napdms.managed-by": "pulumi",
                "napdms.init-container": "b" * 64,
                "napdms.exempt.no-cpu-limit": "batch job",
                "org.opencontainers.image.version": "1.0",
            },
            "Healthcheck": {
                "Test": HEALTH,
                "Interval": 10 * NS,
                "Timeout": 5 * NS,
                "Retries": 3,
                "StartPeriod": 30 * NS,
            },
        },
        "HostConfig": {
            "CapAdd": ["NET_BIND_SERVICE"],
            "CapDrop": ["ALL"],
            "Privileged": False,
            "ReadonlyRootfs": True,
            "SecurityOpt": ["no-new-privileges:true"],
            "Memory": 128 * MB,
            "MemorySwap": 128 * MB,
            "NanoCpus": NS // 2,
            "PidsLimit": 256,
            "Tmpfs": {"/tmp": "rw,noexec,nosuid,size=64m"},
            "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]},
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            "NetworkMode": "napdms-unit-app",
            "CgroupnsMode": "private",
            "IpcMode": "private",
            "Runtime": "runc",
        },
        "Mounts": [
            {
                "Type": "volume",
                "Name": "napdms-unit-web-data",
                "Source": "/var/lib/docker/volumes/napdms-unit-web-data/_data",
                "Destination": "/data",
                "RW": True,
            },
            {"Type": "bind", "Source": "/srv/web", "Destination": "/etc/web", "RW": False},
            {"Type": "volume", "Name": "f" * 64, "Destination": "/cache", "RW": True},
        ],
        "NetworkSettings": {
            "Networks": {"napdms-unit-app": {"Aliases": ["web", "web-1", CONTAINER_ID[:12]]}}
        },
    }


def init_doc() -> dict[str, Any]:
    """The init container after its one run: exited 0."""
    return {
        "Id": "c" * 64,
        "Name": f"/{INIT}",
        "Image": INIT_ID,
        "State": {"Status": "exited", "Running": False, "Paused": False, "ExitCode": 0},
        "Config": {
            "Image": INIT_REF,
            "User": "0:0",
            "Env": ["PATH=/bin"],
            "Labels": {"napdms.stack": STACK, "napdms.role": "init"},
        },
        "HostConfig": {
            "CapAdd": ["CHOWN"],
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges:true"],
            "Memory": 32 * MB,
            "MemorySwap": 32 * MB,
            "NanoCpus": NS // 10,
            "PidsLimit": 16,
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
            "NetworkMode": "none",
        },
        "Mounts": [
            {"Type": "volume", "Name": "napdms-unit-web-data", "Destination": "/data", "RW": True}
        ],
        "NetworkSettings": {"Networks": {"none": {"Aliases": None}}},
    }


def observed(docs: list[dict[str, Any]]) -> Observed:
    web_image = {
        "Env": ["PATH=/usr/bin:/bin"],
        "Labels": {"org.opencontainers.image.version": "1.0"},
        "Volumes": {"/cache": {}},
    }
    return Observed(
        containers={doc["Name"].lstrip("/"): doc for doc in docs},
        volumes={"napdms-unit-web-data": {"Name": "napdms-unit-web-data"}},
        networks={"napdms-unit-app": {"Name": "napdms-unit-app", "Internal": True}},
        image_ids={REF: IMAGE_ID, INIT_REF: INIT_ID},
        # OTHER_ID: a rebuild of the web image, same config, another id.
        images={IMAGE_ID: web_image, OTHER_ID: web_image, INIT_ID: {"Env": ["PATH=/bin"]}},
    )


EXPECTED = expected(program())["local"]


def findings_for(doc: dict[str, Any] | None, name: str = NAME, seen: Observed | None = None):
    seen = seen or observed([d for d in (doc, init_doc()) if d])
    return container_findings(STACK, EXPECTED.containers[name], doc, seen)


def changed(change) -> list[tuple[str, str]]:
    """(field, severity) of each finding once `change` edits a faithful web container."""
    doc = web_doc()
    change(doc)
    return [(f.field, f.severity) for f in findings_for(doc)]


def test_the_declared_graph_gives_each_container_its_pids_limit_image_and_networks():
    web, init = EXPECTED.containers[NAME], EXPECTED.containers[INIT]
    assert (web.pids_limit, web.image_ref, dict(web.networks)) == (
        256,
        REF,
        {"napdms-unit-app": ("web", "web-1")},
    )
    assert (init.pids_limit, init.image_ref, dict(init.networks), init.init) == (
        16,
        INIT_REF,
        {"none": ()},
        True,
    )


def test_a_label_holding_another_resources_id_is_compared_by_presence():
    assert EXPECTED.containers[NAME].computed_labels == {"napdms.init-container"}


def test_a_faithful_container_and_its_finished_init_container_give_no_finding():
    assert findings_for(web_doc()) == []
    assert findings_for(init_doc(), INIT) == []


def test_a_missing_container_is_major():
    (finding,) = findings_for(None)
    assert (finding.field, finding.severity, finding.declared) == ("missing", "major", REF)
    assert f"pulumi up --refresh --stack {STACK}" in finding.why


@pytest.mark.parametrize(
    ("state", "shown"),
    [
        ({"Status": "exited", "Running": False, "ExitCode": 137}, "exited"),
        ({"Status": "created", "Running": False}, "created"),
        ({"Status": "running", "Running": True, "Paused": True}, "paused"),
    ],
    ids=["exited", "created", "paused"],
)
def test_a_service_that_does_not_run_is_major(state, shown):
    doc = web_doc()
    doc["State"] = state
    (finding,) = findings_for(doc)
    assert (finding.field, finding.severity, finding.live) == ("stopped", "major", shown)


def test_a_restarting_service_is_not_drift():
    assert changed(lambda d: d["State"].update(Status="restarting")) == []


@pytest.mark.parametrize(
    "state",
    [{"Status": "exited", "ExitCode": 1}, {"Status": "created", "ExitCode": 0}],
    ids=["failed", "never ran"],
)
def test_an_init_container_that_did_not_finish_is_major(state):
    doc = init_doc()
    doc["State"] = {**doc["State"], **state}
    assert [(f.field, f.severity) for f in findings_for(doc, INIT)] == [("stopped", "major")]


def test_a_different_image_is_major():
    assert changed(lambda d: d.update(Image=OTHER_ID)) == [("image", "major")]


def test_a_declared_image_the_daemon_lacks_is_major():
    seen = observed([web_doc()])
    seen.image_ids[REF] = None
    (finding,) = findings_for(web_doc(), seen=seen)
    assert (finding.field, finding.severity) == ("image", "major")
    assert "not on host local" in finding.why


def test_image_of_maps_the_declared_reference_to_the_local_one():
    seen = observed([web_doc()])
    seen.image_ids = {"standin:web": IMAGE_ID}
    want = EXPECTED.containers[NAME]
    mapped = {REF: "standin:web"}
    assert container_findings(STACK, want, web_doc(), seen, mapped.get) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["Config"].update(User="0:0"), "user"),
        (lambda d: d["HostConfig"]["CapAdd"].append("SYS_ADMIN"), "capabilities"),
        (lambda d: d["HostConfig"].update(CapDrop=[]), "capabilities"),
        (lambda d: d["HostConfig"].update(Privileged=True), "privileged"),
        (lambda d: d["HostConfig"].update(ReadonlyRootfs=False), "read_only"),
        (lambda d: d["HostConfig"].update(SecurityOpt=[]), "security_opts"),
        (lambda d: d["HostConfig"].update(PidsLimit=4096), "pids_limit"),
        (lambda d: d["HostConfig"].update(PidsLimit=64), "pids_limit"),
        (lambda d: d["HostConfig"].update(PidsLimit=None), "pids_limit"),
        (lambda d: d["Mounts"][1].update(RW=True), "mounts"),
        (
            lambda d: d["Mounts"].append(
                {"Type": "bind", "Source": "/etc", "Destination": "/host-etc", "RW": True}
            ),
            "mounts",
        ),
        (lambda d: d["HostConfig"].update(Tmpfs={"/tmp": "rw,size=64m"}), "mounts"),
        (
            lambda d: d["HostConfig"]["PortBindings"]["8080/tcp"][0].update(HostIp="0.0.0.0"),
            "ports",
        ),
        (
            lambda d: d["HostConfig"]["PortBindings"].update(
                {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "2222"}]}
            ),
            "ports",
        ),
        (
            lambda d: d["NetworkSettings"]["Networks"].update({"bridge": {"Aliases": None}}),
            "networks",
        ),
        (
            lambda d: d["NetworkSettings"]["Networks"]["napdms-unit-app"]["Aliases"].append(
                "postgres"
            ),
            "networks",
        ),
        (lambda d: d["HostConfig"].update(PidMode="host"), "isolation"),
        (lambda d: d["HostConfig"].update(Devices=[{"PathOnHost": "/dev/sda"}]), "isolation"),
    ],
    ids=[
        "user",
        "capability added",
        "drop removed",
        "privileged",
        "writable root",
        "no-new-privileges removed",
        "pids raised",
        "pids lowered",
        "pids removed",
        "read-only bind made writable",
        "bind added",
        "tmpfs options",
        "port on every interface",
        "port added",
        "network joined",
        "alias added",
        "host pid namespace",
        "device",
    ],
)
def test_a_security_relevant_change_is_major(change, field):
    assert changed(change) == [(field, "major")]


@pytest.mark.parametrize(
    ("change", "field", "severity"),
    [
        (lambda d: d["HostConfig"].update(Memory=512 * MB, MemorySwap=512 * MB), "memory", "major"),
        (lambda d: d["HostConfig"].update(Memory=0), "memory", "major"),
        (lambda d: d["HostConfig"].update(Memory=64 * MB), "memory", "minor"),
        (lambda d: d["HostConfig"].update(MemorySwap=-1), "memory_swap", "major"),
        (lambda d: d["HostConfig"].update(NanoCpus=2 * NS), "cpus", "major"),
        (lambda d: d["HostConfig"].update(NanoCpus=0), "cpus", "major"),
        (lambda d: d["HostConfig"].update(NanoCpus=NS // 4), "cpus", "minor"),
    ],
    ids=[
        "memory raised",
        "memory removed",
        "memory lowered",
        "swap unlimited",
        "cpus raised",
        "cpus removed",
        "cpus lowered",
    ],
)
def test_a_weaker_limit_is_major_and_a_stricter_one_minor(change, field, severity):
    found = [f for f in changed(change) if f[0] != "memory_swap" or field == "memory_swap"]
    assert found == [(field, severity)]


def test_a_changed_limit_says_how_to_restore_it():
    doc = web_doc()
    doc["HostConfig"]["NanoCpus"] = 2 * NS
    (finding,) = findings_for(doc)
    assert (finding.declared, finding.live) == ("0.5", "2.0")
    assert f"docker update --cpus 0.5 {NAME}" in finding.why


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["Config"]["Env"].append("DEBUG=1"), "env"),
        (lambda d: d["Config"]["Env"].remove("MODE=prod"), "env"),
        (lambda d: d["Config"]["Labels"].update({"napdms.stack": "other"}), "labels"),
        (lambda d: d["Config"]["Labels"].update({"owner": "someone"}), "labels"),
        (lambda d: d["Config"]["Labels"].pop("napdms.init-container"), "labels"),
        (lambda d: d["Config"]["Healthcheck"].update(Retries=10), "healthcheck"),
        (lambda d: d["Config"].update(Healthcheck=None), "healthcheck"),
        (lambda d: d["HostConfig"].update(RestartPolicy={"Name": "always"}), "restart"),
        (lambda d: d["HostConfig"]["LogConfig"].update(Config={}), "logging"),
    ],
    ids=[
        "env added",
        "env removed",
        "label changed",
        "label added",
        "computed label removed",
        "health retries",
        "health check removed",
        "restart policy",
        "log rotation",
    ],
)
def test_a_change_that_exposes_nothing_is_minor(change, field):
    assert changed(change) == [(field, "minor")]


def test_an_exemption_label_changed_by_hand_is_major():
    def grant_more(doc):
        doc["Config"]["Labels"]["napdms.exempt.run-as-root"] = "added by hand"

    assert changed(grant_more) == [("labels", "major")]


def test_environment_values_never_appear_only_names():
    (finding,) = findings_for(
        {**web_doc(), "Config": {**web_doc()["Config"], "Env": ["MODE=debug", "SECRET=hunter2"]}}
    )
    text = finding.model_dump_json()
    assert finding.field == "env"
    assert (finding.declared, finding.live) == ("TOKEN_FILE", "SECRET")
    assert "hunter2" not in text and "debug" not in text


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["Config"]["Labels"].update({"napdms.init-container": "d" * 64}),
        lambda d: d["Config"]["Env"].append("PATH=/usr/bin:/bin"),
        lambda d: d["NetworkSettings"]["Networks"]["napdms-unit-app"]["Aliases"].remove(
            CONTAINER_ID[:12]
        ),
    ],
    ids=["a new init container id", "the image's env", "the short-id alias"],
)
def test_what_the_daemon_or_the_engine_sets_on_its_own_is_not_drift(change):
    assert changed(change) == []


def _stranger(name: str, labels=None, networks=("bridge",), volumes=()) -> dict[str, Any]:
    return {
        "Id": name,
        "Name": f"/{name}",
        "Image": OTHER_ID,
        "Config": {"Image": "busybox", "Labels": labels or {}},
        "Mounts": [{"Type": "volume", "Name": v, "Destination": "/x"} for v in volumes],
        "NetworkSettings": {"Networks": {n: {} for n in networks}},
    }


def _unmanaged(stranger: dict[str, Any]):
    seen = observed([web_doc(), init_doc(), stranger])
    return unmanaged_findings(
        STACK,
        "local",
        seen,
        EXPECTED.containers,
        EXPECTED.networks,
        EXPECTED.volumes,
    )


@pytest.mark.parametrize(
    "stranger",
    [
        _stranger("by-hand", labels={"napdms.stack": STACK}),
        _stranger("napdms-unit-debug"),
        _stranger("sniffer", networks=("napdms-unit-app",)),
        _stranger("copier", volumes=("napdms-unit-web-data",)),
    ],
    ids=["stack label", "name prefix", "joins a stack network", "mounts a stack volume"],
)
def test_a_container_the_stack_does_not_declare_but_that_claims_or_reaches_it_is_major(stranger):
    (finding,) = _unmanaged(stranger)
    assert (finding.subject, finding.field, finding.severity) == (
        stranger["Name"][1:],
        "unmanaged",
        "major",
    )
    assert f"docker rm -f {finding.subject}" in finding.why


@pytest.mark.parametrize(
    "stranger",
    [
        _stranger("napdms-prod-web-1", labels={"napdms.stack": "prod"}),
        _stranger("napdms-unitx-web-1"),
        _stranger("portainer"),
    ],
    ids=["another stack", "a longer stack name", "another tool"],
)
def test_a_container_of_another_stack_or_tool_is_not_this_stacks_drift(stranger):
    assert _unmanaged(stranger) == []


def test_a_napdms_ops_job_of_the_stack_is_minor():
    job = _stranger(
        "napdms-unit-job-1",
        labels={"napdms.stack": STACK, "napdms.managed-by": "napdms-ops", "napdms.job": "restore"},
    )
    assert [(f.field, f.severity) for f in _unmanaged(job)] == [("unmanaged", "minor")]


def test_missing_volumes_and_networks_are_major():
    volume = EXPECTED.volumes["napdms-unit-web-data"]
    network = EXPECTED.networks["napdms-unit-app"]
    (lost_volume,) = object_findings(STACK, "volume", volume, None)
    (lost_network,) = object_findings(STACK, "network", network, None)
    assert (lost_volume.kind, lost_volume.field, lost_volume.severity) == (
        "volume",
        "missing",
        "major",
    )
    assert "napdms-ops restore" in lost_volume.why
    assert (lost_network.kind, lost_network.field, lost_network.severity) == (
        "network",
        "missing",
        "major",
    )


def test_a_data_network_no_longer_internal_is_major_and_a_relabelled_volume_minor():
    network = EXPECTED.networks["napdms-unit-app"]
    volume = EXPECTED.volumes["napdms-unit-web-data"]
    opened = object_findings(STACK, "network", network, {"Name": network.name, "Internal": False})
    relabelled = object_findings(
        STACK, "volume", volume, {"Name": volume.name, "Labels": {"napdms.backup": "exclude"}}
    )
    assert [(f.field, f.severity) for f in opened] == [("internal", "major"), ("labels", "minor")]
    assert [(f.field, f.severity) for f in relabelled] == [("labels", "minor")]
    assert (
        object_findings(
            STACK, "volume", volume, {"Name": volume.name, "Labels": {"napdms.backup": "daily"}}
        )
        == []
    )


def test_every_change_to_a_container_says_how_to_restore_it():
    doc = web_doc()
    doc["Config"].update(User="0:0", Env=["MODE=prod"])
    doc["HostConfig"].update(Privileged=True, PidsLimit=0, Memory=0)
    whys = [f.why for f in findings_for(doc)]
    assert len(whys) == 5
    assert all(f"--stack {STACK}" in why or "docker update" in why for why in whys)


def test_the_inputs_are_left_as_they_were():
    doc = web_doc()
    before = copy.deepcopy(doc)
    findings_for(doc)
    assert doc == before


# ------------------------------------------------------------------ the view over fake daemons


class _Api:
    """The Engine API calls `observe` makes, answered from documents."""

    base_url = "unix:///fake.sock"

    def __init__(self, docs, fail: Exception | None = None):
        self.docs = {doc["Id"]: doc for doc in docs}
        self.fail = fail
        self.images = {REF: IMAGE_ID, INIT_REF: INIT_ID, IMAGE_ID: IMAGE_ID, INIT_ID: INIT_ID}

    def containers(self, all: bool):
        if self.fail:
            raise self.fail
        return [{"Id": key} for key in self.docs]

    def inspect_container(self, key):
        return self.docs[key]

    def inspect_image(self, ref):
        from docker.errors import ImageNotFound

        if ref not in self.images:
            raise ImageNotFound(ref)
        return {"Id": self.images[ref], "Config": observed([]).images[self.images[ref]]}

    def volumes(self):
        return {"Volumes": [{"Name": "napdms-unit-web-data", "Labels": {"napdms.backup": "daily"}}]}

    def networks(self):
        return [{"Name": "napdms-unit-app", "Internal": True, "Labels": {"napdms.segment": "app"}}]


class _Client:
    def __init__(self, api: _Api):
        self.api = api


def test_the_view_reads_every_host_and_counts_what_it_inspected():
    stranger = _stranger("by-hand", labels={"napdms.stack": STACK})
    client = _Client(_Api([web_doc(), init_doc(), stranger]))
    view = live_view(STACK, {"local": client}, program=program())
    assert [(f.subject, f.field, f.severity) for f in view.findings] == [
        ("by-hand", "unmanaged", "major")
    ]
    assert (view.containers, view.volumes, view.networks) == (3, 1, 1)


def test_the_view_of_a_faithful_daemon_is_empty():
    view = live_view(STACK, {"local": _Client(_Api([web_doc(), init_doc()]))}, program=program())
    assert view.findings == []


def test_a_host_without_a_client_fails_in_one_line_naming_it():
    with pytest.raises(LiveViewError) as raised:
        live_view(STACK, {"elsewhere": _Client(_Api([]))}, program=program())
    assert str(raised.value) == (
        f"{STACK}: no Docker client for host local; pass one per host of the stack's settings"
    )


def test_an_unreadable_daemon_fails_in_one_line_with_the_fix():
    client = _Client(_Api([], fail=ConnectionError("Connection refused")))
    with pytest.raises(LiveViewError) as raised:
        live_view(STACK, {"local": client}, program=program())
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{STACK}: host local: cannot read its Docker daemon")
    assert "Connection refused" in message and f"Pulumi.{STACK}.yaml" in message


def test_the_ops_cli_declares_a_stack_with_placeholders_in_place_of_the_encrypted_keys():
    from napdms_ops.declared import declare_stack, without_secrets
    from tests.program import run_program

    def graph(declared: Program):
        return {(r.type, r.name): without_secrets(r.inputs) for r in declared.resources}

    assert graph(declare_stack("dev")) == graph(run_program("dev"))


def test_a_stack_without_a_stack_file_fails_before_any_daemon_is_read():
    with pytest.raises(SettingsError) as raised:
        live_view("nosuchstack", {})
    assert raised.value.lines[0].startswith("nosuchstack: ")


def _two_hosts() -> Program:
    """The web host, plus an `asustor` host declaring one container, `napdms-unit-agent-1`."""
    declared = program()
    urn = _HOST_URN.replace("::local", "::asustor")
    host = dataclasses.replace(declared.resources[0], name="asustor", urn=urn)
    provider = dataclasses.replace(
        declared.resources[1], name="asustor-docker", urn=f"{_PROVIDER_URN}-asustor", parent=urn
    )
    agent = dataclasses.replace(
        _resource(
            from_pulumi.CONTAINER,
            "asustor-agent-1",
            {
                "name": "napdms-unit-agent-1",
                "image": REF,
                "labels": _labels(**{"napdms.stack": STACK}),
            },
        ),
        provider=f"{provider.urn}::asustor-docker-id",
    )
    declared.resources += [host, provider, agent]
    return declared


def _agent_doc() -> dict[str, Any]:
    return {
        **_stranger("napdms-unit-agent-1", labels={"napdms.stack": STACK}),
        "Image": IMAGE_ID,
        "State": {"Status": "running", "Running": True},
        "HostConfig": {"LogConfig": {"Type": "json-file"}},
    }


def test_hosts_on_one_daemon_are_judged_together():
    shared = _Client(_Api([web_doc(), init_doc(), _agent_doc()]))
    view = live_view(STACK, {"local": shared, "asustor": shared}, program=_two_hosts())
    assert [(f.subject, f.field) for f in view.findings if f.field == "unmanaged"] == []
    assert view.containers == 3


def test_a_container_on_the_wrong_host_is_unmanaged_there_and_missing_where_declared():
    local = _Client(_Api([web_doc(), init_doc(), _agent_doc()]))
    asustor = _Client(_Api([]))
    view = live_view(STACK, {"local": local, "asustor": asustor}, program=_two_hosts())
    assert [(f.subject, f.field, f.severity) for f in view.findings] == [
        ("napdms-unit-agent-1", "missing", "major"),
        ("napdms-unit-agent-1", "unmanaged", "major"),
    ]

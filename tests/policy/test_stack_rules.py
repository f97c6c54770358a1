"""Stack rules as specifications: backups, network segments, replicas and host ports."""

import pytest

from policies.rules import (
    STACK_RULES,
    ContainerFacts,
    Mount,
    NetworkFacts,
    PublishedPort,
    StackFacts,
    VolumeFacts,
    check_stack,
)

RULES = {rule.id: rule for rule in STACK_RULES}


def findings(stack: StackFacts, rule_id: str, config=None) -> list[tuple[str, str]]:
    """(subject, problem) of what one stack rule reports."""
    return [(f.subject, f.problem) for f in check_stack(stack, RULES[rule_id], config)]


# volume-backup-policy


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param({"napdms.backup": "daily"}, id="daily"),
        pytest.param(
            {"napdms.backup": "exclude", "napdms.backup.reason": "cache, rebuilt at start"},
            id="exclude-with-reason",
        ),
    ],
)
def test_volume_with_backup_policy_passes(labels):
    assert (
        findings(StackFacts(volumes=(VolumeFacts("pgdata", labels),)), "volume-backup-policy") == []
    )


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param({"napdms.backup": "exclude"}, id="exclude-without-reason"),
        pytest.param(
            {"napdms.backup": "exclude", "napdms.backup.reason": " "}, id="exclude-blank-reason"
        ),
        pytest.param({}, id="missing-label"),
        pytest.param({"napdms.backup": "weekly"}, id="unknown-value"),
    ],
)
def test_volume_without_valid_backup_policy_fails(labels):
    [(subject, _problem)] = findings(
        StackFacts(volumes=(VolumeFacts("pgdata", labels),)), "volume-backup-policy"
    )
    assert subject == "pgdata"


def test_unknown_backup_policy_is_named():
    [(_subject, problem)] = findings(
        StackFacts(volumes=(VolumeFacts("pgdata", {"napdms.backup": "weekly"}),)),
        "volume-backup-policy",
    )
    assert "weekly" in problem


def test_container_mounting_undeclared_volume_fails():
    db = ContainerFacts("db", mounts=(Mount("volume", "pgdata", "/var/lib/postgresql/data"),))
    [(subject, problem)] = findings(StackFacts(containers=(db,)), "volume-backup-policy")
    assert subject == "db"
    assert "pgdata" in problem


def test_container_mounting_declared_volume_passes():
    db = ContainerFacts("db", mounts=(Mount("volume", "pgdata", "/var/lib/postgresql/data"),))
    stack = StackFacts(
        containers=(db,), volumes=(VolumeFacts("pgdata", {"napdms.backup": "daily"}),)
    )
    assert findings(stack, "volume-backup-policy") == []


def test_bind_mounts_need_no_backup_policy():
    web = ContainerFacts("web", mounts=(Mount("bind", "/srv/napdms/web", "/data"),))
    assert findings(StackFacts(containers=(web,)), "volume-backup-policy") == []


# data-network-internal


@pytest.mark.parametrize(
    "segment, internal, flagged",
    [
        pytest.param("data", False, True, id="data-routed"),
        pytest.param("monitoring", False, True, id="monitoring-routed"),
        pytest.param("data", True, False, id="data-internal"),
        pytest.param("monitoring", True, False, id="monitoring-internal"),
        pytest.param("edge", False, False, id="edge-routed"),
        pytest.param("app", False, False, id="app-routed"),
    ],
)
def test_data_network_internal(segment, internal, flagged):
    network = NetworkFacts("napdms-dev-" + segment, internal, {"napdms.segment": segment})
    found = findings(StackFacts(networks=(network,)), "data-network-internal")
    assert [subject for subject, _ in found] == ([network.name] if flagged else [])


# stateless-replicas


def replica(
    name: str,
    service: str = "web",
    stack: str = "prod",
    stateless: str = "true",
    colour: str | None = None,
) -> ContainerFacts:
    """A container of `service` in `stack` (of one colour, for a blue-green service)."""
    labels = {"napdms.stack": stack, "napdms.service": service, "napdms.stateless": stateless}
    if colour is not None:
        labels["napdms.colour"] = colour
    return ContainerFacts(name, labels=labels)


def test_single_stateless_replica_fails_default_minimum_of_two():
    [(subject, problem)] = findings(
        StackFacts(containers=(replica("web-blue"),)), "stateless-replicas"
    )
    assert subject == "web-blue"
    assert "web" in problem and "2" in problem


def test_two_stateless_replicas_pass_default_minimum():
    stack = StackFacts(containers=(replica("web-blue"), replica("web-green")))
    assert findings(stack, "stateless-replicas") == []


def test_minimum_replicas_comes_from_config():
    stack = StackFacts(containers=(replica("web-blue"),))
    assert findings(stack, "stateless-replicas", {"minReplicas": 1}) == []


@pytest.mark.parametrize("stateless", ["false", ""], ids=["false", "empty"])
def test_only_stateless_services_need_replicas(stateless):
    assert (
        findings(StackFacts(containers=(replica("db", stateless=stateless),)), "stateless-replicas")
        == []
    )


def test_replicas_are_counted_per_stack_and_service():
    stack = StackFacts(
        containers=(
            replica("web-dev", stack="dev"),
            replica("web-prod", stack="prod"),
            replica("api-prod", service="api", stack="prod"),
        )
    )
    assert sorted(subject for subject, _ in findings(stack, "stateless-replicas")) == [
        "api-prod",
        "web-dev",
        "web-prod",
    ]


def test_each_colour_of_a_blue_green_service_needs_the_replicas_on_its_own():
    # The live colour serves alone: one replica of each colour survives no failure.
    stack = StackFacts(
        containers=(replica("web-blue-1", colour="blue"), replica("web-green-1", colour="green"))
    )
    assert sorted(
        (subject, problem) for subject, problem in findings(stack, "stateless-replicas")
    ) == [
        ("web-blue-1", "service web (blue) runs 1 replica(s), fewer than 2"),
        ("web-green-1", "service web (green) runs 1 replica(s), fewer than 2"),
    ]


def test_two_replicas_of_each_colour_pass():
    stack = StackFacts(
        containers=tuple(
            replica(f"web-{colour}-{n}", colour=colour)
            for colour in ("blue", "green")
            for n in (1, 2)
        )
    )
    assert findings(stack, "stateless-replicas") == []


# host-port-conflict


def publisher(
    name: str, ip: str = "0.0.0.0", port: int = 8080, protocol: str = "tcp", host: str = "qnap"
) -> ContainerFacts:
    """A container on `host` publishing one port."""
    return ContainerFacts(name, host=host, ports=(PublishedPort(ip, port, 80, protocol),))


@pytest.mark.parametrize(
    "first, second, conflict",
    [
        pytest.param({"ip": "192.168.1.10"}, {"ip": "192.168.1.10"}, True, id="same-ip"),
        pytest.param({"ip": "0.0.0.0"}, {"ip": "192.168.1.10"}, True, id="any-then-specific"),
        pytest.param({"ip": "127.0.0.1"}, {"ip": ""}, True, id="specific-then-empty"),
        pytest.param({"ip": "::"}, {"ip": "0.0.0.0"}, True, id="ipv6-any-and-ipv4-any"),
        pytest.param({"ip": "192.168.1.10"}, {"ip": "127.0.0.1"}, False, id="different-ips"),
        pytest.param({"host": "qnap"}, {"host": "asustor"}, False, id="different-hosts"),
        pytest.param({"protocol": "tcp"}, {"protocol": "udp"}, False, id="different-protocols"),
        pytest.param({"port": 8080}, {"port": 8081}, False, id="different-ports"),
        pytest.param({"port": 0}, {"port": 0}, False, id="docker-picks-port"),
    ],
)
def test_host_port_conflict(first, second, conflict):
    stack = StackFacts(containers=(publisher("proxy", **first), publisher("grafana", **second)))
    found = findings(stack, "host-port-conflict")
    assert [subject for subject, _ in found] == (["grafana"] if conflict else [])
    assert all("proxy" in problem for _, problem in found)

"""`no-pids-limit` (CIS 5.29): a real PIDs cgroup limit, judged with the stack's context.

pulumi-docker 5.x has no pids field, so a declared container's limit is what a
`command:local:Command` beside it sets (`docker update --pids-limit N NAME` on the container's
own Docker host); a live container's is HostConfig.PidsLimit. Every way a command can look like
it sets a limit without setting one gives no limit.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest

from components.catalog import proxy
from policies.rules import STACK_RULES, ContainerFacts, StackFacts, check_stack, from_pulumi
from tests.policy import flawed_program
from tests.policy.analyzer import PackProcess
from tests.program import Program, run_program

RULE = next(rule for rule in STACK_RULES if rule.id == "no-pids-limit")
QNAP = "ssh://deploy@qnap.nap-dms.example.org"


def read(create: str, **props) -> tuple[str, str, int] | None:
    return from_pulumi.read_pids_command({"create": create, **props})


# The command, alone


@pytest.mark.parametrize(
    "create, expected",
    [
        pytest.param("docker update --pids-limit 512 napdms-prod-redis-1", 512, id="canonical"),
        pytest.param("docker update --pids-limit 16 'napdms-prod-redis-1'", 16, id="quoted-name"),
        pytest.param("docker  update --pids-limit 64 napdms-prod-redis-1", 64, id="extra-blank"),
    ],
)
def test_docker_update_pids_limit_sets_the_limit(create, expected):
    assert read(create) == ("", "napdms-prod-redis-1", expected)


@pytest.mark.parametrize(
    "create",
    [
        pytest.param("docker update --pids-limit 0 web-1", id="zero"),
        pytest.param("docker update --pids-limit -1 web-1", id="negative"),
        pytest.param("docker update --pids-limit=-1 web-1", id="equals-negative"),
        pytest.param("docker update --pids-limit=64 web-1", id="equals-form"),
        pytest.param("docker update --pids-limit web-1", id="missing-limit"),
        pytest.param("docker update --pids-limit 64", id="missing-name"),
        pytest.param("docker update --pids-limit 0100 web-1", id="octal-looking"),
        pytest.param("docker update --pids-limit 1e3 web-1", id="not-decimal"),
        pytest.param("docker update --pids-limit 64 web-1; docker update --pids-limit -1 web-1"),
        pytest.param("docker update --pids-limit 64 web-1;true", id="semicolon-glued"),
        pytest.param("docker update --pids-limit 64 web-1 && true", id="and"),
        pytest.param("docker update --pids-limit 64 web-1 || true", id="or"),
        pytest.param("docker update --pids-limit 64 web-1 | cat", id="pipe"),
        pytest.param("docker update --pids-limit 64 web-1 &", id="background"),
        pytest.param("docker update --pids-limit 64 web-1 > /dev/null", id="redirect"),
        pytest.param("docker update --pids-limit 64\nweb-1", id="newline-splits-the-command"),
        pytest.param("docker update --pids-limit 64 web-1\ntrue", id="second-line"),
        pytest.param("docker update --pids-limit 64 $(echo web-1)", id="command-substitution"),
        pytest.param("docker update --pids-limit 64 `echo web-1`", id="backticks"),
        pytest.param("docker update --pids-limit 64 $NAME", id="variable"),
        pytest.param("docker update --pids-limit 64 web-1#x", id="hash-in-name"),
        pytest.param("docker update --pids-limit 64 web-1 # comment", id="comment"),
        pytest.param("docker update --pids-limit 64 'web-1", id="unclosed-quote"),
        pytest.param("docker update --pids-limit 64 web-1 web-2", id="two-containers"),
        pytest.param("docker update --pids-limit 64 --memory 1g web-1", id="other-option"),
        pytest.param("/tmp/docker update --pids-limit 64 web-1", id="other-binary"),
        pytest.param("sh -c 'docker update --pids-limit 64 web-1'", id="wrapped"),
        pytest.param("echo docker update --pids-limit 64 web-1", id="echo"),
        pytest.param("docker update --pids-limit 64 w", id="invalid-name"),
    ],
)
def test_anything_else_sets_no_limit(create):
    assert read(create) is None


@pytest.mark.parametrize(
    "props",
    [
        pytest.param({"interpreter": ["/bin/true"]}, id="interpreter"),
        pytest.param({"delete": "docker update --pids-limit -1 web-1"}, id="undone-on-delete"),
        pytest.param({"update": "docker update --pids-limit -1 web-1"}, id="undone-on-update"),
        pytest.param({"environment": {"PATH": "/tmp/fake"}}, id="path"),
        pytest.param({"environment": {"DOCKER_CONTEXT": "other"}}, id="docker-context"),
        pytest.param({"environment": {"DOCKER_CONFIG": "/tmp/cli"}}, id="docker-config"),
        pytest.param({"create": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}, id="unknown-create"),
        pytest.param({"environment": {"DOCKER_HOST": 7}}, id="host-not-a-string"),
    ],
)
def test_a_command_that_may_run_elsewhere_or_undo_it_sets_no_limit(props):
    props = {"create": "docker update --pids-limit 64 web-1", **props}
    assert from_pulumi.read_pids_command(props) is None


def test_docker_host_names_the_endpoint():
    found = read("docker update --pids-limit 64 web-1", environment={"DOCKER_HOST": QNAP})
    assert found == (QNAP, "web-1", 64)


# The commands of a stack


def command(create: str, host: str = "") -> dict:
    return {"create": create, **({"environment": {"DOCKER_HOST": host}} if host else {})}


def test_limits_are_keyed_by_endpoint_and_name():
    limits = from_pulumi.pids_limits_from_commands(
        [
            command("docker update --pids-limit 64 node-exporter-1", QNAP),
            command("docker update --pids-limit 32 node-exporter-1", "ssh://deploy@asustor"),
            command("docker update --pids-limit 16 web-1"),
        ]
    )
    assert limits == {
        (QNAP, "node-exporter-1"): 64,
        ("ssh://deploy@asustor", "node-exporter-1"): 32,
        ("", "web-1"): 16,
    }


def test_two_limits_for_one_container_count_as_the_lower():
    limits = from_pulumi.pids_limits_from_commands(
        [
            command("docker update --pids-limit 64 web-1"),
            command("docker update --pids-limit 32 web-1"),
        ]
    )
    assert limits == {("", "web-1"): 32}


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({"create": "docker update --pids-limit=-1 web-1"}, id="equals-unlimited"),
        pytest.param({"create": "sh -c 'docker update --pids-limit 0 web-1'"}, id="wrapped"),
        pytest.param(
            {"create": "true", "delete": "docker update --pids-limit -1 web-1"}, id="on-delete"
        ),
        pytest.param(
            {
                "create": "curl --unix-socket /var/run/docker.sock "
                "-d '{\"PidsLimit\": -1}' http://d/containers/web-1/update"
            },
            id="engine-api",
        ),
    ],
)
def test_another_command_touching_the_limit_voids_it(other):
    limits = from_pulumi.pids_limits_from_commands(
        [command("docker update --pids-limit 64 web-1"), other]
    )
    assert limits == {}


def test_other_commands_naming_the_container_leave_the_limit():
    limits = from_pulumi.pids_limits_from_commands(
        [
            command("docker update --pids-limit 16 web-1-init"),
            command("docker start --attach web-1-init"),
            # Names that merely contain it, touching pids: not this container.
            command("docker update --pids-limit=-1 web-1-init-old"),
        ]
    )
    assert limits == {("", "web-1-init"): 16}
    # A name that says pids is no command touching the limit.
    limits = from_pulumi.pids_limits_from_commands(
        [command("docker update --pids-limit 16 pids-1"), command("docker start --attach pids-1")]
    )
    assert limits == {("", "pids-1"): 16}


def test_a_reload_in_the_container_is_no_limit_and_leaves_its_limit():
    reload = command(shlex.join(["docker", "exec", "napdms-prod-proxy-1", *proxy.RELOAD]))
    assert from_pulumi.read_pids_command(reload) is None
    limits = from_pulumi.pids_limits_from_commands(
        [command("docker update --pids-limit 512 napdms-prod-proxy-1"), reload]
    )
    assert limits == {("", "napdms-prod-proxy-1"): 512}


@pytest.mark.parametrize(
    "other",
    [
        pytest.param("docker exec web-1 sh -c 'echo max > /sys/fs/cgroup/pids.max'", id="cgroup"),
        pytest.param("docker exec web-1 docker update --pids-limit -1 web-1", id="nested-update"),
        pytest.param("docker exec web-1 caddy reload; docker update --pids-limit=-1 web-1"),
    ],
)
def test_an_exec_that_touches_the_limit_voids_it(other):
    limits = from_pulumi.pids_limits_from_commands(
        [command("docker update --pids-limit 64 web-1"), command(other)]
    )
    assert limits == {}


# The rule


def test_rule_reports_each_container_without_a_limit():
    stack = StackFacts((ContainerFacts("limited", pids_limit=64), ContainerFacts("open")))
    [finding] = check_stack(stack, RULE)
    assert finding.subject == "open"
    assert RULE.fix in finding.message and "CIS Docker Benchmark 5.29" in finding.message


@pytest.mark.parametrize("limit", [0, -1])
def test_unlimited_values_are_no_limit(limit):
    assert check_stack(StackFacts((ContainerFacts("open", pids_limit=limit),)), RULE)


# The pack, over the gRPC protocol


@pytest.fixture(scope="module")
def pack():
    with PackProcess() as running:
        running.configure("prod")
        yield running


@pytest.fixture(scope="module")
def flawed() -> Program:
    return run_program("prod", {}, main=Path(flawed_program.__file__))


def _unlimited(pack: PackProcess, resources) -> dict[str, str]:
    """Subject name -> level of each no-pids-limit finding of AnalyzeStack."""
    return {
        d.urn.rsplit("::", 1)[-1]: d.level
        for d in pack.analyze_stack(resources)
        if d.policy == "no-pids-limit"
    }


def test_pack_reports_every_container_the_commands_leave_unlimited(pack, flawed):
    found = _unlimited(pack, flawed.resources)
    assert {name: found.get(name) for name in flawed_program.PIDS_FLAWS} == dict.fromkeys(
        flawed_program.PIDS_FLAWS, "mandatory"
    )


def test_pack_finds_the_hand_written_containers_limits_in_their_commands(pack, flawed):
    found = _unlimited(pack, flawed.resources)
    limited = [c.name for c in flawed.containers() if c.name not in flawed_program.PIDS_FLAWS]
    assert limited and [name for name in limited if name in found] == []


def test_per_resource_analysis_does_not_guess(pack, flawed):
    # One resource alone cannot show the command beside it: the stack analysis judges.
    for name in ("hardened", "flawed-no-pids-limit"):
        resource = next(r for r in flawed.resources if r.name == name)
        assert "no-pids-limit" not in {d.policy for d in pack.analyze(resource)}


@pytest.fixture(scope="module")
def prod() -> Program:
    return run_program("prod")


def _reported(pack: PackProcess, resources) -> int:
    # Counted, not collected by URN: a service on every host has the same Docker name on each.
    return sum(d.policy == "no-pids-limit" for d in pack.analyze_stack(resources))


def test_pack_reads_the_program_s_limits_from_its_commands(pack, prod):
    assert _unlimited(pack, prod.resources) == {}
    without = [r for r in prod.resources if r.type != from_pulumi.COMMAND]
    assert _reported(pack, without) == len(prod.containers())


def test_a_limit_set_on_another_host_does_not_count(pack, prod):
    moved = [
        dataclasses.replace(r, inputs={**r.inputs, "environment": {"DOCKER_HOST": "ssh://x@y"}})
        if r.type == from_pulumi.COMMAND
        else r
        for r in prod.resources
    ]
    assert _reported(pack, moved) == len(prod.containers())

"""`napdms-ops audit` on the real engine: an exemption label waives nothing the stack's policy
config does not grant, and nothing that hands a container the host, whatever its name.

The containers are created, not started (a privileged one may not start in this sandbox): the
audit reads every state. Names are unique per run and removed afterwards.
"""

import random

import pytest
from docker.errors import NotFound

from napdms_ops.audit import audit
from tests.live.engine import DEFAULT_HOST, ensure_engine
from tests.live.standins import standin_image

REPLICA = random.randint(100_000, 999_999)
IMPOSTOR = f"napdms-prod-cadvisor-{REPLICA}"
"""Named like a replica of prod's cAdvisor, which prod.json grants run-as-root."""
SELF_EXEMPT = f"napdms-prod-selfexempt{REPLICA}"
"""No grant names it."""
LABELS = {"napdms.managed-by": "pulumi", "napdms.stack": "prod", "napdms.service": "cadvisor"}
OWNS_THE_HOST = ("privileged", "docker-socket", "host-mount", "runtime-state-mount")


@pytest.fixture(scope="module")
def report():
    client = ensure_engine()
    busybox = standin_image("busybox", client)
    labels = {
        **LABELS,
        "napdms.exempt.run-as-root": "reads root-owned cgroup files",
        **{f"napdms.exempt.{rule}": "trust me" for rule in OWNS_THE_HOST},
    }
    host_owner = dict(
        command=["sleep", "60"],
        user="0",
        privileged=True,
        volumes={
            "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
            "/": {"bind": "/host", "mode": "ro"},
        },
        labels=labels,
    )
    made = [
        client.containers.create(busybox, name=name, **host_owner)
        for name in (IMPOSTOR, SELF_EXEMPT)
    ]
    try:
        yield audit(DEFAULT_HOST, "prod")
    finally:
        for container in made:
            try:
                container.remove(force=True)
            except NotFound:
                pass


def _levels(report, name: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for verdict in report.verdicts:
        if verdict.finding.subject == name:
            level = "exempt" if verdict.finding.exempt_reason else verdict.level
            found.setdefault(verdict.finding.rule.id, set()).add(level)
    return found


@pytest.mark.parametrize("name", [IMPOSTOR, SELF_EXEMPT], ids=["impostor", "self-exempt"])
def test_a_self_exempted_host_owner_is_mandatory_in_prod(report, name):
    levels = _levels(report, name)
    for rule_id in ("privileged", "docker-socket", "unauthorised-exemption"):
        assert levels.get(rule_id) == {"mandatory"}, f"{name}: {rule_id} is {levels.get(rule_id)}"
    assert report.exit_code == 1


def test_a_label_without_a_grant_waives_nothing(report):
    assert _levels(report, SELF_EXEMPT)["run-as-root"] == {"mandatory"}


def test_the_stacks_grant_waives_a_rule_that_can_be_waived(report):
    assert _levels(report, IMPOSTOR)["run-as-root"] == {"exempt"}, (
        "prod.json grants napdms-prod-cadvisor run-as-root, and the label records it"
    )

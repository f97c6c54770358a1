"""Exemptions are granted by the stack's policy config, never by the container's own label."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from napdms_ops import policy_config
from policies.rules import (
    CONTAINER_RULES,
    RULES,
    ContainerFacts,
    LevelsError,
    Mount,
    StackFacts,
    check_container,
    check_stack,
    judge,
    levels,
)
from policies.rules.grants import UNWAIVABLE, grant_key, waivable

RULE = {rule.id: rule for rule in RULES}
REASON = "the image's entrypoint drops to uid 999 itself"
LABELS = {"napdms.managed-by": "pulumi", "napdms.stack": "prod", "napdms.service": "db"}
ROOT = ContainerFacts(
    name="napdms-prod-db-1",
    labels={**LABELS, "napdms.exempt.run-as-root": REASON},
    user="0",
)
"""Runs as root and records an exemption from run-as-root."""


def _grant(name: str = "napdms-prod-db", reason: str = REASON) -> dict:
    return {"exempt": {name: reason}}


def test_a_label_alone_waives_nothing():
    [finding] = check_container(ROOT, RULE["run-as-root"])
    assert finding.exempt_reason is None, "napdms-prod-db-1 exempted itself with a label"


def test_a_grant_and_its_label_exempt_with_the_grants_reason():
    [finding] = check_container(ROOT, RULE["run-as-root"], _grant(reason="granted: drops to 999"))
    assert finding.exempt_reason == "granted: drops to 999"
    assert "granted: drops to 999" in finding.message


def test_a_grant_without_the_label_exempts_nothing():
    unrecorded = replace(ROOT, labels=LABELS)
    [finding] = check_container(unrecorded, RULE["run-as-root"], _grant())
    assert finding.exempt_reason is None, "the exemption must be recorded on the container"


@pytest.mark.parametrize(
    "name", ["napdms-prod-db2", "napdms-prod-db-init", "napdms-prod-d", "x-napdms-prod-db"]
)
def test_a_grant_covers_only_the_container_it_names(name):
    [finding] = check_container(replace(ROOT, name=name), RULE["run-as-root"], _grant())
    assert finding.exempt_reason is None, f"the grant to napdms-prod-db exempted {name}"


@pytest.mark.parametrize("name", ["napdms-prod-db-1", "napdms-prod-db-2", "napdms-prod-db-12"])
def test_a_grant_covers_every_replica_of_its_service(name):
    [finding] = check_container(replace(ROOT, name=name), RULE["run-as-root"], _grant())
    assert finding.exempt_reason == REASON, f"replica {name} is not covered"


@pytest.mark.parametrize("reason", ["", "  "], ids=["empty", "blank"])
def test_an_empty_reason_grants_nothing(reason):
    [finding] = check_container(ROOT, RULE["run-as-root"], _grant(reason=reason))
    assert finding.exempt_reason is None


def test_a_grant_covers_only_its_own_rule():
    both = replace(ROOT, privileged=True)
    [finding] = check_container(both, RULE["privileged"], _grant())
    assert finding.exempt_reason is None, "a run-as-root grant exempted privileged"


@pytest.mark.parametrize("rule_id", sorted(UNWAIVABLE & {r.id for r in CONTAINER_RULES}))
def test_a_rule_that_hands_over_the_host_is_never_waived_outside_dev(rule_id):
    assert not waivable(rule_id, "napdms-prod-cadvisor"), f"{rule_id} is waivable in prod"
    assert not waivable(rule_id, "napdms-staging-cadvisor"), f"{rule_id} is waivable in staging"
    assert waivable(rule_id, "napdms-dev-cadvisor"), f"{rule_id} is not waivable in dev"


def test_a_privileged_prod_container_stays_a_finding_even_when_granted():
    owner = replace(
        ROOT, user="1000", privileged=True, labels={**LABELS, "napdms.exempt.privileged": REASON}
    )
    [finding] = check_container(owner, RULE["privileged"], _grant())
    assert finding.exempt_reason is None


def test_replica_names_share_their_services_grant_key():
    assert grant_key("napdms-prod-gitea-1") == "napdms-prod-gitea"
    assert grant_key("napdms-prod-gitea-init") == "napdms-prod-gitea-init"
    assert grant_key("napdms-prod-node-exporter") == "napdms-prod-node-exporter"


# unauthorised-exemption


def _unauthorised(subject: ContainerFacts, table: dict) -> list[str]:
    return [
        f.problem
        for f in check_stack(
            StackFacts(containers=(subject,)), RULE["unauthorised-exemption"], {"granted": table}
        )
    ]


def test_a_label_the_stack_does_not_grant_is_a_finding():
    [problem] = _unauthorised(ROOT, {})
    assert "napdms.exempt.run-as-root" in problem and "napdms-prod-db" in problem


def test_a_granted_label_is_no_finding():
    assert _unauthorised(ROOT, {"napdms-prod-db": {"run-as-root": REASON}}) == []


def test_a_label_for_another_rule_than_granted_is_a_finding():
    assert _unauthorised(ROOT, {"napdms-prod-db": {"privileged": REASON}})


def test_a_granted_label_of_an_unwaivable_rule_is_a_finding_in_prod():
    owner = replace(ROOT, labels={**LABELS, "napdms.exempt.docker-socket": REASON})
    assert _unauthorised(owner, {"napdms-prod-db": {"docker-socket": REASON}})


def test_unauthorised_exemption_cannot_be_exempted():
    rule = RULE["unauthorised-exemption"]
    assert "exempt" not in rule.config_schema
    labelled = replace(ROOT, labels={**ROOT.labels, "napdms.exempt.unauthorised-exemption": "x"})
    findings = check_stack(
        StackFacts(containers=(labelled,)), rule, {"exempt": {"napdms-prod-db": "trust me"}}
    )
    assert findings and all(f.exempt_reason is None for f in findings)


# The audit's verdict (the pack's is in test_pack.py)


def test_audit_self_exempted_host_owner_is_mandatory_in_prod():
    # Named like the catalog's cAdvisor, so the waivable grants cAdvisor has do reach it; what
    # hands it the host does not.
    owner = ContainerFacts(
        name="napdms-prod-cadvisor-1",
        labels={
            **LABELS,
            "napdms.exempt.privileged": "trust me",
            "napdms.exempt.docker-socket": "trust me",
            "napdms.exempt.host-mount": "trust me",
        },
        user="1000",
        privileged=True,
        mounts=(
            Mount("bind", "/var/run/docker.sock", "/var/run/docker.sock"),
            Mount("bind", "/", "/host", read_only=True),
        ),
    )
    verdicts = judge(StackFacts(containers=(owner,)), "prod", levels_or_none)
    mandatory = {v.finding.rule.id for v in verdicts if v.mandatory}
    assert {"privileged", "docker-socket", "unauthorised-exemption"} <= mandatory
    waived = {v.finding.rule.id for v in verdicts if v.finding.exempt_reason}
    assert not waived & UNWAIVABLE, f"{sorted(waived & UNWAIVABLE)} waived for an impostor"


def test_audit_honours_the_prod_files_grant_for_a_catalog_container():
    node_exporter = ContainerFacts(
        name="napdms-prod-node-exporter-1",
        labels={**LABELS, "napdms.exempt.host-mount": "records it"},
        user="65534:65534",
        mounts=(Mount("bind", "/proc", "/host/proc", read_only=True),),
    )
    verdicts = judge(StackFacts(containers=(node_exporter,)), "prod", levels_or_none)
    host_mount = [v for v in verdicts if v.finding.rule.id == "host-mount"]
    assert host_mount and all(not v.mandatory and v.finding.exempt_reason for v in host_mount)
    assert not [v for v in verdicts if v.finding.rule.id == "unauthorised-exemption"]


def levels_or_none(stack: str):
    try:
        return levels.load(stack)
    except LevelsError:
        return None


# The config files: generated from the catalog, refused when edited by hand


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_config_file_holds_exactly_the_catalogs_grants(stack):
    on_disk = (levels.CONFIG_DIR / f"{stack}.json").read_text()
    assert on_disk == policy_config.generated(stack), (
        f"policies/config/{stack}.json is stale: napdms-ops policy-config --stack {stack} --write"
    )


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_no_unwaivable_rule_is_granted_outside_dev(stack):
    granted = {rule for rules in levels.load(stack).grants.values() for rule in rules}
    assert not granted & UNWAIVABLE, f"{stack} grants {sorted(granted & UNWAIVABLE)}"


def _document(stack: str) -> dict:
    return json.loads((levels.CONFIG_DIR / f"{stack}.json").read_text())


def test_hand_added_grant_of_an_unwaivable_rule_is_refused_in_prod():
    grants = {**levels.load("prod").grants, "napdms-prod-cadvisor": {"docker-socket": "please"}}
    document = levels.with_grants(_document("prod"), [r.id for r in RULES], grants)
    with pytest.raises(LevelsError, match=r"^prod: .*docker-socket can never be waived"):
        levels.parse("prod", document)


def test_hand_edited_rule_grant_that_disagrees_with_the_table_is_refused():
    document = _document("prod")
    document["privileged"] = {"enforcementLevel": "mandatory", "exempt": {"napdms-prod-x": "hi"}}
    with pytest.raises(LevelsError, match=r"^prod: .*privileged\.exempt differs"):
        levels.parse("prod", document)


def test_grant_to_another_stacks_container_is_refused():
    grants = {"napdms-dev-db": {"run-as-root": "from dev"}}
    document = levels.with_grants(_document("prod"), [r.id for r in RULES], grants)
    with pytest.raises(LevelsError, match=r"^prod: .*napdms-dev-db: not a container of prod"):
        levels.parse("prod", document)


def test_readme_rule_table_states_each_rules_levels_and_who_may_waive_it():
    readme = (levels.CONFIG_DIR.parents[1] / "README.md").read_text()
    rows = {
        cells[1].strip("` "): [c.strip() for c in cells[-4:-1]]
        for line in readme.splitlines()
        if line.startswith("| `") and len(cells := line.split("|")) == 9
    }
    dev, prod = levels.load("dev"), levels.load("prod")
    for rule in RULES:
        waived = (
            "never"
            if rule.id == "unauthorised-exemption"
            else "dev only"
            if rule.id in UNWAIVABLE
            else "by grant"
        )
        assert rows.get(rule.id) == [dev.level(rule.id), prod.level(rule.id), waived], rule.id

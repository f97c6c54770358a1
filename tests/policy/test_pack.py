"""The CrossGuard pack, exercised through its real entry point and the analyzer gRPC protocol."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from jsonschema import ValidationError

from policies.rules import CONTAINER_RULES, RULE_IDS, RULES, STACK_RULES, levels
from tests.policy import flawed_program
from tests.policy.analyzer import PackProcess
from tests.program import Program, run_program

UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@pytest.fixture(scope="module")
def pack():
    with PackProcess() as running:
        yield running


@pytest.fixture(scope="module")
def flawed() -> Program:
    return run_program("prod", {}, main=Path(flawed_program.__file__))


def _named(program: Program, name: str):
    return next(r for r in program.resources if r.name == name)


def test_pack_serves_one_policy_per_rule_and_one_for_exemptions(pack):
    names = [p.name for p in pack.info().policies]
    assert sorted(names) == sorted(RULE_IDS | {"exemptions"})


def test_every_rule_is_mandatory_unless_configured(pack):
    levels = {p.name: p.enforcementLevel for p in pack.info().policies}
    relaxed = [name for name, level in levels.items() if level != 1 and name != "exemptions"]
    assert relaxed == [], f"policies not mandatory by default: {relaxed}"


def test_policies_cite_their_cis_recommendation(pack):
    cited = {p.name: p.framework.reference for p in pack.info().policies}
    for rule in RULES:
        assert cited[rule.id] == (rule.cis or ""), (
            f"policy {rule.id} cites {cited[rule.id]!r}, rule says {rule.cis!r}"
        )


def test_own_stack_has_no_mandatory_violation(pack, program):
    pack.configure(program.stack)
    mandatory = [d for d in pack.analyze_program(program) if d.level == "mandatory"]
    assert mandatory == [], "\n".join(f"{d.policy} on {d.urn}: {d.message}" for d in mandatory)


def test_own_stack_exemptions_are_reported_as_advisory_with_their_reason(pack, program):
    pack.configure(program.stack)
    reported = [d for d in pack.analyze_stack(program.resources) if d.policy == "exemptions"]
    init = _named(
        program, "local-postgres-init" if program.stack == "dev" else "qnap-postgres-init"
    )
    on_init = [d for d in reported if d.urn == init.urn]
    assert {d.level for d in reported} == {"advisory"}
    assert any("exempt from run-as-root (sets file owners" in d.message for d in on_init), (
        f"the init container {init.name}'s run-as-root exemption is not reported"
    )


@pytest.mark.parametrize("flaw_id", sorted(flawed_program.FLAWED))
def test_flawed_container_is_caught(pack, flawed, flaw_id):
    pack.configure("prod")
    resource = _named(flawed, f"flawed-{flaw_id}")
    rule_id = flawed_program.CAUGHT_BY[flaw_id]
    level = levels.load("prod").level(rule_id)
    caught = {d.policy for d in pack.analyze(resource) if d.level == level}
    assert rule_id in caught, (
        f"{resource.name}: expected a {level} {rule_id} violation, got {sorted(caught)}"
    )


def test_container_without_platform_labels_is_reported_unmanaged(pack, flawed):
    pack.configure("prod")
    caught = {d.policy for d in pack.analyze(_named(flawed, flawed_program.UNLABELLED))}
    assert caught == {"unmanaged-container"}, f"{flawed_program.UNLABELLED}: got {sorted(caught)}"


def test_every_container_rule_has_a_flawed_fixture():
    covered = (
        set(flawed_program.CAUGHT_BY.values())
        | flawed_program.UNEXPRESSIBLE
        | {"unmanaged-container"}
    )
    assert covered == {rule.id for rule in CONTAINER_RULES}


def test_hardened_hand_written_container_passes_every_policy(pack, flawed):
    pack.configure("prod")
    assert pack.analyze(_named(flawed, "hardened")) == []


@pytest.mark.parametrize("rule_id", [rule.id for rule in STACK_RULES])
def test_flawed_stack_is_caught_on_the_right_resource(pack, flawed, rule_id):
    pack.configure("prod")
    subjects = {
        d.urn.rsplit("::", 1)[-1]
        for d in pack.analyze_stack(flawed.resources)
        if d.policy == rule_id and d.level == "mandatory"
    }
    assert any(name.startswith(f"flawed-{rule_id}") for name in subjects), (
        f"{rule_id} reported on {sorted(subjects)}"
    )


def _prod_granting(grants: dict) -> dict:
    prod = levels.load("prod")
    document = json.loads((levels.CONFIG_DIR / "prod.json").read_text())
    return levels.with_grants(document, [r.id for r in RULES], {**prod.grants, **grants})


def test_self_exempted_container_is_mandatory_in_prod(pack, flawed):
    pack.configure("prod")
    resource = _named(flawed, flawed_program.SELF_EXEMPTED)
    found = {
        (d.policy, d.level) for d in pack.analyze_stack(flawed.resources) if d.urn == resource.urn
    }
    found |= {(d.policy, d.level) for d in pack.analyze(resource)}
    for rule_id in ("privileged", "docker-socket", "unauthorised-exemption"):
        assert (rule_id, "mandatory") in found, f"{resource.name}: {rule_id} not mandatory: {found}"
    assert ("exemptions", "advisory") not in found, f"{resource.name}'s labels waived something"


def test_grant_of_an_unwaivable_rule_to_a_prod_container_waives_nothing(pack, flawed):
    grants = {flawed_program.SELF_EXEMPTED: dict.fromkeys(flawed_program.SELF_EXEMPTIONS, "ok")}
    pack.configure("prod", _prod_granting(grants))
    resource = _named(flawed, flawed_program.SELF_EXEMPTED)
    found = {(d.policy, d.level) for d in pack.analyze(resource)}
    assert {("privileged", "mandatory"), ("docker-socket", "mandatory")} <= found


def test_exempted_finding_is_advisory_and_names_its_reason(pack, flawed):
    grants = {"exempted-run-as-root": {"run-as-root": "fixture: sets file owners"}}
    pack.configure("prod", _prod_granting(grants))
    resource = _named(flawed, "exempted-run-as-root")
    assert pack.analyze(resource) == [], "an exempted finding must not be a violation of its rule"
    reported = [d for d in pack.analyze_stack(flawed.resources) if d.urn == resource.urn]
    assert [(d.policy, d.level) for d in reported] == [("exemptions", "advisory")]
    assert "fixture: sets file owners" in reported[0].message


def test_dev_config_relaxes_image_pinning_to_advisory(pack, flawed):
    pack.configure("dev")
    levels = {d.policy: d.level for d in pack.analyze(_named(flawed, "flawed-image-not-pinned"))}
    assert levels == {"image-not-pinned": "advisory"}


def test_prod_config_has_the_same_finding_mandatory(pack, flawed):
    pack.configure("prod")
    levels = {d.policy: d.level for d in pack.analyze(_named(flawed, "flawed-image-not-pinned"))}
    assert levels == {"image-not-pinned": "mandatory"}


def test_replica_minimum_comes_from_the_stack_config(pack, flawed):
    pack.configure("staging")
    lonely = _named(flawed, "flawed-stateless-replicas")
    assert not [
        d
        for d in pack.analyze_stack(flawed.resources)
        if d.urn == lonely.urn and d.policy == "stateless-replicas"
    ]


def test_disabled_policy_reports_nothing(pack, flawed):
    pack.configure("prod", {"privileged": "disabled"})
    assert pack.analyze(_named(flawed, "flawed-privileged")) == []


def test_config_setting_outside_the_policy_schema_is_refused(pack):
    with pytest.raises(ValidationError):
        pack.configure("prod", {"stateless-replicas": {"minReplicas": 0}})


def test_image_unknown_during_preview_is_no_violation(pack, flawed):
    pack.configure("prod")
    resource = _named(flawed, "hardened")
    previewed = dataclasses.replace(resource, inputs={**resource.inputs, "image": UNKNOWN_STRING})
    assert pack.analyze(previewed) == []


def test_readme_rule_table_lists_every_rule():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [rule.id for rule in RULES if f"| `{rule.id}` |" not in readme]
    assert missing == [], f"README's rule table lacks {missing}"


def test_findings_on_same_named_containers_land_on_each_ones_own_resource(pack):
    prod = run_program("prod")
    pack.configure("prod")
    exporters = {
        r.urn
        for r in prod.resources
        if r.name in ("qnap-node-exporter-1", "asustor-node-exporter-1")
    }
    reported = {
        d.urn
        for d in pack.analyze_stack(prod.resources)
        if d.policy == "exemptions" and "host-mount" in d.message
    }
    assert len(exporters) == 2 and exporters <= reported, (
        f"node-exporter's host-mount exemption reported on {sorted(reported)}"
    )

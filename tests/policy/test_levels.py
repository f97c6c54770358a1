"""Per-stack enforcement levels (`policies/config/<stack>.json`) and the verdict they give
findings."""

import json

import pytest

from policies.rules import (
    RULE_IDS,
    ContainerFacts,
    LevelsError,
    StackFacts,
    judge,
    levels,
)
from policies.rules.rule import LEVELS

STACKS = ("dev", "staging", "prod")


# parse


def test_string_value_is_the_level():
    assert levels.parse("dev", {"privileged": "advisory"}).level("privileged") == "advisory"


def test_policy_not_named_is_mandatory():
    assert levels.parse("dev", {"privileged": "advisory"}).level("run-as-root") == "mandatory"


def test_object_value_gives_level_and_settings():
    parsed = levels.parse(
        "dev", {"stateless-replicas": {"enforcementLevel": "advisory", "minReplicas": 3}}
    )
    assert parsed.level("stateless-replicas") == "advisory"
    assert parsed.config("stateless-replicas") == {"minReplicas": 3}


def test_object_without_level_is_mandatory():
    assert (
        levels.parse("dev", {"stateless-replicas": {"minReplicas": 3}}).level("stateless-replicas")
        == "mandatory"
    )


def test_all_key_sets_the_default_level():
    parsed = levels.parse("dev", {"all": "advisory", "privileged": "mandatory"})
    assert parsed.level("run-as-root") == "advisory"
    assert parsed.level("privileged") == "mandatory"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("strict", id="string"),
        pytest.param({"enforcementLevel": "strict"}, id="object"),
    ],
)
def test_unknown_level_names_stack_policy_and_valid_levels(value):
    with pytest.raises(LevelsError) as error:
        levels.parse("staging", {"privileged": value})
    message = str(error.value)
    assert "staging" in message and "privileged" in message and "strict" in message
    assert all(level in message for level in LEVELS)


def test_value_neither_level_nor_object_is_refused():
    with pytest.raises(LevelsError, match="privileged"):
        levels.parse("dev", {"privileged": True})


def test_non_object_document_is_refused():
    with pytest.raises(LevelsError) as error:
        levels.parse("prod", ["privileged"])
    assert "prod" in str(error.value) and "list" in str(error.value)


# load


def test_load_of_missing_stack_lists_known_stacks(tmp_path):
    for stack in ("dev", "prod"):
        (tmp_path / f"{stack}.json").write_text("{}")
    with pytest.raises(LevelsError) as error:
        levels.load("qa", tmp_path)
    assert "qa" in str(error.value) and "dev, prod" in str(error.value)


def test_load_of_invalid_json_names_the_stack(tmp_path):
    (tmp_path / "dev.json").write_text('{"privileged": }')
    with pytest.raises(LevelsError, match="dev"):
        levels.load("dev", tmp_path)


# The real config files


@pytest.mark.parametrize("stack", STACKS)
def test_config_file_names_every_rule_and_exemptions(stack):
    document = json.loads((levels.CONFIG_DIR / f"{stack}.json").read_text())
    assert set(document) == RULE_IDS | {"exemptions"}


@pytest.mark.parametrize("stack", STACKS)
def test_config_file_loads(stack):
    assert levels.load(stack).stack == stack


ADVISORY_EVERYWHERE = {"custom-seccomp-profile"}
"""Rules that name something to review rather than something wrong (a profile of our own)."""


def test_prod_enforces_every_rule_but_the_review_notes():
    prod = levels.load("prod")
    assert {
        rule_id: prod.level(rule_id) for rule_id in RULE_IDS if prod.level(rule_id) != "mandatory"
    } == dict.fromkeys(ADVISORY_EVERYWHERE, "advisory")


def test_prod_reports_exemptions_as_advisory():
    assert levels.load("prod").level("exemptions") == "advisory"


def test_prod_requires_two_stateless_replicas():
    assert levels.load("prod").config("stateless-replicas")["minReplicas"] == 2


# judge: one stack's levels over unlabelled subjects

ROOT = ContainerFacts("db", user="0")
"""A container many rules find fault with, run-as-root among them."""


def judge_one(stack: StackFacts, stack_levels: levels.StackLevels):
    """Judge `stack` with one stack's levels (its subjects carry no stack label)."""
    return judge(stack, stack_levels.stack, {stack_levels.stack: stack_levels}.get)


def rule_levels(verdicts) -> dict[str, set[str]]:
    """The levels each rule's verdicts were given."""
    found: dict[str, set[str]] = {}
    for verdict in verdicts:
        found.setdefault(verdict.finding.rule.id, set()).add(verdict.level)
    return found


def test_granted_finding_is_advisory_at_mandatory_level():
    reason = "entrypoint drops to uid 999"
    exempt = ContainerFacts(
        "napdms-prod-db", user="0", labels={"napdms.exempt.run-as-root": reason}
    )
    granting = levels.with_grants(
        {"run-as-root": "mandatory"},
        ["run-as-root", "unauthorised-exemption"],
        {"napdms-prod-db": {"run-as-root": reason}},
    )
    verdicts = judge_one(StackFacts(containers=(exempt,)), levels.parse("prod", granting))
    assert rule_levels(verdicts)["run-as-root"] == {"advisory"}


def test_unexempt_finding_takes_its_rule_level():
    verdicts = judge_one(
        StackFacts(containers=(ROOT,)), levels.parse("prod", {"run-as-root": "mandatory"})
    )
    assert rule_levels(verdicts)["run-as-root"] == {"mandatory"}


def test_advisory_level_from_config_applies():
    verdicts = judge_one(
        StackFacts(containers=(ROOT,)), levels.parse("dev", {"run-as-root": "advisory"})
    )
    assert rule_levels(verdicts)["run-as-root"] == {"advisory"}
    assert rule_levels(verdicts)["no-memory-limit"] == {"mandatory"}


def test_disabled_rule_does_not_run():
    verdicts = judge_one(
        StackFacts(containers=(ROOT,)), levels.parse("dev", {"run-as-root": "disabled"})
    )
    assert "run-as-root" not in rule_levels(verdicts)


def test_disabled_stack_rule_does_not_run():
    stack = StackFacts(containers=(ContainerFacts("web", labels={"napdms.stateless": "true"}),))
    verdicts = judge_one(stack, levels.parse("dev", {"stateless-replicas": "disabled"}))
    assert "stateless-replicas" not in rule_levels(verdicts)


@pytest.mark.parametrize("minimum, flagged", [(1, False), (2, True)], ids=["min-1", "min-2"])
def test_rule_settings_from_config_apply(minimum, flagged):
    stack = StackFacts(containers=(ContainerFacts("web", labels={"napdms.stateless": "true"}),))
    verdicts = judge_one(
        stack, levels.parse("dev", {"stateless-replicas": {"minReplicas": minimum}})
    )
    assert ("stateless-replicas" in rule_levels(verdicts)) is flagged

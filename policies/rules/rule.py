"""A rule, the finding it produces, and the registry both the pack and the audit iterate.

A rule is a small pure function that yields one line per problem it sees. The registry wraps
each problem into a `Finding` that names the subject, says how to fix it and cites the CIS
Docker Benchmark, and marks it exempt when the stack grants the subject an exemption from the
rule and the subject records it (see `grants.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from .facts import ContainerFacts, NetworkFacts, StackFacts, VolumeFacts
from .grants import GRANTS_SETTING, SELF_GRANT_RULE, granted_reason, grants_schema

SEVERITIES = ("low", "medium", "high", "critical")
LEVELS = ("advisory", "mandatory", "disabled")

Subject = ContainerFacts | VolumeFacts | NetworkFacts
ContainerCheck = Callable[[ContainerFacts, Mapping[str, Any]], Iterable[str]]
StackCheck = Callable[[StackFacts, Mapping[str, Any]], Iterable[tuple[Subject, str]]]


@dataclass(frozen=True)
class Rule:
    """One hardening rule."""

    id: str
    """Stable id: the policy name in the pack, the exemption label suffix, the audit's column."""
    title: str
    """What good looks like, in one sentence (the policy's description)."""
    severity: str
    fix: str
    """How to fix a violation, in the operator's terms."""
    cis: str | None
    """CIS Docker Benchmark v1.6.0 recommendation, when one covers it."""
    check: ContainerCheck | StackCheck
    config_schema: Mapping[str, Any]
    """JSON Schema of the rule's settings in `policies/config/<stack>.json` (besides the level)."""
    defaults: Mapping[str, Any]
    """Setting values when the config file gives none."""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"rule {self.id}: severity must be one of {SEVERITIES}, got {self.severity!r}"
            )
        if not self.fix.strip():
            raise ValueError(f"rule {self.id}: a rule must say how to fix what it finds")

    @property
    def reference(self) -> str:
        """`CIS Docker Benchmark 5.4`, or a note that no CIS recommendation covers it."""
        return f"CIS Docker Benchmark {self.cis}" if self.cis else "no CIS recommendation"

    def settings(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The rule's settings: defaults overlaid with the stack's config."""
        merged = dict(self.defaults)
        merged.update({k: v for k, v in (config or {}).items() if k in self.config_schema})
        return merged


@dataclass(frozen=True)
class Finding:
    """One problem of one subject (container, volume or network)."""

    rule: Rule
    subject: str
    problem: str
    exempt_reason: str | None = None
    """Set when the stack grants the subject an exemption from this rule: report it, advisory."""

    @property
    def message(self) -> str:
        """The full line for an operator: what is wrong, how to fix it, and the reference."""
        text = f"{self.subject}: {self.problem}. Fix: {self.rule.fix} ({self.rule.reference})"
        if self.exempt_reason:
            text = f"exempt from {self.rule.id} ({self.exempt_reason}); {text}"
        return text


CONTAINER_RULES: list[Rule] = []
STACK_RULES: list[Rule] = []


def _registrar(
    registry: list[Rule],
    *,
    id: str,
    title: str,
    severity: str,
    fix: str,
    cis: str | None = None,
    config_schema: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[Any], Any]:
    schema = dict(config_schema or {})
    if id != SELF_GRANT_RULE:
        schema[GRANTS_SETTING] = grants_schema()

    def register(check: Any) -> Any:
        rule = Rule(id, title, severity, fix, cis, check, schema, defaults or {})
        if any(r.id == rule.id for r in CONTAINER_RULES + STACK_RULES):
            raise ValueError(f"rule id {rule.id!r} is registered twice; rule ids must be unique")
        registry.append(rule)
        return check

    return register


container_rule = partial(_registrar, CONTAINER_RULES)
"""Decorator: register a `ContainerCheck` (one container's facts -> problems) as a rule."""
stack_rule = partial(_registrar, STACK_RULES)
"""Decorator: register a `StackCheck` (a whole stack -> (subject, problem) pairs) as a rule."""


def check_container(
    facts: ContainerFacts, rule: Rule, config: Mapping[str, Any] | None = None
) -> list[Finding]:
    """Findings of one container rule on one container."""
    settings = rule.settings(config)
    return [
        Finding(
            rule, facts.name, problem, granted_reason(facts, rule.id, settings.get(GRANTS_SETTING))
        )
        for problem in rule.check(facts, settings)
    ]


def stack_findings(
    stack: StackFacts, rule: Rule, config: Mapping[str, Any] | None = None
) -> list[tuple[Subject, Finding]]:
    """Findings of one stack rule on a whole stack, each with the subject it is about (names
    repeat across hosts: a node exporter on each NAS)."""
    settings = rule.settings(config)
    grants = settings.get(GRANTS_SETTING)
    return [
        (subject, Finding(rule, subject.name, problem, granted_reason(subject, rule.id, grants)))
        for subject, problem in rule.check(stack, settings)
    ]


def check_stack(
    stack: StackFacts, rule: Rule, config: Mapping[str, Any] | None = None
) -> list[Finding]:
    """Findings of one stack rule on a whole stack."""
    return [finding for _subject, finding in stack_findings(stack, rule, config)]

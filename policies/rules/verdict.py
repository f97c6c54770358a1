"""Every rule over a whole stack at the stack's levels: what the audit prints and the tests check.

The pack applies the same levels through Pulumi (one policy per rule); this is the same decision
for callers without Pulumi: a finding is enforced at its rule's level, except that an exempted
finding is always advisory, and a disabled rule is not run.
"""

from __future__ import annotations

from dataclasses import dataclass

from .facts import StackFacts
from .levels import StackLevels
from .rule import CONTAINER_RULES, STACK_RULES, Finding, check_container, check_stack


@dataclass(frozen=True)
class Verdict:
    """A finding and the level it is enforced at."""

    finding: Finding
    level: str
    """`mandatory` or `advisory`."""

    @property
    def mandatory(self) -> bool:
        return self.level == "mandatory"


def evaluate(stack: StackFacts, levels: StackLevels) -> list[Verdict]:
    """All findings of all rules, containers first (in rule order), then the stack rules."""
    findings: list[Finding] = []
    for rule in CONTAINER_RULES:
        if levels.level(rule.id) != "disabled":
            for container in stack.containers:
                findings += check_container(container, rule, levels.config(rule.id))
    for rule in STACK_RULES:
        if levels.level(rule.id) != "disabled":
            findings += check_stack(stack, rule, levels.config(rule.id))
    return [Verdict(f, "advisory" if f.exempt_reason else levels.level(f.rule.id)) for f in findings]

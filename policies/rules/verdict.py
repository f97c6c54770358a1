"""Every rule over everything one daemon (or stack) holds, each finding at its subject's level.

The pack applies the same levels through Pulumi (one policy per rule); this is the same decision
for callers without Pulumi (the audit): a finding is enforced at its rule's level in the
subject's stack, except that a finding the stack grants an exemption from is advisory, and a
disabled rule is not run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .facts import StackFacts
from .levels import StackLevels
from .names import STACK_LABEL
from .rule import CONTAINER_RULES, STACK_RULES, Finding, Subject, check_container, stack_findings

_RULE_ORDER = {rule.id: index for index, rule in enumerate(CONTAINER_RULES + STACK_RULES)}


@dataclass(frozen=True)
class Verdict:
    """A finding and the level it is enforced at."""

    finding: Finding
    level: str
    """`mandatory` or `advisory`."""

    @property
    def mandatory(self) -> bool:
        return self.level == "mandatory"


def judge(
    daemon: StackFacts, default_stack: str, stack_levels: Callable[[str], StackLevels | None]
) -> list[Verdict]:
    """Every finding of every rule on one daemon, each at the level of its subject's stack.

    `stack_levels(name)` returns a stack's levels, or None for a stack without a policy config;
    subjects of such stacks and unlabelled ones are judged at `default_stack`'s levels.
    """
    fallback = stack_levels(default_stack)
    if fallback is None:
        raise ValueError(
            f"{default_stack}: no policy config policies/config/{default_stack}.json; "
            "use a stack that has one"
        )

    def stack_of(subject: Subject) -> str:
        name = subject.labels.get(STACK_LABEL, "")
        return name if name and stack_levels(name) is not None else default_stack

    def levels_of(name: str) -> StackLevels:
        return stack_levels(name) or fallback

    verdicts: list[Verdict] = []
    for rule in CONTAINER_RULES:
        for container in daemon.containers:
            stack = levels_of(stack_of(container))
            if stack.level(rule.id) != "disabled":
                verdicts += _verdicts(
                    check_container(container, rule, stack.config(rule.id)), stack
                )

    members: dict[str, set[int]] = {}
    for subject in (*daemon.containers, *daemon.volumes, *daemon.networks):
        members.setdefault(stack_of(subject), set()).add(id(subject))
    for rule in STACK_RULES:
        for name, ids in sorted(members.items()):
            stack = levels_of(name)
            if stack.level(rule.id) == "disabled":
                continue
            findings = [
                finding
                for subject, finding in stack_findings(daemon, rule, stack.config(rule.id))
                if id(subject) in ids
            ]
            verdicts += _verdicts(findings, stack)
    return sort_verdicts(verdicts)


def sort_verdicts(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """Mandatory first; then in the rules' order, then by subject."""
    return sorted(
        verdicts,
        key=lambda v: (
            not v.mandatory,
            _RULE_ORDER.get(v.finding.rule.id, len(_RULE_ORDER)),
            v.finding.subject,
        ),
    )


def _verdicts(findings: Iterable[Finding], stack: StackLevels) -> list[Verdict]:
    return [Verdict(f, "advisory" if f.exempt_reason else stack.level(f.rule.id)) for f in findings]

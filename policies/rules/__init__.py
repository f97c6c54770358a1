"""The platform's hardening rules, written once: pure functions over container, volume and
network facts, used by the CrossGuard pack (`policies/__main__.py`), the runtime audit
(`napdms_ops audit`) and the tests. Nothing here imports Pulumi or Docker.

A new rule is one decorated function in the module of its theme.
"""

# Importing a theme registers its rules; this order is the order of reports.
from . import identity, resources, isolation, exposure, operations, stack  # noqa: F401  isort: skip
from .facts import ContainerFacts, Mount, NetworkFacts, PublishedPort, StackFacts, VolumeFacts
from .levels import LevelsError, StackLevels
from .rule import (
    CONTAINER_RULES,
    STACK_RULES,
    Finding,
    Rule,
    Subject,
    check_container,
    check_stack,
    stack_findings,
)
from .verdict import Verdict, judge, sort_verdicts

RULES = CONTAINER_RULES + STACK_RULES
RULE_IDS = frozenset(rule.id for rule in RULES)
RULES_BY_ID = {rule.id: rule for rule in RULES}

__all__ = [
    "CONTAINER_RULES",
    "ContainerFacts",
    "Finding",
    "LevelsError",
    "Mount",
    "NetworkFacts",
    "PublishedPort",
    "RULES",
    "RULES_BY_ID",
    "RULE_IDS",
    "Rule",
    "STACK_RULES",
    "StackFacts",
    "StackLevels",
    "Subject",
    "Verdict",
    "VolumeFacts",
    "check_container",
    "check_stack",
    "stack_findings",
    "judge",
    "sort_verdicts",
]

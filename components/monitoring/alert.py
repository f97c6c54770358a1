"""`Alert`: one Prometheus alerting rule, typed, rendered into a rule group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["critical", "warning", "none"]
"""critical pages now (mail and chat, repeated hourly); warning needs attention today; none is
the Watchdog, which only the watcher reads."""


@dataclass(frozen=True)
class Alert:
    """An alerting rule: what must hold, for how long, how bad it is and what to do about it."""

    name: str
    expr: str
    severity: Severity
    summary: str
    """One line naming what is wrong; may use `{{ $labels.x }}` and `{{ $value }}`."""
    fix: str
    """What the operator does first."""
    for_: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    """Extra labels (beside severity) that routing or inhibition reads."""

    def rule(self) -> dict:
        """The rule as Prometheus' rule file holds it."""
        rule: dict = {"alert": self.name, "expr": self.expr}
        if self.for_:
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity, **dict(self.labels)}
        rule["annotations"] = {"summary": self.summary, "fix": self.fix}
        return rule


def group(name: str, alerts: list[Alert], interval: str | None = None) -> dict:
    """A rule group; Prometheus evaluates a group's rules in order, groups in parallel."""
    body: dict = {"name": name}
    if interval:
        body["interval"] = interval
    body["rules"] = [alert.rule() for alert in alerts]
    return body

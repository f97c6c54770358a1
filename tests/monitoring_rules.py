"""Run Prometheus' own rule tests (`promtool test rules`) against the rules the program generates.

The rule file under test is the generated one with only the alert under test, its annotations
left out: promtool compares
annotations verbatim, and the templates in them are checked separately by `promtool check rules`
on the file exactly as generated. Everything that decides whether an alert fires (expression,
`for`, labels) is the generated text itself.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from components.catalog import generated_files
from components.monitoring import timing
from components.settings.stack import Stack

PROMTOOL = shutil.which("promtool")


@dataclass
class Case:
    """One promtool test: input series, and the alerts expected at a moment (none: silent)."""

    alert: str
    series: dict[str, str]
    """Series selector (with all labels) -> promtool's expanding notation, one step per scrape."""
    at: str
    expect: list[dict[str, str]] = field(default_factory=list)
    """Labels of each alert expected firing at `at` (empty: the alert must not fire)."""
    interval_s: int = timing.SCRAPE_S
    """Step of the series and of rule evaluation: the scrape interval, or a coarser one for
    alerts over a day (promtool evaluates every step up to `at`)."""


def rules_of(text: str, alert: str) -> str:
    """The generated rules of `alert` (no rule reads another's result: each alert can be tested
    alone, and promtool then evaluates only these), without their annotations."""
    document = yaml.safe_load(text)
    for group in document["groups"]:
        group["rules"] = [rule for rule in group["rules"] if rule["alert"] == alert]
        for rule in group["rules"]:
            rule.pop("annotations", None)
    document["groups"] = [group for group in document["groups"] if group["rules"]]
    return yaml.safe_dump(document, sort_keys=False)


def run(
    stack: Stack, case: Case, tmp: Path, service: str = "prometheus"
) -> subprocess.CompletedProcess:
    """promtool test rules of `case` against `service`'s generated rules.yml."""
    rules = tmp / "rules.yml"
    rules.write_text(rules_of(generated_files(service, stack.context)["rules.yml"], case.alert))
    tests = {
        "rule_files": [str(rules)],
        # At the scrape interval, rules are evaluated as Prometheus will; coarser steps are for
        # alerts over days, where the evaluation step does not matter.
        "evaluation_interval": timing.seconds(
            timing.EVALUATE_S if case.interval_s == timing.SCRAPE_S else case.interval_s
        ),
        "tests": [
            {
                "name": f"{case.alert} at {case.at}",
                "interval": timing.seconds(case.interval_s),
                "input_series": [
                    {"series": series, "values": values} for series, values in case.series.items()
                ],
                "alert_rule_test": [
                    {
                        "eval_time": case.at,
                        "alertname": case.alert,
                        "exp_alerts": [{"exp_labels": labels} for labels in case.expect],
                    }
                ],
            }
        ],
    }
    spec = tmp / "tests.yml"
    spec.write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run(
        [PROMTOOL, "test", "rules", str(spec)], capture_output=True, text=True, timeout=120
    )

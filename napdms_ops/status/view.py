"""How `status` prints: one line per stack, or one stack's tables (rich)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from napdms_ops.release.status import print_status

COLOURS = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}
LIFECYCLE_COLOURS = {
    "ready": "green",
    "degraded": "yellow",
    "recovering": "cyan",
    "provisioning": "blue",
    "retired": "dim",
}


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ago(value: str | None, now: str) -> str:
    """`value` (ISO 8601) as an age relative to `now`: `3h ago`; `-` when unknown."""
    if value is None:
        return "-"
    return f"{_span((_moment(now) - _moment(value)).total_seconds())} ago"


def until(value: str | None, now: str) -> str:
    """`value` as the time left from `now`: `in 62d`, or `expired 2h ago`."""
    if value is None:
        return "-"
    seconds = (_moment(value) - _moment(now)).total_seconds()
    return f"in {_span(seconds)}" if seconds > 0 else f"expired {_span(-seconds)} ago"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def _metric(report: dict, text: str) -> str:
    """A metric's text, or `unknown` when Prometheus could not be asked."""
    return "unknown" if not report["metrics"]["available"] else text


def summary(report: dict) -> str:
    """The stack on one line: lifecycle, service health counts, drift, last backup and deploy."""
    counts = {h: 0 for h in COLOURS}
    for entry in report["services"]:
        counts[entry["health"]] += 1
    now = report["checked"]
    drift = report["drift"]
    drift_text = drift["classification"]
    if drift["time"]:
        drift_text += f" ({ago(drift['time'], now)})"
    deploy = report["last_deploy"]
    metrics = "ok" if report["metrics"]["available"] else f"unknown ({report['metrics']['error']})"
    return (
        f"{report['stack']}: {report['lifecycle']['state']} - "
        f"{len(report['services'])} services: "
        + ", ".join(f"{n} {h}" for h, n in counts.items())
        + f"; drift {drift_text}"
        + f"; last backup {_metric(report, ago(report['last_backup'], now))}"
        + "; last deploy "
        + (f"{deploy['command']} {deploy['result']} {ago(deploy['time'], now)}" if deploy else "-")
        + f"; metrics {metrics}"
    )


def print_overview(lines: list[tuple[str, str]], console: Any) -> None:
    """One line per stack: (`stack`, its summary or `unreachable: <why>`)."""
    for _, line in lines:
        console.print(line, markup=False, highlight=False)


def print_stack(report: dict, console: Any) -> None:
    """One stack: its lifecycle and drift, the health table, then the release table."""
    from rich.table import Table
    from rich.text import Text

    now = report["checked"]
    life = report["lifecycle"]
    header = Text(f"{report['stack']}: ")
    header.append(life["state"], style=LIFECYCLE_COLOURS[life["state"]])
    header.append(f" since {life['since']} ({life['reason']})")
    console.print(header)
    console.print(summary(report), markup=False, highlight=False)
    if report["drift"]["error"]:
        console.print(f"drift: {report['drift']['error']}", markup=False, highlight=False)
    table = Table(title=f"health of {report['stack']}")
    for column in (
        "service",
        "health",
        "reason",
        "response",
        "last deploy",
        "last backup",
        "certificate",
    ):
        table.add_column(column)
    for entry in report["services"]:
        last = entry["last"]
        response = entry["response_s"]
        table.add_row(
            entry["service"],
            Text(entry["health"], style=COLOURS[entry["health"]]),
            "; ".join(entry["reasons"]) or "-",
            _metric(report, f"{response * 1000:.0f} ms" if response is not None else "-"),
            f"{last['action']} {last['result']} {ago(last['time'], now)}" if last else "-",
            _metric(report, ago(entry["last_backup"], now)),
            _metric(report, until(entry["certificate_expiry"], now)),
        )
    console.print(table)
    print_status(report, console)

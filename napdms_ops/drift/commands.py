"""`napdms-ops drift`: both views of a stack's drift in one report, its metric, and `accept`.

Exit codes: 0 no drift, 1 minor, 2 major (accepted findings left out), 3 the check itself failed
(unknown stack, a daemon or the engine unreachable, the metric not delivered); the report is
still printed and kept when only the Pulumi view or the metric failed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import typer

from napdms_ops.drift import report as reports
from napdms_ops.drift.model import DriftReport, Finding, Source

ERROR_EXIT = 3


def _live_view(stack: str) -> Any:
    from napdms_ops.drift.live import live_view

    return live_view(stack)


def _pulumi_view(stack: str) -> list[Finding]:
    from napdms_ops.drift.pulumi_view import pulumi_findings

    return pulumi_findings(stack)


def _operator(environ: Mapping[str, str]) -> str:
    from napdms_ops.workstation.state import operator

    return operator(environ)


def _record(stack: str, command: str, result: str, **details: Any) -> Any:
    from napdms_ops.trail import record

    return record(stack, command, result, **details)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Seams:
    """What the commands reach outside themselves; tests replace them."""

    live: Callable[[str], Any] = _live_view
    """`napdms_ops.drift.live.live_view`: findings and the containers, volumes, networks seen."""
    pulumi: Callable[[str], list[Finding]] = _pulumi_view
    publish: Callable[[str, str], str | None] = reports.publish_metric
    record: Callable[..., Any] = _record
    """`napdms_ops.trail.record`."""
    operator: Callable[[Mapping[str, str]], str] = _operator
    now: Callable[[], datetime] = _now
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


def _fail(message: str) -> NoReturn:
    typer.echo(f"napdms-ops drift: {message}", err=True)
    raise typer.Exit(ERROR_EXIT)


def _check_stack(stack: str | None) -> str:
    from components.settings import STACKS

    if stack is None:
        _fail("--stack is missing; name the stack to check, e.g. --stack dev")
    if stack not in STACKS:
        _fail(f"unknown stack {stack!r}; use one of: {', '.join(STACKS)}")
    return stack


def _operational_errors() -> tuple[type[BaseException], ...]:
    """What a view raises when the world is not as it should be (not a bug): one line each."""
    from docker.errors import DockerException
    from requests import RequestException

    from components.settings import SettingsError
    from napdms_ops.release.runtime import DaemonError

    return (SettingsError, DaemonError, DockerException, RequestException, OSError)


def _reason(error: BaseException) -> str:
    lines = getattr(error, "lines", None)
    return "; ".join(lines) if lines else " ".join(str(error).split()) or type(error).__name__


def _views(stack: str, seams: Seams, pulumi: bool) -> tuple[DriftReport, str | None]:
    """Run the live view and (unless told not to) Pulumi's; the report, and why Pulumi's view
    failed (None when it ran or was skipped)."""
    from napdms_ops.drift.pulumi_view import PulumiUnavailable, PulumiViewError

    started, moment = time.monotonic(), seams.now()
    try:
        live = seams.live(stack)
    except _operational_errors() as error:
        _fail(f"{stack}: the live view failed: {_reason(error)}")
    findings: list[Finding] = list(live.findings)
    sources: list[Source] = ["live"]
    skipped: dict[str, str] = {}
    failure = None
    if not pulumi:
        skipped["pulumi"] = "--no-pulumi"
    else:
        try:
            findings += seams.pulumi(stack)
            sources.append("pulumi")
        except PulumiUnavailable as error:
            skipped["pulumi"] = error.reason
        except PulumiViewError as error:
            failure = str(error)
            skipped["pulumi"] = f"failed: {failure}"
    report = DriftReport(
        stack=stack,
        time=reports.stamp(moment),
        sources=sources,
        skipped=skipped,
        findings=findings,
        containers=live.containers,
        volumes=live.volumes,
        networks=live.networks,
        duration_s=round(time.monotonic() - started, 3),
    )
    return report, failure


def _publish(stack: str, text: str, seams: Seams) -> str | None:
    """Hand the metric to the monitoring stack; the error line when that failed."""
    try:
        seams.publish(stack, text)
    except reports.MetricError as error:
        return str(error)
    except _operational_errors() as error:
        return f"{stack}: the drift metric was not delivered: {_reason(error)}"
    return None


def make_drift_app(seams: Seams | None = None) -> typer.Typer:
    """The `drift` command group over `seams` (the real views, daemons and trail by default)."""
    seams = seams or Seams()
    app = typer.Typer(add_completion=False)

    @app.callback(invoke_without_command=True)
    def drift(
        context: typer.Context,
        stack: str | None = typer.Option(None, "--stack", help="The stack to check."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        no_pulumi: bool = typer.Option(
            False, "--no-pulumi", help="Skip Pulumi's refresh-and-preview."
        ),
        no_metric: bool = typer.Option(
            False, "--no-metric", help="Do not hand the metric to the stack's node-exporter."
        ),
    ) -> None:
        """Compare what the stack declares with what runs: live daemons and Pulumi's view.
        Exit 0 none, 1 minor, 2 major, 3 the check failed."""
        if context.invoked_subcommand is not None:
            return
        stack = _check_stack(stack)
        report, failure = _views(stack, seams, pulumi=not no_pulumi)
        directory = reports.drift_dir(stack, seams.environ)
        reports.forget_resolved(report, directory)
        accepted = {a.fingerprint for a in reports.load_accepted(directory)}
        document = reports.report_document(report, accepted)
        checked = datetime.fromisoformat(report.time)
        saved = reports.save(document, directory, checked)
        reports.prune(directory, checked)
        if as_json:
            typer.echo(json.dumps(document, indent=2))
        else:
            from napdms_ops.workstation.terminal import console

            reports.print_report(report, accepted, console(environ=seams.environ))
            typer.echo(f"report: {saved}")
        failures = [failure] if failure else []
        if not no_metric:
            text = reports.metric_text(report, accepted, checked)
            failures += filter(None, [_publish(stack, text, seams)])
        if failures:
            for line in failures[:-1]:
                typer.echo(f"napdms-ops drift: {line}", err=True)
            _fail(failures[-1])
        raise typer.Exit(document["exit_code"])

    @app.command("accept")
    def accept(
        stack: str = typer.Option(..., "--stack", help="The stack whose drift to accept."),
        reason: str = typer.Option(..., "--reason", help="Why the drift may stay (audited)."),
        no_metric: bool = typer.Option(
            False, "--no-metric", help="Do not update the metric on the stack's node-exporter."
        ),
    ) -> None:
        """Accept the major findings of the stack's last drift report: they stay in reports,
        marked, but no longer count toward the exit code or the DriftMajor alert."""
        stack = _check_stack(stack)
        if not reason.strip():
            _fail(f"{stack}: --reason is empty; say why the drift may stay (it is audited)")
        directory = reports.drift_dir(stack, seams.environ)
        found = reports.latest(directory)
        if found is None:
            _fail(f"{stack}: no drift report yet; run `napdms-ops drift --stack {stack}` first")
        path, report = found
        operator = seams.operator(seams.environ)
        new = reports.acceptances(report, directory, operator, reason, seams.now())
        if not new:
            typer.echo(f"{stack}: no major finding left to accept in {path.name}")
            return
        _audit(stack, path, new, reason, seams)
        reports.add_accepted(directory, new)
        for acceptance in new:
            typer.echo(
                f"{stack}: accepted {acceptance.field} of {acceptance.subject} "
                f"({acceptance.source}, {acceptance.fingerprint})"
            )
        if not no_metric:
            accepted = {a.fingerprint for a in reports.load_accepted(directory)}
            checked = datetime.fromisoformat(report.time)
            if failure := _publish(stack, reports.metric_text(report, accepted, checked), seams):
                _fail(failure)

    return app


def _audit(
    stack: str, path: Path, new: list[reports.Acceptance], reason: str, seams: Seams
) -> None:
    """The acceptance in the audit trail first: one the trail does not hold is not made."""
    from napdms_ops.trail import TrailError

    changes = {
        "report": path.name,
        "accepted": [
            a.model_dump(include={"fingerprint", "source", "subject", "field", "live"}) for a in new
        ],
    }
    try:
        seams.record(
            stack, "drift-accept", "ok", changes=changes, reason=reason, environ=seams.environ
        )
    except (TrailError, OSError) as error:
        _fail(
            f"{stack}: the audit trail refused the acceptance ({_reason(error)}); nothing was "
            "accepted: fix the trail (napdms-ops audit-log verify) and accept again"
        )


drift_app = make_drift_app()
"""The group the CLI registers: `app.add_typer(drift_app, name="drift")`."""

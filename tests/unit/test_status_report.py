"""`status`: one stack's services with their health (Docker and the stack's Prometheus), the drift
and the lifecycle derived from them; every stack at a glance; `lifecycle retire|revive`."""

import io
import json
from dataclasses import replace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from components.settings import read_stack
from napdms_ops.release.runtime import DaemonError
from napdms_ops.status import commands
from napdms_ops.status.lifecycle import Lifecycles
from napdms_ops.status.prometheus import PrometheusError, Sample
from napdms_ops.status.report import stack_status
from napdms_ops.status.view import print_stack, summary
from napdms_ops.trail import record, records
from tests.unit.release_fakes import World
from tests.unit.test_status_prometheus import Canned

OPERATOR = {"NAPDMS_OPERATOR": "ops@example.org"}


def _silent(stack, runtimes):
    raise PrometheusError("napdms-dev-prometheus-1 is not running")


def _canned(answers):
    return lambda stack, runtimes: Canned(stack.name, answers)


def _report(world: World, tmp_path, prometheus=_silent, trail=tuple) -> dict:
    environ = {"NAPDMS_STATE_DIR": str(tmp_path), **OPERATOR}
    return stack_status(
        world.stack(),
        lambda endpoint: world.runtime,
        world.journal,
        tmp_path,
        Lifecycles(tmp_path, environ=environ),
        prometheus,
        trail,
    )


def _entry(report: dict, service: str) -> dict:
    return next(e for e in report["services"] if e["service"] == service)


def _probe(service: str, success: float, seconds: float, colour: str | None = None) -> tuple:
    labels = {"service": service, "instance": f"{service}-1"} | (
        {"colour": colour} if colour else {}
    )
    return Sample(labels, success), Sample(labels, seconds)


def _probes(*probes: tuple) -> dict:
    return {"probe_success": [p[0] for p in probes], "probe_seconds": [p[1] for p in probes]}


def test_without_prometheus_health_comes_from_docker_and_metrics_are_unknown(tmp_path):
    report = _report(World(tmp_path), tmp_path)
    redis = _entry(report, "redis")
    assert (redis["health"], redis["response_s"], redis["last_backup"]) == ("healthy", None, None)
    assert report["metrics"] == {
        "available": False,
        "error": "napdms-dev-prometheus-1 is not running",
    }
    assert report["lifecycle"]["state"] == "ready"


def test_a_disconnected_redis_is_unhealthy_and_the_stack_degraded(tmp_path):
    answers = _probes(_probe("redis", 0, 4.0), _probe("postgres", 1, 0.002))
    report = _report(World(tmp_path), tmp_path, _canned(answers))
    redis = _entry(report, "redis")
    assert (redis["health"], redis["reasons"]) == (
        "unhealthy",
        ["redis disconnected (its port does not answer)"],
    )
    assert report["lifecycle"] | {"since": None} == {
        "state": "degraded",
        "since": None,
        "reason": "redis unhealthy",
    }


def test_a_database_ping_of_150_ms_is_degraded_and_shown_as_its_response_time(tmp_path):
    report = _report(World(tmp_path), tmp_path, _canned(_probes(_probe("postgres", 1, 0.15))))
    postgres = _entry(report, "postgres")
    assert (postgres["health"], postgres["response_s"]) == ("degraded", 0.15)


def test_a_redis_ping_of_50_ms_is_healthy(tmp_path):
    report = _report(World(tmp_path), tmp_path, _canned(_probes(_probe("redis", 1, 0.05))))
    assert _entry(report, "redis")["health"] == "healthy"


def test_a_public_site_with_6_percent_server_errors_is_unhealthy(tmp_path):
    world = World(tmp_path)
    stack = world.stack()
    spec = stack.services["napdms-backend"]
    site = f"{spec.public.subdomain}.{stack.settings.domain}"
    report = _report(world, tmp_path, _canned({"error_ratio": [Sample({"site": site}, 0.06)]}))
    backend = _entry(report, "napdms-backend")
    assert (backend["health"], backend["error_ratio"]) == ("unhealthy", 0.06)


def test_a_missing_container_makes_its_service_unhealthy(tmp_path):
    world = World(tmp_path)
    world.containers.pop("napdms-dev-redis-1")
    redis = _entry(_report(world, tmp_path), "redis")
    assert (redis["health"], redis["reasons"]) == ("unhealthy", ["napdms-dev-redis-1 missing"])


def test_an_idle_colours_failure_degrades_the_service_only(tmp_path):
    world = World(tmp_path)
    idle = "napdms-dev-napdms-backend-green-1"
    world.containers[idle] = replace(world.containers[idle], health="unhealthy")
    backend = _entry(_report(world, tmp_path), "napdms-backend")
    assert (backend["health"], backend["reasons"]) == (
        "degraded",
        [f"idle colour green: {idle} fails its health check"],
    )


def test_no_container_at_all_is_a_stack_still_provisioning(tmp_path):
    world = World(tmp_path)
    world.containers.clear()
    report = _report(world, tmp_path)
    assert (report["lifecycle"]["state"], report["containers"]["missing"]) == (
        "provisioning",
        report["containers"]["declared"],
    )


def test_a_major_drift_report_makes_a_healthy_stack_degraded(tmp_path):
    reports = tmp_path / "drift" / "dev"
    reports.mkdir(parents=True)
    finding = {
        "source": "live",
        "subject": "napdms-dev-redis-1",
        "kind": "container",
        "field": "user",
        "declared": "999:999",
        "live": "0:0",
        "severity": "major",
        "why": "runs as root",
    }
    document = {
        "stack": "dev",
        "time": "2026-12-06T08:00:00Z",
        "sources": ["live"],
        "findings": [finding],
        "containers": 22,
        "volumes": 10,
        "networks": 5,
        "duration_s": 1.2,
    }
    (reports / "20261206T080000Z.json").write_text(json.dumps(document))
    report = _report(World(tmp_path), tmp_path)
    assert (report["drift"]["classification"], report["lifecycle"]["state"]) == (
        "major",
        "degraded",
    )


def test_without_a_drift_report_the_drift_is_unknown(tmp_path):
    assert _report(World(tmp_path), tmp_path)["drift"]["classification"] == "unknown"


def test_the_release_view_and_the_last_deploy_stay_in_the_document(tmp_path):
    world = World(tmp_path)
    world.deployer().deploy("napdms-backend", "1.0.1")
    report = _report(world, tmp_path)
    backend = _entry(report, "napdms-backend")
    assert (backend["strategy"], backend["live"], backend["last"]["to_digest"]) == (
        "blue-green",
        "green",
        "1.0.1",
    )
    assert report["last_deploy"] | {"time": None} == {
        "time": None,
        "command": "deploy",
        "service": "napdms-backend",
        "result": "ok",
    }


def test_the_last_deploy_is_the_newest_up_or_release_on_the_trail(tmp_path):
    world = World(tmp_path)
    world.deployer().deploy("gitea", "1.24.7")
    environ = {"NAPDMS_STATE_DIR": str(tmp_path), **OPERATOR}
    record("dev", "up", "ok", changes={"updated": 3}, environ=environ)
    report = _report(world, tmp_path, trail=lambda: records("dev", environ))
    assert (report["last_deploy"]["command"], report["last_deploy"]["service"]) == ("up", None)


def test_backup_and_certificate_times_come_from_prometheus(tmp_path):
    answers = {
        "last_backup": [Sample({}, 1765000000.0)],
        "service_backup": [Sample({"service": "postgres"}, 1765000000.0)],
        "certificate": [Sample({"service": "napdms-backend"}, 1770000000.0)],
    }
    report = _report(World(tmp_path), tmp_path, _canned(answers))
    assert (report["last_backup"], _entry(report, "postgres")["last_backup"]) == (
        "2025-12-06T05:46:40Z",
        "2025-12-06T05:46:40Z",
    )
    assert _entry(report, "napdms-backend")["certificate_expiry"] == "2026-02-02T02:40:00Z"


def test_the_summary_says_lifecycle_health_counts_and_unknown_metrics(tmp_path):
    world = World(tmp_path)
    world.containers.pop("napdms-dev-redis-1")
    line = summary(_report(world, tmp_path))
    assert line.startswith("dev: degraded - ")
    assert "1 unhealthy" in line and "last backup unknown" in line


def test_the_stack_view_shows_health_and_the_colours(tmp_path):
    out = io.StringIO()
    print_stack(_report(World(tmp_path), tmp_path), Console(file=out, width=250))
    text = out.getvalue()
    assert "health of dev" in text and "blue (live)" in text


class Unreachable:
    def __init__(self, endpoint):
        self.endpoint = endpoint

    def state(self, container):
        raise DaemonError(f"{self.endpoint}: cannot connect to the Docker daemon")


@pytest.fixture
def sources(tmp_path, monkeypatch):
    world = World(tmp_path)
    chosen = commands.Sources(
        read_stack=lambda name: world.stack() if name == "dev" else read_stack(name),
        runtime=lambda endpoint: world.runtime if endpoint is None else Unreachable(endpoint),
        prometheus=_silent,
        environ={"NAPDMS_STATE_DIR": str(tmp_path), **OPERATOR},
    )
    monkeypatch.setattr(commands, "SOURCES", chosen)
    return world


def test_status_of_every_stack_says_which_daemons_do_not_answer(sources):
    result = CliRunner().invoke(commands.status_app, [], env={"COLUMNS": "300"})
    lines = result.output.splitlines()
    assert result.exit_code == 0
    assert lines[0].startswith("dev: ready - ")
    assert [line.split(": ")[1] for line in lines[1:]] == ["unreachable", "unreachable"]


def test_status_of_one_stack_as_json(sources):
    result = CliRunner().invoke(commands.status_app, ["--stack", "dev", "--json"])
    document = json.loads(result.output)
    assert (document["stack"], document["lifecycle"]["state"]) == ("dev", "ready")
    assert {e["health"] for e in document["services"]} == {"healthy"}


def test_status_of_an_unreachable_stack_fails_in_one_line(sources):
    result = CliRunner().invoke(commands.status_app, ["--stack", "prod"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "napdms-ops status: prod: " in result.output


def test_retire_and_revive_through_the_command_line(sources, tmp_path):
    runner = CliRunner()
    retired = runner.invoke(commands.lifecycle_app, ["retire", "-s", "staging", "--reason", "x"])
    again = runner.invoke(commands.lifecycle_app, ["retire", "-s", "staging", "--reason", "y"])
    revived = runner.invoke(commands.lifecycle_app, ["revive", "-s", "staging", "--reason", "z"])
    assert [r.exit_code for r in (retired, again, revived)] == [0, 1, 0]
    assert revived.output.startswith("staging: provisioning since ")


def test_reviving_a_ready_stack_is_refused_in_one_line(sources):
    CliRunner().invoke(commands.status_app, ["--stack", "dev"])
    result = CliRunner().invoke(commands.lifecycle_app, ["revive", "-s", "dev", "--reason", "x"])
    assert (result.exit_code, result.output.count("\n")) == (1, 1)
    assert "only a retired stack can be revived; it is ready" in result.output

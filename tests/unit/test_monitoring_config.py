"""The monitoring configuration the program generates: valid for the real tools (promtool, amtool,
the blackbox exporter), complete for the catalog, and as fast as the README's arithmetic says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.catalog import generated_files
from components.model.context import CatalogContext
from components.model.spec import (
    SecretUse,
)
from components.monitoring import timing
from components.monitoring.rules import rule_groups
from components.monitoring.targets import PROBE_JOB, PUBLIC_JOB, unreachable
from components.settings.stack import Stack, read_stack
from tests.catalog_entries import fake_service, with_service
from tests.program import OPERATOR_CONFIG

STACKS = ("dev", "staging", "prod")
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
BLACKBOX = shutil.which("prometheus-blackbox-exporter")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool missing")


def _check(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}{result.stderr}"


def _prometheus_files(stack: Stack, service: str, tmp: Path) -> Path:
    """The generated prometheus.yml and rules.yml in `tmp`, the rule path pointing there."""
    files = generated_files(service, stack.context)
    (tmp / "rules.yml").write_text(files["rules.yml"])
    config = yaml.safe_load(files["prometheus.yml"])
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"], f"{stack.name}: rule_files"
    config["rule_files"] = [str(tmp / "rules.yml")]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    return tmp / "prometheus.yml"


def alertmanager_yml(stack: Stack, service: str = "alertmanager") -> str:
    """alertmanager.yml as the container reads it: from its config volume, or rendered from the
    webhook secret's template the way the init container writes it."""
    files = generated_files(service, stack.context)
    if "alertmanager.yml" in files:
        return files["alertmanager.yml"]
    (use,) = [u for u in stack.services[service].secrets if u.template]
    return use.template.replace("{secret}", OPERATOR_CONFIG["alert_webhook_url"])


@needs_promtool
@pytest.mark.parametrize("service", ["prometheus", "watcher"])
@pytest.mark.parametrize("stack", STACKS)
def test_prometheus_config_passes_promtool_check_config(stack, service, tmp_path):
    config = _prometheus_files(read_stack(stack), service, tmp_path)
    _check([PROMTOOL, "check", "config", str(config)])


@needs_promtool
@pytest.mark.parametrize("stack", STACKS)
def test_alert_rules_pass_promtool_check_rules(stack, tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(generated_files("prometheus", read_stack(stack).context)["rules.yml"])
    _check([PROMTOOL, "check", "rules", str(rules)])


@needs_amtool
@pytest.mark.parametrize("service", ["alertmanager", "watcher-alertmanager"])
@pytest.mark.parametrize("stack", STACKS)
def test_alertmanager_config_passes_amtool_check_config(stack, service, tmp_path):
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager_yml(read_stack(stack), service))
    _check([AMTOOL, "check-config", str(config)])


@pytest.mark.skipif(BLACKBOX is None, reason="prometheus-blackbox-exporter missing")
@pytest.mark.parametrize("stack", STACKS)
def test_blackbox_config_passes_the_exporters_own_check(stack, tmp_path):
    config = tmp_path / "blackbox.yml"
    config.write_text(generated_files("blackbox", read_stack(stack).context)["blackbox.yml"])
    _check([BLACKBOX, "--config.check", f"--config.file={config}"])


# -- routing, read by amtool ------------------------------------------------------------------


def _routes(stack: str, tmp: Path, *labels: str) -> list[str]:
    config = tmp / "alertmanager.yml"
    config.write_text(alertmanager_yml(read_stack(stack)))
    result = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={config}", *labels],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@needs_amtool
def test_a_critical_alert_pages_by_mail_and_chat(tmp_path):
    receivers = _routes("prod", tmp_path, "alertname=ServiceDown", "severity=critical")
    assert receivers == ["page"], f"prod: a critical alert went to {receivers}"
    page = next(
        r
        for r in yaml.safe_load(alertmanager_yml(read_stack("prod")))["receivers"]
        if r["name"] == "page"
    )
    assert page.get("email_configs") and page.get("webhook_configs"), f"prod: page is {page}"


@needs_amtool
def test_failing_mail_is_reported_to_chat(tmp_path):
    receivers = _routes(
        "prod", tmp_path, "alertname=NotificationsFailing", "integration=email", "severity=critical"
    )
    assert receivers == ["chat"], f"prod: failing mail was reported to {receivers}"


@needs_amtool
def test_failing_chat_is_reported_by_mail(tmp_path):
    receivers = _routes(
        "prod",
        tmp_path,
        "alertname=NotificationsFailing",
        "integration=webhook",
        "severity=critical",
    )
    assert receivers == ["mail"], f"prod: failing chat was reported to {receivers}"


@needs_amtool
def test_the_watchdog_is_delivered_to_no_one(tmp_path):
    receivers = _routes("prod", tmp_path, "alertname=Watchdog", "severity=none")
    assert receivers == ["nobody"], f"prod: the Watchdog went to {receivers}"


def test_a_dead_host_holds_back_the_alerts_of_its_services():
    inhibitions = yaml.safe_load(alertmanager_yml(read_stack("prod")))["inhibit_rules"]
    assert {
        "source_matchers": ['alertname="HostDown"'],
        "target_matchers": ['alertname!="HostDown"'],
        "equal": ["host"],
    } in inhibitions, "prod: no inhibition by HostDown on the same host"


def test_critical_alerts_repeat_more_often_than_warnings():
    routes = yaml.safe_load(alertmanager_yml(read_stack("prod")))["route"]["routes"]
    by_severity = {r["matchers"][0]: r for r in routes if r["matchers"][0].startswith("severity")}
    assert by_severity['severity="critical"']["repeat_interval"] == "1h"
    assert by_severity['severity="warning"']["repeat_interval"] == "4h"


# -- secrets ----------------------------------------------------------------------------------


def test_the_webhook_url_never_sits_in_a_plain_config_file():
    stack = read_stack("prod")
    for service in ("alertmanager", "watcher-alertmanager"):
        assert "alertmanager.yml" not in generated_files(service, stack.context), (
            f"prod: {service}'s config with the webhook's token is a plain config file"
        )
        assert "--config.file=/run/secrets/alertmanager.yml" in stack.services[service].command


def test_the_smtp_password_reaches_alertmanager_as_a_file():
    stack = read_stack("prod")
    document = yaml.safe_load(alertmanager_yml(stack))
    assert document["global"]["smtp_auth_password_file"] == "/run/secrets/smtp-password"
    assert SecretUse(secret="smtp-password") in stack.services["alertmanager"].secrets


def test_a_relay_without_login_needs_no_smtp_password():
    stack = read_stack("dev")
    assert "smtp_auth_password_file" not in yaml.safe_load(alertmanager_yml(stack))["global"]
    assert "smtp-password" not in stack.secret_names, "dev: smtp-password required without login"


# -- complete for the catalog -----------------------------------------------------------------


def _scrape(stack: Stack) -> dict[str, dict]:
    config = yaml.safe_load(generated_files("prometheus", stack.context)["prometheus.yml"])
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _targets(job: dict) -> list[tuple[str, dict]]:
    return [(t, group["labels"]) for group in job["static_configs"] for t in group["targets"]]


@pytest.mark.parametrize("stack", STACKS)
def test_every_service_with_metrics_is_scraped_on_every_host(stack):
    resolved = read_stack(stack)
    jobs = _scrape(resolved)
    for name, spec in resolved.services.items():
        if spec.metrics is None:
            continue
        hosts = {labels["host"] for _, labels in _targets(jobs[name])}
        assert hosts == set(resolved.placements[name]), f"{stack}: {name} scraped on {hosts}"


@pytest.mark.parametrize("stack", STACKS)
def test_every_replica_is_probed(stack):
    resolved = read_stack(stack)
    probed = [labels["service"] for _, labels in _targets(_scrape(resolved)[PROBE_JOB])]
    for name, spec in resolved.services.items():
        if spec.probe is not None:
            # Both colours of a blue-green service: the idle one is the instant rollback.
            expected = spec.containers_per_host * len(resolved.placements[name])
            assert probed.count(name) == expected, f"{stack}: {name} probed {probed.count(name)}x"


@pytest.mark.parametrize("stack", STACKS)
def test_every_public_site_is_probed_through_the_proxy(stack):
    resolved = read_stack(stack)
    sites = {labels["service"]: t for t, labels in _targets(_scrape(resolved)[PUBLIC_JOB])}
    for name, spec in resolved.services.items():
        if spec.public is not None:
            assert sites.get(name) == (
                f"https://{spec.public.subdomain}.{resolved.settings.domain}:8443/"
            ), f"{stack}: {name}'s site is probed at {sites.get(name)}"


@pytest.mark.parametrize("stack", STACKS)
def test_every_probe_and_metrics_port_is_reachable_from_the_monitoring_host(stack):
    assert unreachable(read_stack(stack).context) == [], stack


ALLOWED_UNPROBED = {
    "proxy": "its sites are probed through it (probe-public)",
    "node-exporter": "scraped: up is its probe; HostDown",
    "blackbox": "the prober itself: scraped, up is its probe",
    "watcher": "the watcher of the primary: on the backup host, behind no published port",
    "watcher-alertmanager": "the watcher's Alertmanager: likewise",
}


@pytest.mark.parametrize("stack", STACKS)
def test_every_service_is_probed_or_says_why_not(stack):
    resolved = read_stack(stack)
    for name, spec in resolved.services.items():
        assert spec.probe is not None or name in ALLOWED_UNPROBED or spec.metrics is not None, (
            f"{stack}: {name} has neither probe nor metrics"
        )


def _with_fake(stack: Stack) -> CatalogContext:
    return with_service(stack.context, fake_service())


def test_a_new_catalog_entry_is_scraped_probed_and_alerted_with_no_other_edit():
    context = _with_fake(read_stack("prod"))
    config = yaml.safe_load(generated_files("prometheus", context)["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert [t for t, _ in _targets(jobs["fake-wiki"])] == ["fake-wiki-1:9000"]
    probes = [t for t, labels in _targets(jobs[PROBE_JOB]) if labels["service"] == "fake-wiki"]
    assert probes == ["http://fake-wiki-1:8080/health"]
    sites = [t for t, labels in _targets(jobs[PUBLIC_JOB]) if labels["service"] == "fake-wiki"]
    assert sites == ["https://wiki.nap-dms.example.org:8443/"]
    groups = {g["name"]: g for g in rule_groups(context)}
    alerts = {r["alert"] for r in groups["service:fake-wiki"]["rules"]}
    assert {"ServiceDown", "ProbeFailing", "PublicSiteDown", "ErrorBudgetBurn"} <= alerts, alerts


def test_a_new_catalog_entry_gets_a_site_at_the_proxy():
    caddyfile = generated_files("proxy", _with_fake(read_stack("prod")))["Caddyfile"]
    assert "wiki.nap-dms.example.org" in caddyfile, "the proxy serves no site for the new entry"


# -- latency: the arithmetic of the README, held by the generated files ---------------------------


def test_a_fault_pages_within_30_seconds_by_construction():
    worst = (
        timing.SCRAPE_S
        + timing.PROBE_TIMEOUT_S
        + timing.EVALUATE_S
        + timing.CRITICAL_FOR_S
        + timing.CRITICAL_GROUP_WAIT_S
    )
    assert worst <= 30, f"worst case {worst} s before delivery"


def test_one_failed_scrape_cannot_page():
    assert timing.CRITICAL_FOR_S >= 2 * timing.SCRAPE_S
    assert timing.PROBE_TIMEOUT_S < timing.SCRAPE_S


@pytest.mark.parametrize("stack", STACKS)
def test_generated_files_use_the_latency_budget(stack):
    resolved = read_stack(stack)
    config = yaml.safe_load(generated_files("prometheus", resolved.context)["prometheus.yml"])
    assert config["global"]["scrape_interval"] == f"{timing.SCRAPE_S}s"
    assert config["global"]["evaluation_interval"] == timing.seconds(timing.EVALUATE_S)
    for group in rule_groups(resolved.context):
        for rule in group["rules"]:
            if rule["alert"] in ("ServiceDown", "ProbeFailing", "PublicSiteDown", "HostDown"):
                assert rule["for"] == f"{timing.CRITICAL_FOR_S}s", f"{stack}: {rule['alert']}"
    critical = next(
        r
        for r in yaml.safe_load(alertmanager_yml(resolved))["route"]["routes"]
        if r.get("matchers") == ['severity="critical"']
    )
    assert critical["group_wait"] == timing.seconds(timing.CRITICAL_GROUP_WAIT_S), stack

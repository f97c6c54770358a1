"""Prometheus' configuration: a scrape job per service with metrics, the blackbox probes of every
health endpoint and public site, the rule files, and where alerts go."""

from __future__ import annotations

from collections import defaultdict

import yaml

from components.model.context import CatalogContext
from components.monitoring import timing
from components.monitoring.rules import rule_groups
from components.monitoring.targets import (
    PROBE_JOB,
    PUBLIC_JOB,
    Target,
    probe_targets,
    public_names,
    scrape_targets,
)

CONFIG_DIR = "/etc/prometheus"
CONFIG_FILE = "prometheus.yml"
RULES_FILE = "rules.yml"
BLACKBOX = "blackbox:9115"
"""The prober, by its network alias (any replica answers)."""
ALERTMANAGER = "alertmanager:9093"
PROXY_HTTPS_PORT = 8443
"""Where the proxy serves https inside the platform networks (published as 443)."""
SITE_RELABEL = [
    {"source_labels": ["exported_host"], "target_label": "site"},
    {"action": "labeldrop", "regex": "exported_host"},
]
"""A service's own `host` label (Caddy's site name) clashes with the target's NAS `host`, so
Prometheus keeps it as `exported_host`; it is called `site` from then on."""
HONOR_LABELS = frozenset({"backup-agent"})
"""Jobs whose samples carry a `service` label of their own (the backup agent reports per database),
which must win over the target's."""


def _static(targets: list[Target], stack: str, **extra: str) -> list[dict]:
    """Static configs, one per (service, host, colour), so each carries its labels."""
    by_labels: dict[tuple, list[str]] = defaultdict(list)
    for target in targets:
        by_labels[(target.service, target.host, target.colour)].append(target.address)
    return [
        {
            "targets": addresses,
            "labels": {**Target("", service, host, colour).labels(stack), **extra},
        }
        for (service, host, colour), addresses in by_labels.items()
    ]


def _probe_job(name: str, module: str | None, static: list[dict]) -> dict:
    job: dict = {"job_name": name, "metrics_path": "/probe"}
    if module:
        job["params"] = {"module": [module]}
    return job | {
        "static_configs": static,
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": BLACKBOX},
        ],
    }


def scrape_configs(context: CatalogContext) -> list[dict]:
    """Every scrape job: services' own metrics, then the probes."""
    jobs = []
    for name in context.services:
        targets = scrape_targets(context, name)
        if not targets:
            continue
        job = {
            "job_name": name,
            "metrics_path": context.services[name].metrics.path,
            "static_configs": _static(targets, context.stack),
            "metric_relabel_configs": SITE_RELABEL,
        }
        if name in HONOR_LABELS:
            job["honor_labels"] = True
        jobs.append(job)
    if "blackbox" not in context.services:
        return jobs
    static = [
        # The module is a parameter of each target group: http checks a health URL, tcp a port.
        config
        for name, spec in context.services.items()
        if spec.probe is not None
        for config in _static(
            probe_targets(context, name),
            context.stack,
            probe=spec.probe.kind,
            __param_module=spec.probe.kind,
        )
    ]
    if static:
        jobs.append(_probe_job(PROBE_JOB, None, static))
    public = [
        {
            "targets": [f"https://{spec.public.subdomain}.{context.domain}:{PROXY_HTTPS_PORT}/"],
            "labels": {"service": name, "stack": context.stack},
        }
        for name, spec in context.services.items()
        if spec.public is not None
    ]
    if public and public_names(context):
        job = _probe_job(PUBLIC_JOB, "https", public)
        # The instance is the URL users type, without the inside port.
        job["relabel_configs"].insert(
            2,
            {
                "source_labels": ["__param_target"],
                "regex": f"(https://[^:/]+):{PROXY_HTTPS_PORT}/",
                "target_label": "instance",
                "replacement": "$1/",
            },
        )
        jobs.append(job)
    return jobs


def config(context: CatalogContext) -> dict:
    """prometheus.yml as a mapping."""
    alerting = (
        {"alertmanagers": [{"static_configs": [{"targets": [ALERTMANAGER]}]}]}
        if "alertmanager" in context.services
        else {}
    )
    return {
        "global": {
            "scrape_interval": timing.seconds(timing.SCRAPE_S),
            "scrape_timeout": timing.seconds(timing.PROBE_TIMEOUT_S),
            "evaluation_interval": timing.seconds(timing.EVALUATE_S),
        },
        "rule_files": [f"{CONFIG_DIR}/{RULES_FILE}"],
        **({"alerting": alerting} if alerting else {}),
        "scrape_configs": scrape_configs(context),
    }


def files(context: CatalogContext) -> dict[str, str]:
    """prometheus.yml and its rule file."""
    return {
        CONFIG_FILE: dump(config(context)),
        RULES_FILE: dump({"groups": rule_groups(context)}),
    }


def dump(document: dict) -> str:
    """YAML as the tools read it: keys in the order written, long lines not folded."""
    return yaml.safe_dump(document, sort_keys=False, width=1000, allow_unicode=True)

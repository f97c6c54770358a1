"""Grafana: dashboards over Prometheus and Loki, provisioned from the catalog.

Its datasources (fixed uids, so dashboards can name them) and its dashboards
(`components.monitoring.dashboards`) are files under `config_dir`, read by Grafana's
provisioning at start; the UI cannot change them (the volume is read-only), a deploy does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from components.model.spec import (
    BackupPolicy,
    HealthCheck,
    MetricsEndpoint,
    Probe,
    PublicRoute,
    SecretUse,
    ServiceSpec,
    VolumeMount,
)
from components.monitoring.dashboards import dashboards
from components.monitoring.dashboards.board import ALERTMANAGER_UID, LOKI_UID, PROMETHEUS_UID
from components.monitoring.timing import SCRAPE_S, seconds

if TYPE_CHECKING:
    from components.model.context import CatalogContext

PROVISIONING = "/etc/grafana/provisioning"
DASHBOARDS_DIR = "dashboards/napdms"
"""Where the dashboard JSON files land, below `PROVISIONING`."""

SPEC = ServiceSpec(
    name="grafana",
    description="Grafana dashboards",
    image="docker.io/grafana/grafana",
    tag="12.2.0",
    user="472:472",
    env={
        "GF_SERVER_ROOT_URL": "https://grafana.{domain}/",
        "GF_SECURITY_ADMIN_USER": "admin",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_PATHS_DATA": "/var/lib/grafana",
        "GF_PATHS_PROVISIONING": PROVISIONING,
    },
    volumes=[
        VolumeMount(name="data", path="/var/lib/grafana", backup=BackupPolicy(policy="daily"))
    ],
    tmpfs=["/tmp"],
    # The admin password stays a file (GF_<key>__FILE), never an environment value.
    secrets=[SecretUse(secret="grafana-admin-password", env="GF_SECURITY_ADMIN_PASSWORD__FILE")],
    config_dir=PROVISIONING,
    networks=["monitoring", "app"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:3000/api/health"]),
    memory="512m",
    cpus=0.5,
    public=PublicRoute(subdomain="grafana", port=3000),
    metrics=MetricsEndpoint(port=3000),
    probe=Probe(kind="http", port=3000, path="/api/health"),
)

# (service that serves it, uid, Grafana type, URL by the service's network alias, settings)
_DATASOURCES: tuple[tuple[str, str, str, str, dict[str, Any]], ...] = (
    (
        "prometheus",
        PROMETHEUS_UID,
        "prometheus",
        "http://prometheus:9090",
        {"timeInterval": seconds(SCRAPE_S)},
    ),
    ("loki", LOKI_UID, "loki", "http://loki:3100", {}),
    (
        "alertmanager",
        ALERTMANAGER_UID,
        "alertmanager",
        "http://alertmanager:9093",
        {"implementation": "prometheus", "handleGrafanaManagedAlerts": False},
    ),
)


def files(context: CatalogContext) -> dict[str, str]:
    """The datasources of the enabled services, the dashboard provider and its dashboards,
    by path below `config_dir`."""
    generated = {
        "datasources/napdms.yaml": _yaml({"apiVersion": 1, "datasources": _datasources(context)}),
        "dashboards/napdms.yaml": _yaml({"apiVersion": 1, "providers": [_provider()]}),
    }
    for name, content in dashboards(context).items():
        generated[f"{DASHBOARDS_DIR}/{name}"] = content
    return generated


def _datasources(context: CatalogContext) -> list[dict[str, Any]]:
    return [
        {
            "name": service.capitalize(),
            "uid": uid,
            "type": kind,
            "access": "proxy",
            "url": url,
            "isDefault": uid == PROMETHEUS_UID,
            "editable": False,
            "jsonData": settings,
        }
        for service, uid, kind, url, settings in _DATASOURCES
        if service in context.services
    ]


def _provider() -> dict[str, Any]:
    return {
        "name": "napdms",
        "orgId": 1,
        "folder": "NAP-DMS",
        "type": "file",
        "disableDeletion": True,
        "allowUiUpdates": False,
        "options": {"path": f"{PROVISIONING}/{DASHBOARDS_DIR}"},
    }


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)

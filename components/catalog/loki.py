"""Loki: log storage, fed by the log shipper; keeps 90 days and alerts on a burst of error lines.

Single binary on filesystem storage (TSDB index, schema v13) in its `/loki` volume. The
compactor deletes what is older than the retention period. The ruler evaluates one LogQL alert
and sends it to Alertmanager with the Prometheus alerts.
"""

from __future__ import annotations

import yaml

from components.model.context import CatalogContext
from components.model.spec import (
    BackupPolicy,
    HealthCheck,
    MetricsEndpoint,
    Probe,
    ServiceSpec,
    VolumeMount,
)

CONFIG_DIR = "/etc/loki"
CONFIG_FILE = "loki.yaml"
RULES_FILE = "rules.yaml"
RETENTION = "2160h"
"""90 days: a quarter of logs to investigate an incident reported late, in a bounded disk."""
TENANT = "fake"
"""The tenant Loki files everything under while auth is disabled; its rules must sit in a
folder of that name."""
RULES_DIR = "/tmp/rules"
"""The ruler's local store, `<dir>/<tenant>/<file>`: the config volume is one flat folder that
also holds the config, which the ruler would try to read as rules, so the rules file is copied
from there into the tmpfs at start."""
ERROR_RATE_THRESHOLD = 0.1
"""Error lines per second, per service, over 5 minutes: 30 in 5 minutes. A failed request or a
retried connection logs a line or two; dozens every five minutes, for ten minutes running, is a
fault that persists, not noise."""
ERROR_PATTERN = r"(?i)\b(error|fatal|panic)\b"

SPEC = ServiceSpec(
    name="loki",
    description="Grafana Loki, single binary, filesystem storage (3.6+ images ship no wget)",
    image="docker.io/grafana/loki",
    tag="3.5.8",
    user="10001:10001",
    # The image is distroless with busybox (its `sh`, `mkdir`, `cp`); exec keeps Loki PID 1.
    entrypoint=["/bin/sh", "-c"],
    command=[
        f"mkdir -p {RULES_DIR}/{TENANT}"
        f" && cp {CONFIG_DIR}/{RULES_FILE} {RULES_DIR}/{TENANT}/{RULES_FILE}"
        f" && exec /usr/bin/loki -config.file={CONFIG_DIR}/{CONFIG_FILE}"
    ],
    volumes=[
        VolumeMount(
            name="data",
            path="/loki",
            backup=BackupPolicy(
                policy="exclude", reason="logs are diagnostics kept 90 days, not restored"
            ),
        )
    ],
    tmpfs=["/tmp"],
    config_dir=CONFIG_DIR,
    networks=["monitoring"],
    health=HealthCheck(
        test=["CMD", "wget", "-qO-", "http://127.0.0.1:3100/ready"], start_period="60s"
    ),
    memory="1g",
    cpus=1,
    metrics=MetricsEndpoint(port=3100),
    probe=Probe(kind="http", port=3100, path="/ready"),
    monitors=["logs"],
)


def config() -> dict:
    """Loki's configuration (the same in every stack)."""
    return {
        "auth_enabled": False,
        "server": {"http_listen_port": 3100, "grpc_listen_port": 9095, "log_level": "info"},
        "common": {
            "instance_addr": "127.0.0.1",
            "path_prefix": "/loki",
            "storage": {"filesystem": {"chunks_directory": "/loki/chunks"}},
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}},
        },
        "schema_config": {
            "configs": [
                {
                    "from": "2024-01-01",
                    "store": "tsdb",
                    "object_store": "filesystem",
                    "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }
            ]
        },
        "compactor": {
            "working_directory": "/loki/compactor",
            "compaction_interval": "10m",
            "retention_enabled": True,
            "retention_delete_delay": "2h",
            "delete_request_store": "filesystem",
        },
        "limits_config": {"retention_period": RETENTION},
        "ruler": {
            "storage": {"type": "local", "local": {"directory": RULES_DIR}},
            "rule_path": "/loki/rules-temp",
            "alertmanager_url": "http://alertmanager:9093",
            "enable_alertmanager_v2": True,
            "ring": {"kvstore": {"store": "inmemory"}},
            "enable_api": True,
        },
        "analytics": {"reporting_enabled": False},
    }


def rules(stack: str) -> dict:
    """The ruler's alert: a service logging errors at a sustained rate."""
    selector = f'{{stack="{stack}"}} |~ "{_logql_string(ERROR_PATTERN)}"'
    return {
        "groups": [
            {
                "name": "logs",
                "rules": [
                    {
                        "alert": "ServiceLogsErrors",
                        "expr": (
                            f"sum by (service) (rate({selector} [5m])) > {ERROR_RATE_THRESHOLD}"
                        ),
                        "for": "10m",
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "{{ $labels.service }} logs errors steadily",
                            "description": (
                                "{{ $labels.service }} wrote {{ $value | humanize }} lines a "
                                "second matching error, fatal or panic over 5 minutes, for 10 "
                                "minutes; read them in Grafana (Loki, "
                                f'{{service="{{{{ $labels.service }}}}", stack="{stack}"}}).'
                            ),
                        },
                    }
                ],
            }
        ]
    }


def files(context: CatalogContext) -> dict[str, str]:
    """Loki's config and the ruler's rules for this stack."""
    return {
        CONFIG_FILE: yaml.safe_dump(config(), sort_keys=False),
        RULES_FILE: yaml.safe_dump(rules(context.stack), sort_keys=False),
    }


def _logql_string(text: str) -> str:
    """`text` inside a LogQL double-quoted string: backslashes and quotes escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"')

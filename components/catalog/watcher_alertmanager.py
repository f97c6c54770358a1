"""The watcher's own Alertmanager on the backup host: mail (and the webhook) without the
primary's help."""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.catalog import alertmanager
from components.model.context import CatalogContext
from components.model.spec import BackupPolicy, ServiceSpec, VolumeMount

if TYPE_CHECKING:
    from components.model.alerting import AlertingSettings

# Validated again as a whole, like a stack's override: the copy obeys the catalog's rules too.
SPEC = ServiceSpec.model_validate(
    alertmanager.SPEC.model_dump()
    | {
        "name": "watcher-alertmanager",
        "description": "Alertmanager of the watcher on the backup host",
        "volumes": [
            VolumeMount(
                name="data",
                path="/alertmanager",
                backup=BackupPolicy(
                    policy="exclude", reason="the watcher's silences: few and short-lived"
                ),
            ).model_dump()
        ],
        "memory": "128m",
        "cpus": 0.25,
        "placement": "backup",
        "metrics": None,
        "probe": None,
        "monitors": [],
    }
)


def routes(alerting: AlertingSettings) -> list[dict]:
    """None of the primary's special routes: everything the watcher hears pages."""
    return []


def files(context: CatalogContext) -> dict[str, str]:
    """alertmanager.yml with `routes`."""
    alerting = context.alerting
    text = alertmanager.rendered(alerting, context.domain, routes(alerting))
    return alertmanager.config_files(alerting, text)

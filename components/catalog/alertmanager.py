"""Alertmanager: routes alerts to mail and the Rocket.Chat webhook (its network reaches both)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.model.operator_keys import ALERT_WEBHOOK_URL, SMTP_PASSWORD
from components.model.spec import (
    BackupPolicy,
    HealthCheck,
    MetricsEndpoint,
    Probe,
    SecretUse,
    ServiceSpec,
    VolumeMount,
)
from components.monitoring import alertmanager_config

if TYPE_CHECKING:
    from components.model.alerting import AlertingSettings
    from components.model.context import CatalogContext

CONFIG_DIR = "/etc/alertmanager"
CONFIG_FILE = "alertmanager.yml"

SPEC = ServiceSpec(
    name="alertmanager",
    description="Prometheus Alertmanager",
    image="docker.io/prom/alertmanager",
    tag="v0.28.1",
    user="65534:65534",
    command=[
        f"--config.file={CONFIG_DIR}/{CONFIG_FILE}",
        "--storage.path=/alertmanager",
        # A single instance: no gossip port to open.
        "--cluster.listen-address=",
    ],
    volumes=[VolumeMount(name="data", path="/alertmanager", backup=BackupPolicy(policy="daily"))],
    tmpfs=["/tmp"],
    config_dir=CONFIG_DIR,
    networks=["monitoring", "edge"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:9093/-/healthy"]),
    memory="256m",
    cpus=0.5,
    metrics=MetricsEndpoint(port=9093),
    probe=Probe(kind="http", port=9093, path="/-/healthy"),
    monitors=["monitoring"],
)


def for_stack(spec: ServiceSpec, alerting: AlertingSettings, text: str) -> ServiceSpec:
    """`spec` reading this stack's alerting: the SMTP password when the relay wants a login, and
    the configuration `text` as the template of the webhook URL when alerts also go to chat (the
    file then holds the URL's token, so it lives with the secrets, not in the config volume)."""
    secrets = list(spec.secrets)
    if alerting.smtp_username:
        secrets.append(SecretUse(secret=SMTP_PASSWORD.secret))
    config_file = f"{CONFIG_DIR}/{CONFIG_FILE}"
    if alerting.chat_webhook:
        use = SecretUse(secret=ALERT_WEBHOOK_URL.secret, file=CONFIG_FILE, template=text)
        secrets.append(use)
        config_file = use.path
    command = [f"--config.file={config_file}", *(spec.command or [])[1:]]
    config_dir = None if alerting.chat_webhook else spec.config_dir
    return spec.model_copy(
        update={"secrets": secrets, "command": command, "config_dir": config_dir}
    )


def rendered(alerting: AlertingSettings, domain: str, routes: list[dict]) -> str:
    """alertmanager.yml for `alerting`, with `routes` before the severity routes."""
    password = SecretUse(secret=SMTP_PASSWORD.secret).path if alerting.smtp_username else None
    return alertmanager_config.render(
        alertmanager_config.config(
            smtp_host=alerting.smtp_host,
            smtp_port=alerting.smtp_port,
            smtp_starttls=alerting.smtp_starttls,
            smtp_from=alerting.smtp_from,
            smtp_to=alerting.smtp_to,
            smtp_username=alerting.smtp_username,
            password_file=password,
            webhook=alerting.chat_webhook,
            hello=domain,
            routes=routes,
        )
    )


def config_files(alerting: AlertingSettings, text: str) -> dict[str, str]:
    """The config volume's files: the configuration, unless it travels as a secret."""
    return {} if alerting.chat_webhook else {CONFIG_FILE: text}


def routes(alerting: AlertingSettings) -> list[dict]:
    """The platform's special routes: the Watchdog, and failing integrations."""
    return alertmanager_config.platform_routes(alerting.chat_webhook)


def files(context: CatalogContext) -> dict[str, str]:
    """alertmanager.yml with `routes`."""
    alerting = context.alerting
    return config_files(alerting, rendered(alerting, context.domain, routes(alerting)))

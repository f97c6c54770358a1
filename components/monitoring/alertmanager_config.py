"""Alertmanager's configuration: who is told, how fast, how often, and what is held back.

Critical alerts go to every receiver at once (mail and the Rocket.Chat webhook are separate
integrations: one failing does not stop the other); a failing integration is itself an alert
routed to the other one. The Watchdog goes nowhere here: the watcher on the backup host reads it
from Prometheus and pages when it stops.
"""

from __future__ import annotations

from components.monitoring import timing
from components.monitoring.kinds.monitoring import NOTIFICATIONS_FAILING, WATCHDOG
from components.monitoring.prometheus_config import dump

WEBHOOK_SLOT = "{secret}"
"""Where the webhook URL goes: the file is the template of that secret (`SecretUse.template`),
so the URL and its token never sit in a plain config file."""
PAGE, MAIL, CHAT, NOBODY = "page", "mail", "chat", "nobody"


def _receivers(to: list[str], webhook: bool) -> list[dict]:
    mail = {"email_configs": [{"to": address, "send_resolved": True} for address in to]}
    chat = {"webhook_configs": [{"url": WEBHOOK_SLOT, "send_resolved": True}]}
    receivers = [
        {"name": PAGE, **mail, **(chat if webhook else {})},
        {"name": MAIL, **mail},
    ]
    if webhook:
        receivers.append({"name": CHAT, **chat})
    return receivers + [{"name": NOBODY}]


def _severity_routes() -> list[dict]:
    return [
        {
            "receiver": PAGE,
            "matchers": ['severity="critical"'],
            "group_wait": timing.seconds(timing.CRITICAL_GROUP_WAIT_S),
            "group_interval": timing.seconds(timing.CRITICAL_GROUP_INTERVAL_S),
            "repeat_interval": timing.CRITICAL_REPEAT,
        },
        {
            "receiver": PAGE,
            "matchers": ['severity="warning"'],
            "group_wait": timing.seconds(timing.WARNING_GROUP_WAIT_S),
            "group_interval": timing.WARNING_GROUP_INTERVAL,
            "repeat_interval": timing.WARNING_REPEAT,
        },
    ]


def config(
    *,
    smtp_host: str,
    smtp_port: int,
    smtp_starttls: bool,
    smtp_from: str,
    smtp_to: list[str],
    smtp_username: str | None,
    password_file: str | None,
    webhook: bool,
    hello: str,
    routes: list[dict] | None = None,
) -> dict:
    """alertmanager.yml as a mapping. `routes` go before the severity routes (the watcher's
    Alertmanager has none of the QNAP's special cases)."""
    smtp: dict = {
        "smtp_smarthost": f"{smtp_host}:{smtp_port}",
        "smtp_from": smtp_from,
        "smtp_hello": hello,
        "smtp_require_tls": smtp_starttls,
    }
    if smtp_username:
        smtp["smtp_auth_username"] = smtp_username
        smtp["smtp_auth_password_file"] = password_file
    return {
        "global": {**smtp, "resolve_timeout": "5m"},
        "route": {
            "receiver": PAGE,
            "group_by": ["alertname", "service", "host"],
            "group_wait": timing.seconds(timing.WARNING_GROUP_WAIT_S),
            "group_interval": timing.WARNING_GROUP_INTERVAL,
            "repeat_interval": timing.WARNING_REPEAT,
            "routes": (routes or []) + _severity_routes(),
        },
        "inhibit_rules": _inhibitions(),
        "receivers": _receivers(smtp_to, webhook),
    }


def platform_routes(webhook: bool) -> list[dict]:
    """The QNAP Alertmanager's special cases: the Watchdog, and a failing integration reported
    through the other one (when mail is down the chat still hears it, and the reverse)."""
    routes: list[dict] = [{"receiver": NOBODY, "matchers": [f'alertname="{WATCHDOG}"']}]
    if webhook:
        routes += [
            {
                "receiver": CHAT,
                "matchers": [f'alertname="{NOTIFICATIONS_FAILING}"', 'integration="email"'],
                "group_wait": "0s",
            },
            {
                "receiver": MAIL,
                "matchers": [f'alertname="{NOTIFICATIONS_FAILING}"', 'integration="webhook"'],
                "group_wait": "0s",
            },
        ]
    return routes


def _inhibitions() -> list[dict]:
    return [
        # A dead host silences everything on it: one page, not twenty.
        {
            "source_matchers": ['alertname="HostDown"'],
            "target_matchers": ['alertname!="HostDown"'],
            "equal": ["host"],
        },
        # A service that is down fails its probes and its site too: say it once.
        {
            "source_matchers": ['alertname="ServiceDown"'],
            "target_matchers": ['alertname=~"ProbeFailing|PublicSiteDown|ServiceRestarting"'],
            "equal": ["service"],
        },
        {
            "source_matchers": ['alertname="ProbeFailing"'],
            "target_matchers": ['alertname=~"PublicSiteDown|ErrorBudgetBurn"'],
            "equal": ["service"],
        },
        # The critical form of a condition makes its warning form noise.
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "service", "host"],
        },
        {
            "source_matchers": ['alertname="CertificateExpiringSoon"'],
            "target_matchers": ['alertname="CertificateRenewalFailing"'],
            "equal": ["instance"],
        },
    ]


def render(document: dict) -> str:
    """The YAML file Alertmanager reads."""
    return dump(document)

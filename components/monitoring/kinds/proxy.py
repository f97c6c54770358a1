"""The TLS proxy: certificates expiring or not renewed, and server errors."""

from __future__ import annotations

from components.model.context import CatalogContext
from components.monitoring.alert import Alert
from components.monitoring.targets import PUBLIC_JOB

EXPIRY_DAYS = 14
"""The spec's warning horizon for a certificate."""
RENEWAL_DAYS = 25
"""ACME certificates live 90 days and Caddy renews them with 30 left: under 25, renewal has
been failing for five days."""
ERROR_RATIO = 0.05
"""Share of 5xx answers over 5 minutes that pages."""


def alerts(context: CatalogContext, services: list[str]) -> list[Alert]:
    """Certificate alerts where ACME issues the certificates (the internal CA's live 12 h and
    renew themselves), and 5xx alerts from the proxy's metrics everywhere."""
    expiry = f'probe_ssl_earliest_cert_expiry{{job="{PUBLIC_JOB}"}} - time()'
    alerts = []
    if context.tls_mode == "acme":
        alerts += [
            Alert(
                "CertificateExpiringSoon",
                f"{expiry} < {EXPIRY_DAYS} * 86400",
                "critical",
                "the certificate of {{ $labels.instance }} expires in "
                "{{ $value | humanizeDuration }}",
                "Caddy cannot renew: read the proxy's log (ACME errors), check DNS and port 80",
            ),
            Alert(
                "CertificateRenewalFailing",
                f"{expiry} < {RENEWAL_DAYS} * 86400",
                "warning",
                "the certificate of {{ $labels.instance }} was not renewed "
                "({{ $value | humanizeDuration }} left)",
                "read the proxy's log for ACME errors; Let's Encrypt may be unreachable",
            ),
        ]
    job = f'job=~"{"|".join(services)}"'
    answers = "caddy_http_request_duration_seconds_count"
    alerts.append(
        Alert(
            "HttpServerErrors",
            f'sum by (site) (rate({answers}{{{job},code=~"5.."}}[5m]))'
            f" / sum by (site) (rate({answers}{{{job}}}[5m])) > {ERROR_RATIO}",
            "critical",
            "{{ $value | humanizePercentage }} of {{ $labels.site }}'s answers are server errors",
            "find the failing upstream in the Proxy dashboard and read its logs",
            for_="2m",
        )
    )
    return alerts

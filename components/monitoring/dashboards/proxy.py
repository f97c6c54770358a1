"""The reverse proxy (Caddy's `caddy_http_*` metrics) and the certificates of the public URLs,
as the blackbox exporter sees them through the proxy."""

from __future__ import annotations

from grafanalib import core

from components.monitoring.dashboards.board import (
    StackView,
    jobs,
    prom,
    row,
    services_with,
    timeseries,
)

TITLE = "Proxy"
_DAY_S = 24 * 3600


def panels(context: StackView) -> list[core.Panel]:
    """Traffic, errors and latency per server, then days left on each certificate."""
    caddy = f'job=~"{jobs(services_with(context, "proxy"))}"'
    requests = f"caddy_http_request_duration_seconds_count{{{caddy}}}"
    failed = f'caddy_http_request_duration_seconds_count{{{caddy}, code=~"5.."}}'
    return [
        row("Traffic"),
        timeseries(
            "Requests per second",
            [
                prom(
                    f"sum by (server, code) (rate({requests}[$__rate_interval]))",
                    "{{server}} {{code}}",
                )
            ],
            unit="reqps",
        ),
        timeseries(
            "5xx share",
            [
                prom(
                    f"sum by (server) (rate({failed}[$__rate_interval])) "
                    f"/ sum by (server) (rate({requests}[$__rate_interval]))",
                    "{{server}}",
                )
            ],
            unit="percentunit",
        ),
        timeseries(
            "Latency p95",
            [
                prom(
                    "histogram_quantile(0.95, sum by (server, le) "
                    f"(rate(caddy_http_request_duration_seconds_bucket{{{caddy}}}"
                    "[$__rate_interval])))",
                    "{{server}}",
                )
            ],
            unit="s",
        ),
        timeseries(
            "Requests in flight",
            [prom(f"sum by (server) (caddy_http_requests_in_flight{{{caddy}}})", "{{server}}")],
            width=12,
        ),
        row("Certificates"),
        timeseries(
            "Days until the certificate expires",
            [
                prom(
                    f'(probe_ssl_earliest_cert_expiry{{job="probe-public"}} - time()) / {_DAY_S}',
                    "{{instance}}",
                )
            ],
            unit="d",
            width=12,
        ),
    ]

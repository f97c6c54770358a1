"""The blackbox exporter's modules: `http` (a health URL answers 2xx), `tcp` (a port accepts),
`https` (a public site answers over TLS, its certificate's expiry measured)."""

from __future__ import annotations

from components.model.context import CatalogContext
from components.monitoring import timing
from components.monitoring.prometheus_config import dump

CONFIG_DIR = "/etc/blackbox"
CONFIG_FILE = "blackbox.yml"


def files(context: CatalogContext) -> dict[str, str]:
    """blackbox.yml for this stack."""
    timeout = timing.seconds(timing.PROBE_TIMEOUT_S)
    # Certificates of Caddy's internal CA (dev) and of Let's Encrypt's staging CA chain to roots
    # no trust store holds: the probe still reads their expiry, it just cannot verify them.
    verify = context.tls_mode == "acme" and context.environment == "prod"
    modules = {
        "http": {
            "prober": "http",
            "timeout": timeout,
            "http": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": False},
        },
        "tcp": {
            "prober": "tcp",
            "timeout": timeout,
            "tcp": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": False},
        },
        "https": {
            "prober": "http",
            "timeout": timeout,
            "http": {
                "preferred_ip_protocol": "ip4",
                "ip_protocol_fallback": False,
                "fail_if_not_ssl": True,
                "tls_config": {"insecure_skip_verify": not verify},
            },
        },
    }
    return {CONFIG_FILE: dump({"modules": modules})}

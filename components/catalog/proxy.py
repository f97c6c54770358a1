"""Caddy: the TLS edge. Listens on 8080/8443 inside as uid 1000, published as 80/443.

Certificates come by ACME from Let's Encrypt (its production CA in prod, its staging CA in
the other stacks, or the stack's `tls.acme_ca`), or from Caddy's internal CA in `internal`
mode. Its own metrics are served on a plain-HTTP port that only the platform networks reach.
"""

from components.model.context import CatalogContext
from components.model.spec import (
    BackupPolicy,
    CapAdd,
    HealthCheck,
    MetricsEndpoint,
    Port,
    ServiceSpec,
    VolumeMount,
)

_EDGE = "the public edge: browsers and ACME reach 80/443 on every interface"

LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
ACME_CA_ROOT_FILE = "acme-ca-root.pem"
"""Generated beside the Caddyfile when the stack trusts a private ACME server's CA."""
METRICS_PORT = 2020
CADDYFILE = "/etc/caddy/Caddyfile"
RELOAD = ["caddy", "reload", "--config", CADDYFILE, "--adapter", "caddyfile"]
"""Loads a changed Caddyfile into the running Caddy: gracefully, and only if it is valid (a bad
one leaves the old configuration serving)."""

DIAL_TIMEOUT = "1s"
"""How long Caddy waits to connect to a replica: inside a host's bridge network a live one
answers in microseconds, so a removed container's stale address fails fast and the request is
retried on another replica instead of waiting out Go's default."""
STATELESS_TRY_S = 5
"""A stateless site's retry window: another replica of the live colour answers at once."""
HOLD_INTERVAL = "250ms"
"""How often a held request tries the restarting service again: it is answered within a quarter
second of the service coming back."""

HSTS = "max-age=31536000; includeSubDomains"
SECURITY_HEADERS = {
    "Strict-Transport-Security": HSTS,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "SAMEORIGIN",
}
"""Set on every response of every public site."""

SPEC = ServiceSpec(
    name="proxy",
    description="Caddy reverse proxy, automatic HTTPS (ACME) and admin API on localhost",
    image="docker.io/library/caddy",
    tag="2.10.2-alpine",
    user="1000:1000",
    command=["caddy", "run", "--config", CADDYFILE, "--adapter", "caddyfile"],
    ports=[
        Port(internal=8080, external=80, all_interfaces=_EDGE),
        Port(internal=8443, external=443, all_interfaces=_EDGE),
    ],
    volumes=[
        # The image creates both directories owned by root; the init container hands them over.
        VolumeMount(name="data", path="/data", backup=BackupPolicy(policy="daily"), chown=True),
        VolumeMount(
            name="config",
            path="/config",
            backup=BackupPolicy(
                policy="exclude", reason="Caddy's autosave of the config we generate"
            ),
            chown=True,
        ),
    ],
    tmpfs=["/tmp"],
    config_dir="/etc/caddy",
    networks=["edge", "app", "monitoring"],
    cap_add=[
        CapAdd(
            name="NET_BIND_SERVICE",
            reason=(
                "the image's caddy binary carries this file capability; exec fails without it "
                "in the bounding set"
            ),
        )
    ],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:2019/config/"]),
    memory="256m",
    cpus=1,
    metrics=MetricsEndpoint(port=METRICS_PORT),
    monitors=["proxy"],
    reload=RELOAD,
)


def _acme_directory(context: CatalogContext) -> str | None:
    """The ACME directory Caddy orders certificates from; None in `internal` mode."""
    if context.tls_mode == "internal":
        return None
    override = context.acme_ca
    if override:
        return override
    # Only prod may spend Let's Encrypt's production rate limits; staging and dev rehearse
    # against its staging CA, whose certificates browsers do not trust.
    return LETSENCRYPT_PRODUCTION if context.environment == "prod" else LETSENCRYPT_STAGING


def files(context: CatalogContext) -> dict[str, str]:
    """The Caddyfile (one site per public service, load-balanced over the replicas that serve:
    a stateless service's live colour alone, so two colours never share traffic; with the
    security headers; Caddy redirects HTTP to HTTPS for each) and, for a private ACME server,
    the CA that signs that server's TLS certificate. `napdms-ops` renders it too, for a switch of
    colours, so it depends on the context alone."""
    generated = {}
    directory = _acme_directory(context)
    if directory is None:
        # The internal CA never goes into a trust store: the proxy is not root and dev browsers
        # are told to accept it explicitly.
        tls = ["local_certs", "skip_install_trust"]
    else:
        tls = [f"email {context.acme_email}", f"acme_ca {directory}"]
        root = context.acme_ca_root
        if root:
            generated[ACME_CA_ROOT_FILE] = root
            tls.append(f"acme_ca_root {SPEC.config_dir}/{ACME_CA_ROOT_FILE}")
    sites = [
        (f"{spec.public.subdomain}.{context.domain}", name, spec.public.port)
        for name, spec in context.services.items()
        if spec.public is not None
    ]
    lines = [
        "{",
        "\tadmin localhost:2019",
        "\thttp_port 8080",
        "\thttps_port 8443",
        *[f"\t{t}" for t in tls],
        # Request metrics per server. Caddy 2.10 prefers a top-level `metrics` option (and logs
        # that this one is deprecated), which Caddy 2.6 does not know; both take this one.
        "\tservers {",
        "\t\tmetrics",
        "\t}",
        "}",
        "",
        "(security_headers) {",
        "\theader {",
        *[f'\t\t{name} "{value}"' for name, value in SECURITY_HEADERS.items()],
        "\t\t-Server",
        "\t}",
        "}",
        "",
        # Plain HTTP on the platform networks only: the port is not published.
        f"http://:{METRICS_PORT} {{",
        "\tmetrics",
        "}",
    ]
    for address, name, port in sites:
        upstreams = " ".join(f"{replica}:{port}" for replica in context.live_replica_names(name))
        lines += [
            "",
            f"{address} {{",
            "\timport security_headers",
            f"\treverse_proxy {upstreams} {{",
            "\t\tlb_policy round_robin",
            *_retries(context.services[name]),
            "\t\ttransport http {",
            f"\t\t\tdial_timeout {DIAL_TIMEOUT}",
            "\t\t}",
            "\t}",
            "}",
        ]
    generated["Caddyfile"] = "\n".join(lines) + "\n"
    return generated


def _retries(spec: ServiceSpec) -> list[str]:
    """How a site's requests are retried when no upstream answers. A stateless service: briefly,
    on another replica, with a failing one left out for a while. Another service has one instance
    per volume, which a deploy stops before its successor starts: the request is held and tried
    again until the successor answers, within `hold_s`; no replica is marked down (with the only
    one marked down, a held request would wait out the mark after the service is back)."""
    if spec.stateless:
        return [f"\t\tlb_try_duration {STATELESS_TRY_S}s", "\t\tfail_duration 10s"]
    return [f"\t\tlb_try_duration {spec.hold_s}s", f"\t\tlb_try_interval {HOLD_INTERVAL}"]

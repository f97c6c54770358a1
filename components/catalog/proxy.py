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
    command=["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"],
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
    """The Caddyfile (one site per public service, load-balanced over its replicas, with the
    security headers; Caddy redirects HTTP to HTTPS for each) and, for a private ACME server,
    the CA that signs that server's TLS certificate."""
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
        upstreams = " ".join(f"{replica}:{port}" for replica in context.replica_names(name))
        lines += [
            "",
            f"{address} {{",
            "\timport security_headers",
            f"\treverse_proxy {upstreams} {{",
            "\t\tlb_policy round_robin",
            "\t\tlb_try_duration 5s",
            "\t\tfail_duration 10s",
            "\t}",
            "}",
        ]
    generated["Caddyfile"] = "\n".join(lines) + "\n"
    return generated

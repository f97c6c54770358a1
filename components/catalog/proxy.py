"""Caddy: the TLS edge. Listens on 8080/8443 inside as uid 1000, published as 80/443."""

from components.catalog.context import CatalogContext
from components.model.spec import BackupPolicy, CapAdd, HealthCheck, Port, ServiceSpec, VolumeMount

_EDGE = "the public edge: browsers and ACME reach 80/443 on every interface"

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
)


def files(context: CatalogContext) -> dict[str, str]:
    """The Caddyfile: one site per public service, load-balanced over its replicas."""
    # The internal CA never goes into a trust store: the proxy is not root and dev browsers
    # are told to accept it explicitly.
    tls = (
        ["local_certs", "skip_install_trust"]
        if context.tls_mode == "internal"
        else [f"email {context.acme_email}"]
    )
    lines = [
        "{",
        "\tadmin localhost:2019",
        "\thttp_port 8080",
        "\thttps_port 8443",
        *[f"\t{t}" for t in tls],
        "}",
    ]
    for name, spec in context.services.items():
        if spec.public is None:
            continue
        upstreams = " ".join(
            f"{replica}:{spec.public.port}" for replica in context.replica_names(name)
        )
        lines += [
            "",
            f"{spec.public.subdomain}.{context.domain} {{",
            f"\treverse_proxy {upstreams} {{",
            "\t\tlb_policy round_robin",
            "\t\tlb_try_duration 5s",
            "\t\tfail_duration 10s",
            "\t}",
            "}",
        ]
    return {"Caddyfile": "\n".join(lines) + "\n"}

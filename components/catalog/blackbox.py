"""Blackbox exporter: probes each service's health endpoint or port, and each public site
through the proxy, as a user would."""

from components.model.context import CatalogContext
from components.model.spec import HealthCheck, MetricsEndpoint, ServiceSpec
from components.monitoring import blackbox_config

SPEC = ServiceSpec(
    name="blackbox",
    description="Prometheus blackbox exporter (HTTP/TCP probes)",
    image="docker.io/prom/blackbox-exporter",
    tag="v0.27.0",
    user="65534:65534",
    command=[f"--config.file={blackbox_config.CONFIG_DIR}/{blackbox_config.CONFIG_FILE}"],
    config_dir=blackbox_config.CONFIG_DIR,
    # data: the databases are probed on their ports where they listen.
    networks=["monitoring", "app", "data"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:9115/-/healthy"]),
    memory="128m",
    cpus=0.25,
    stateless=True,
    metrics=MetricsEndpoint(port=9115),
)


def files(context: CatalogContext) -> dict[str, str]:
    """The probe modules."""
    return blackbox_config.files(context)

"""Blackbox exporter: probes the public endpoints from inside, as a user would."""

from components.model.spec import HealthCheck, ServiceSpec

SPEC = ServiceSpec(
    name="blackbox",
    description="Prometheus blackbox exporter (HTTP/TCP probes)",
    image="docker.io/prom/blackbox-exporter",
    tag="v0.27.0",
    user="65534:65534",
    networks=["monitoring", "app"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:9115/-/healthy"]),
    memory="128m",
    cpus=0.25,
    stateless=True,
)

"""node-exporter: host CPU, memory and disk metrics, on every NAS."""

from components.model.spec import Exemption, HealthCheck, HostMount, Port, ServiceSpec

SPEC = ServiceSpec(
    name="node-exporter",
    description="Prometheus node exporter",
    image="docker.io/prom/node-exporter",
    tag="v1.9.1",
    user="65534:65534",
    command=["--path.rootfs=/host"],
    # Published on the LAN address so the QNAP's Prometheus scrapes the ASUSTOR too.
    ports=[Port(internal=9100, external=9100)],
    host_mounts=[
        HostMount(
            source="/", target="/host", reason="host filesystem and /proc statistics, read-only"
        )
    ],
    networks=["monitoring", "edge"],
    exemptions=[
        Exemption(rule="host-mount", reason="host root read-only, the exporter's only input")
    ],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:9100/metrics"]),
    memory="128m",
    cpus=0.25,
    placement="every-host",
)

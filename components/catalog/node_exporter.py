"""node-exporter: host CPU, memory and disk metrics, on every NAS."""

from components.model.spec import (
    BackupPolicy,
    Exemption,
    HealthCheck,
    HostMount,
    MetricsEndpoint,
    Port,
    ServiceSpec,
    VolumeMount,
)

TEXTFILE_DIR = "/var/lib/node-exporter/textfile"
"""Where the textfile collector reads `*.prom` files: the metrics `napdms-ops drift` writes."""

SPEC = ServiceSpec(
    name="node-exporter",
    description="Prometheus node exporter",
    image="docker.io/prom/node-exporter",
    tag="v1.9.1",
    user="65534:65534",
    # /proc and /sys, not the host's /: a container with the host's root can read every
    # secret on it. Filesystem figures are those of the container's own / (the disk Docker
    # keeps its data on, the one that fills up).
    command=[
        "--path.procfs=/host/proc",
        "--path.sysfs=/host/sys",
        f"--collector.textfile.directory={TEXTFILE_DIR}",
    ],
    # Published on the LAN address so the QNAP's Prometheus scrapes the ASUSTOR too.
    ports=[Port(internal=9100, external=9100)],
    host_mounts=[
        HostMount(source="/proc", target="/host/proc", reason="host CPU, memory and network"),
        HostMount(source="/sys", target="/host/sys", reason="host hardware and disk statistics"),
    ],
    # The ops CLI copies its metric files in through the Docker API (the root filesystem is
    # read-only); the exporter only reads them, so the root-owned volume suits it.
    volumes=[
        VolumeMount(
            name="textfile",
            path=TEXTFILE_DIR,
            backup=BackupPolicy(
                policy="exclude", reason="metric files the ops CLI rewrites at each drift check"
            ),
        )
    ],
    networks=["monitoring", "edge"],
    exemptions=[
        Exemption(rule="host-mount", reason="the host's /proc and /sys read-only, its only input")
    ],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:9100/metrics"]),
    memory="128m",
    cpus=0.25,
    placement="every-host",
    metrics=MetricsEndpoint(port=9100),
    monitors=["host"],
)

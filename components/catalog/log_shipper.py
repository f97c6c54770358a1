"""Grafana Alloy: ships every container's log stream to Loki (promtail reached end of life)."""

from components.model.spec import (
    BackupPolicy,
    Exemption,
    HealthCheck,
    HostMount,
    ServiceSpec,
    VolumeMount,
)

_CONFIG = """discovery.docker "containers" {
  host = "unix:///var/run/docker.sock"
}

discovery.relabel "containers" {
  targets = []
  rule {
    source_labels = ["__meta_docker_container_name"]
    regex         = "/(.*)"
    target_label  = "container"
  }
  rule {
    source_labels = ["__meta_docker_container_label_napdms_service"]
    target_label  = "service"
  }
}

loki.source.docker "containers" {
  host             = "unix:///var/run/docker.sock"
  targets          = discovery.docker.containers.targets
  relabel_rules    = discovery.relabel.containers.rules
  forward_to       = [loki.write.loki.receiver]
}

loki.write "loki" {
  endpoint {
    url = "http://loki:3100/loki/api/v1/push"
  }
}
"""

SPEC = ServiceSpec(
    name="log-shipper",
    description="Grafana Alloy reading container logs through the Docker API",
    image="docker.io/grafana/alloy",
    tag="v1.10.2",
    user="0:0",
    command=[
        "run",
        "--server.http.listen-addr=127.0.0.1:12345",
        "--storage.path=/var/lib/alloy/data",
        "/etc/alloy/config.alloy",
    ],
    volumes=[
        VolumeMount(
            name="data",
            path="/var/lib/alloy/data",
            backup=BackupPolicy(
                policy="exclude", reason="read positions only; a loss re-sends recent lines"
            ),
        )
    ],
    host_mounts=[
        # The socket hands the container the host: only a developer's machine allows it, and
        # staging and prod disable the shipper until logs arrive without it (a log driver).
        HostMount(
            source="/var/run/docker.sock",
            target="/var/run/docker.sock",
            reason="log streams via the API",
            environments=["dev"],
        )
    ],
    tmpfs=["/tmp"],
    config_dir="/etc/alloy",
    networks=["monitoring"],
    exemptions=[
        Exemption(
            rule="run-as-root", reason="the Docker socket is root:docker 0660; no capability added"
        ),
        Exemption(
            rule="docker-socket",
            reason="log collection through the Docker API",
            environments=["dev"],
        ),
    ],
    # The Ubuntu-based image has bash but neither curl nor wget.
    health=HealthCheck(
        test=[
            "CMD",
            "bash",
            "-c",
            (
                "exec 3<>/dev/tcp/127.0.0.1/12345"
                " && printf 'GET /-/ready HTTP/1.0\\r\\n\\r\\n' >&3"
                " && grep -q ' 200 ' <&3"
            ),
        ]
    ),
    memory="256m",
    cpus=0.5,
)


def files(context) -> dict[str, str]:
    """Alloy's pipeline: Docker discovery -> relabel -> Loki."""
    return {"config.alloy": _CONFIG}

"""Grafana Alloy: ships every container's log to Loki (promtail reached end of life).

No Docker socket: every container the program declares logs through the json-file driver with
its `napdms.service`, `napdms.stack` and `napdms.host` labels and its name copied into each line
(`hardened_service.LOG_OPTS`), so Alloy tails those files, read-only, from the host's Docker data
root and takes its Loki labels from the lines themselves.
"""

from __future__ import annotations

from components.model.spec import (
    BackupPolicy,
    Exemption,
    HealthCheck,
    HostMount,
    MetricsEndpoint,
    Probe,
    ServiceSpec,
    VolumeMount,
)

DEFAULT_DOCKER_ROOT = "/var/lib/docker"
LOGS_DIR = f"{DEFAULT_DOCKER_ROOT}/containers"
"""Where the shipper sees the host's `<docker root>/containers`, whatever the host's root is."""
HTTP_PORT = 12345

_CONFIG = f"""// Tails the json-file logs Docker writes; the socket is never needed.
local.file_match "containers" {{
  path_targets = [{{"__path__" = "{LOGS_DIR}/*/*-json.log"}}]
  sync_period  = "10s"
}}

loki.source.file "containers" {{
  targets    = local.file_match.containers.targets
  forward_to = [loki.process.containers.receiver]
}}

loki.process "containers" {{
  // One json-file line: {{"log": ..., "stream": ..., "attrs": {{"napdms.service": ...,
  // "napdms.stack": ..., "napdms.host": ..., "tag": <container name>}}, "time": ...}}
  stage.json {{
    expressions = {{
      output    = "log",
      stream    = "stream",
      timestamp = "time",
      service   = "attrs.\\"napdms.service\\"",
      stack     = "attrs.\\"napdms.stack\\"",
      host      = "attrs.\\"napdms.host\\"",
      container = "attrs.tag",
    }}
  }}

  stage.labels {{
    values = {{
      service   = "",
      stack     = "",
      host      = "",
      container = "",
      stream    = "",
    }}
  }}

  stage.timestamp {{
    source = "timestamp"
    format = "RFC3339Nano"
  }}

  stage.output {{
    source = "output"
  }}

  // The file path names the container id: a new stream per replacement, nothing to query by.
  stage.label_drop {{
    values = ["filename"]
  }}

  forward_to = [loki.write.loki.receiver]
}}

loki.write "loki" {{
  endpoint {{
    url = "http://loki:3100/loki/api/v1/push"
  }}
}}
"""

SPEC = ServiceSpec(
    name="log-shipper",
    description="Grafana Alloy tailing the containers' json-file logs (no Docker socket)",
    image="docker.io/grafana/alloy",
    tag="v1.10.2",
    user="0:0",
    command=[
        "run",
        # Every interface of its own namespace: Prometheus scrapes it over the internal
        # monitoring network; no port is published.
        f"--server.http.listen-addr=0.0.0.0:{HTTP_PORT}",
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
        # The host's own data root replaces this source (`for_host`).
        HostMount(
            source=LOGS_DIR,
            target=LOGS_DIR,
            reason="the containers' json-file logs, read-only",
        )
    ],
    tmpfs=["/tmp"],
    config_dir="/etc/alloy",
    networks=["monitoring"],
    exemptions=[
        Exemption(
            rule="run-as-root",
            reason=(
                "the json-file logs are root:root 0640 in 0710 folders; no capability added, "
                "so uid 0 reads them as their owner, nothing more"
            ),
        ),
        # Every container's logs and settings, read-only: the policy's one grantable reading of
        # Docker's data root (`container-logs-mount`); written to, it would be runtime state.
        Exemption(
            rule="container-logs-mount",
            reason="reads the json-file logs under <docker root>/containers, read-only",
        ),
    ],
    # The Ubuntu-based image has bash but neither curl nor wget.
    health=HealthCheck(
        test=[
            "CMD",
            "bash",
            "-c",
            (
                f"exec 3<>/dev/tcp/127.0.0.1/{HTTP_PORT}"
                " && printf 'GET /-/ready HTTP/1.0\\r\\n\\r\\n' >&3"
                " && grep -q ' 200 ' <&3"
            ),
        ]
    ),
    memory="256m",
    cpus=0.5,
    metrics=MetricsEndpoint(port=HTTP_PORT),
    probe=Probe(kind="http", port=HTTP_PORT, path="/-/ready"),
)


def for_host(spec: ServiceSpec, docker_root: str) -> ServiceSpec:
    """The shipper on a host whose Docker data root is `docker_root`: it mounts that root's
    `containers` folder where its config looks."""
    return spec.model_copy(
        update={
            "host_mounts": [
                m.model_copy(update={"source": f"{docker_root}/containers"})
                if m.target == LOGS_DIR
                else m
                for m in spec.host_mounts
            ]
        }
    )


def files(context) -> dict[str, str]:
    """Alloy's pipeline: json-file logs -> labels from their attrs -> Loki."""
    return {"config.alloy": _CONFIG}

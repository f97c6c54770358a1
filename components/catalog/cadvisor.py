"""cAdvisor: per-container resource metrics, read from the host's cgroups (and, in dev only,
the Docker socket for container names)."""

from components.model.spec import (
    CapAdd,
    Exemption,
    HealthCheck,
    HostMount,
    MetricsEndpoint,
    Probe,
    ServiceSpec,
)

SPEC = ServiceSpec(
    name="cadvisor",
    description="cAdvisor container metrics (v0.55.1+ speaks the API of current Docker engines)",
    image="gcr.io/cadvisor/cadvisor",
    tag="v0.55.1",
    user="0:0",
    # Not docker_only: without the Docker socket (every environment but dev) the containers'
    # cgroups are all it sees, reported by cgroup path instead of by name.
    command=["--docker_only=false", "--housekeeping_interval=30s"],
    host_mounts=[
        HostMount(source="/sys", target="/sys", reason="cgroup statistics of every container"),
        HostMount(
            source="/var/run/docker.sock",
            target="/var/run/docker.sock",
            reason="container names and labels",
            environments=["dev"],
        ),
    ],
    tmpfs=["/tmp"],
    networks=["monitoring"],
    cap_add=[CapAdd(name="DAC_READ_SEARCH", reason="read root-only cgroup files")],
    exemptions=[
        Exemption(
            rule="run-as-root",
            reason="reads root-owned cgroup files; all capabilities but one dropped",
        ),
        Exemption(rule="host-mount", reason="the host's /sys read-only: cgroup statistics"),
        # The socket hands the container the host, so only a developer's own machine allows it.
        Exemption(
            rule="docker-socket",
            reason="read-only mount to name containers in metrics",
            environments=["dev"],
        ),
        Exemption(
            rule="dangerous-capability",
            reason="DAC_READ_SEARCH to read root-only cgroup files; internal network only",
        ),
    ],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:8080/healthz"]),
    memory="256m",
    cpus=0.5,
    metrics=MetricsEndpoint(port=8080),
    probe=Probe(kind="http", port=8080, path="/healthz"),
    monitors=["containers"],
)

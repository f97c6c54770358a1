"""cAdvisor: per-container resource metrics, read from the host's cgroups and Docker state."""

from components.model.spec import CapAdd, Exemption, HealthCheck, HostMount, ServiceSpec

SPEC = ServiceSpec(
    name="cadvisor",
    description="cAdvisor container metrics (v0.55.1+ speaks the API of current Docker engines)",
    image="gcr.io/cadvisor/cadvisor",
    tag="v0.55.1",
    user="0:0",
    command=["--docker_only=true", "--housekeeping_interval=30s"],
    host_mounts=[
        HostMount(source="/", target="/rootfs", reason="filesystem usage of the host, read-only"),
        HostMount(source="/sys", target="/sys", reason="cgroup statistics of every container"),
        HostMount(
            source="/var/lib/docker", target="/var/lib/docker", reason="container layer sizes"
        ),
        HostMount(
            source="/var/run/docker.sock",
            target="/var/run/docker.sock",
            reason="container names and labels",
        ),
    ],
    tmpfs=["/tmp"],
    networks=["monitoring"],
    cap_add=[CapAdd(name="DAC_READ_SEARCH", reason="read root-only cgroup and Docker state files")],
    exemptions=[
        Exemption(
            rule="run-as-root",
            reason="reads root-owned host state; all capabilities but one dropped",
        ),
        Exemption(rule="host-mount", reason="host /, /sys and /var/lib/docker, all read-only"),
        Exemption(rule="docker-socket", reason="read-only mount to name containers in metrics"),
        Exemption(
            rule="dangerous-capability",
            reason="DAC_READ_SEARCH to read root-only cgroup files; internal network only",
        ),
    ],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:8080/healthz"]),
    memory="256m",
    cpus=0.5,
)

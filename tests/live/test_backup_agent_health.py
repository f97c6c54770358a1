"""The agent container's health during a scheduled run, hardened as the program declares it (root
with only DAC_READ_SEARCH, read-only root filesystem, no-new-privileges): Docker's health status
stays healthy while a long run moves, and turns unhealthy once the run hangs (a Redis that
accepts the connection and then says nothing), within the plan's `health.stall_s`."""

from __future__ import annotations

import datetime as dt
import io
import os
import tarfile
import time

import pytest

from components.model.plan import (
    AgentHealth,
    BackupPlan,
    FilesSource,
    RedisSource,
    Repository,
    Schedule,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the live engine needs root")

PLAN = "/etc/napdms-backup/plan.json"
STALL_S = 6
DATA_MB = 1024
SILENT = (
    "import socket,time\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 6379)); s.listen(4); held=[]\n"
    "while True: held.append(s.accept())\n"
)
"""A Redis that accepts connections and never answers: `redis-cli --rdb` waits forever."""


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o444
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _next_minute() -> str:
    """A schedule time (UTC) the loop reaches soon, but not before the container is up."""
    now = dt.datetime.now(dt.UTC)
    return f"{now + dt.timedelta(minutes=1 if now.second < 40 else 2):%H:%M}"


def _health(container) -> tuple[str, str]:
    container.reload()
    state = container.attrs["State"]
    health = state.get("Health") or {}
    log = health.get("Log") or [{}]
    assert state["Running"], f"the agent stopped: {container.logs().decode()[-2000:]}"
    return health.get("Status", ""), log[-1].get("Output", "")


def _processes(container) -> str:
    return " ".join(" ".join(row) for row in container.top(ps_args="-eo pid,args")["Processes"])


def test_health_stays_good_while_a_run_moves_and_fails_once_it_hangs(
    docker_client, agent_image, agent_network
):
    tag = f"{os.getpid()}"
    silent_name = f"napdms-live-silent-redis-{tag}"
    plan = BackupPlan(
        stack="dev",
        host_tag="napdms-dev",
        repository=Repository(url="/repository", password_file="/etc/napdms-backup/password"),
        sources=[
            FilesSource(service="documents", paths=["/source/documents/data"]),
            RedisSource(service="redis", host=silent_name),
        ],
        schedule=Schedule(time_of_day=_next_minute(), timezone="UTC", retries=0, retry_delay_s=0),
        health=AgentHealth(beat_s=1, stall_s=STALL_S, max_run_s=3600),
        state_dir="/state",
        cache_dir="/cache",
    )
    volumes = {
        name: docker_client.volumes.create(f"napdms-live-health-{name}-{tag}")
        for name in ("config", "data", "state", "cache", "repository")
    }
    made = []
    try:
        docker_client.containers.run(
            agent_image,
            ["-c", f"head -c {DATA_MB}M /dev/urandom > /seed/data/big"],
            entrypoint=["sh"],
            volumes={volumes["data"].name: {"bind": "/seed/data", "mode": "rw"}},
            remove=True,
        )
        seeder = docker_client.containers.create(
            agent_image, ["true"], volumes=[f"{volumes['config'].name}:/seed"]
        )
        made.append(seeder)
        seeder.put_archive(
            "/seed",
            _archive(
                {"plan.json": plan.model_dump_json().encode(), "password": b"live health pw\n"}
            ),
        )
        silent = docker_client.containers.run(
            agent_image,
            ["-c", SILENT],
            entrypoint=["python3"],
            name=silent_name,
            network=agent_network,
            detach=True,
        )
        made.append(silent)
        second = 10**9
        agent = docker_client.containers.run(
            agent_image,
            ["agent", "--plan", PLAN],
            name=f"napdms-live-health-agent-{tag}",
            user="0",
            cap_drop=["ALL"],
            cap_add=["DAC_READ_SEARCH"],
            security_opt=["no-new-privileges:true"],
            read_only=True,
            tmpfs={"/tmp": "rw,size=64m"},
            network=agent_network,
            nano_cpus=second // 2,  # half a core: the backup takes a while, and moves all along
            healthcheck={
                "test": ["CMD", "python3", "-m", "napdms_ops.backup", "health", "--plan", PLAN],
                "interval": second,
                "timeout": 10 * second,
                "retries": 1,
                "start_period": 0,
            },
            volumes=[
                f"{volumes['config'].name}:/etc/napdms-backup:ro",
                f"{volumes['data'].name}:/source/documents/data:ro",
                f"{volumes['state'].name}:/state",
                f"{volumes['cache'].name}:/cache",
                f"{volumes['repository'].name}:/repository",
            ],
            detach=True,
        )
        made.append(agent)

        deadline = time.monotonic() + 180
        while "restic" not in _processes(agent):  # the scheduled run begins
            assert time.monotonic() < deadline, "the scheduled run did not start"
            status, output = _health(agent)
            assert status in ("starting", "healthy"), f"idle agent is {status}: {output}"
            time.sleep(0.5)

        began = time.monotonic()
        seen = []
        while "redis-cli" not in _processes(agent):  # the files part: long, and moving
            assert time.monotonic() - began < 300, "the files backup did not finish"
            status, output = _health(agent)
            seen.append(status)
            assert status == "healthy", f"{status} during a moving run: {output}"
            time.sleep(0.5)
        moving_s = time.monotonic() - began
        assert moving_s > STALL_S + 2, (
            f"the files backup took only {moving_s:.1f} s; make DATA_MB larger to outlast the "
            f"stall bound ({STALL_S} s)"
        )

        hung = time.monotonic()
        while (status := _health(agent))[0] != "unhealthy":
            assert time.monotonic() - hung < STALL_S + 15, f"a hung run stays {status}"
            time.sleep(0.5)
        assert time.monotonic() - hung > STALL_S - 2, "unhealthy before the stall bound"
        assert "no progress" in status[1], status
    finally:
        for container in made:
            container.remove(force=True)
        for volume in volumes.values():
            volume.remove(force=True)

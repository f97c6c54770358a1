"""How long `napdms-ops audit` takes over a daemon running 100 containers (goal: under 2 s),
next to two baselines that apply the same rules to the same daemon:

- naive: what a shell script would do, the `docker` CLI (`docker ps -aq`, then one `docker
  inspect` process per container, then one `docker volume inspect` and `docker network inspect`);
- sequential SDK: the same Engine API calls as the audit, one inspect after the other (the audit
  runs them on a small thread pool; this isolates what the concurrency buys).

The containers (busybox stand-in running `sleep`, half hardened and half flawed) carry a
`napdms.bench=<run id>` label, and exactly those are removed at the end, also on error or Ctrl-C.

Run: python tests/bench/audit_containers.py [--containers N] [--runs N]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from docker.types import LogConfig  # noqa: E402

from napdms_ops.audit import DEFAULT_STACK, audit, connect  # noqa: E402
from policies.rules import StackFacts, from_docker, judge, levels  # noqa: E402
from tests.bench.copies import remove_labelled  # noqa: E402
from tests.bench.timing import median_seconds  # noqa: E402
from tests.live.engine import DEFAULT_HOST, ensure_engine  # noqa: E402
from tests.live.standins import standin_image  # noqa: E402

NS = 1_000_000_000
RUN = uuid.uuid4().hex[:8]
LABEL = "napdms.bench"


def _options(index: int, image_id: str, socket: str) -> dict:
    labels = {
        LABEL: RUN,
        "napdms.managed-by": "pulumi",
        "napdms.stack": "prod",
        "napdms.service": f"bench-{index}",
    }
    if index % 2 == 0:
        return dict(
            image=image_id,
            user="1000:1000",
            cap_drop=["ALL"],
            read_only=True,
            security_opt=["no-new-privileges:true"],
            mem_limit="16m",
            nano_cpus=NS // 10,
            pids_limit=16,
            healthcheck={
                "test": ["CMD", "true"],
                "interval": 30 * NS,
                "timeout": 5 * NS,
                "retries": 3,
            },
            restart_policy={"Name": "unless-stopped"},
            log_config=LogConfig(type="json-file", config={"max-size": "1m"}),
            labels=labels,
        )
    flawed = dict(
        image=image_id, labels=labels if index % 4 == 1 else {LABEL: RUN}
    )  # every other flawed one unmanaged
    if index % 3 == 0:
        flawed["volumes"] = {socket: {"bind": "/var/run/docker.sock", "mode": "rw"}}
    return flawed


def _create(client, count: int, image_id: str, socket: str) -> None:
    def one(index: int) -> None:
        options = _options(index, image_id, socket)
        container = client.containers.create(
            options.pop("image"),
            ["sleep", "3600"],
            name=f"napdms-bench-{RUN}-{index:03d}",
            **options,
        )
        container.start()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(count)))


def _stack_levels():
    known = {p.stem for p in levels.CONFIG_DIR.glob("*.json")}
    cache = {name: levels.load(name) for name in known}
    return cache.get


def _naive_cli(host: str, docker_cli: str) -> int:
    """`docker inspect` per container, then the same facts and rules."""

    def cli(*args: str) -> str:
        return subprocess.run(
            [docker_cli, "-H", host, *args], check=True, capture_output=True, text=True
        ).stdout

    ids = cli("ps", "-aq", "--no-trunc").split()
    containers = [from_docker.container(json.loads(cli("inspect", cid))[0], host) for cid in ids]
    volume_names = cli("volume", "ls", "-q").split()
    volumes = (
        [from_docker.volume(v, host) for v in json.loads(cli("volume", "inspect", *volume_names))]
        if volume_names
        else []
    )
    networks = [
        from_docker.network(n, host)
        for n in json.loads(cli("network", "inspect", *cli("network", "ls", "-q").split()))
    ]
    judge(
        StackFacts(tuple(containers), tuple(volumes), tuple(networks)),
        DEFAULT_STACK,
        _stack_levels(),
    )
    return len(containers)


def _sequential_sdk(host: str) -> int:
    """The audit's API calls, one inspect at a time."""
    client = connect(host)
    try:
        api = client.api
        containers = [
            from_docker.container(api.inspect_container(c["Id"]), host)
            for c in api.containers(all=True)
        ]
        volumes = [from_docker.volume(v, host) for v in (api.volumes() or {}).get("Volumes") or []]
        networks = [from_docker.network(n, host) for n in api.networks()]
    finally:
        client.close()
    judge(
        StackFacts(tuple(containers), tuple(volumes), tuple(networks)),
        DEFAULT_STACK,
        _stack_levels(),
    )
    return len(containers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    client = ensure_engine()
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    socket = host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"
    image_id = client.images.get(standin_image("busybox", client)).id
    docker_cli = shutil.which("docker")
    figures: dict = {"host": host, "runs": args.runs}
    try:
        start = time.perf_counter()
        _create(client, args.containers, image_id, socket)
        setup_s = time.perf_counter() - start
        audit(host)  # imports and connection set-up out of the measurement
        ours, report = median_seconds(args.runs, lambda: audit(host))
        sequential, _ = median_seconds(args.runs, lambda: _sequential_sdk(host))
        print(
            f"created and started {args.containers} busybox containers in {setup_s:.1f} s on {host}"
        )
        print(
            f"audit (thread pool of inspects + shared rules): {ours:.3f} s "
            f"for {report.containers} containers ({report.containers / ours:.0f}/s), "
            f"{len(report.mandatory)} mandatory, {len(report.advisory)} advisory"
        )
        print(
            f"baseline, sequential SDK inspects + same rules: {sequential:.3f} s "
            f"({report.containers / sequential:.0f}/s)"
        )
        figures.update(
            containers=report.containers,
            created=args.containers,
            audit_s=round(ours, 4),
            containers_per_s=round(report.containers / ours, 1),
            findings_mandatory=len(report.mandatory),
            findings_advisory=len(report.advisory),
            baseline_sdk_sequential_s=round(sequential, 4),
            baseline_sdk_sequential_per_s=round(report.containers / sequential, 1),
            under_2s=ours < 2,
        )
        if docker_cli:
            naive, _ = median_seconds(args.runs, lambda: _naive_cli(host, docker_cli))
            print(
                f"baseline, naive `docker inspect` CLI per container + same rules: {naive:.3f} s "
                f"({report.containers / naive:.0f}/s)"
            )
            print(
                f"audit is {naive / ours:.1f}x the naive CLI "
                f"and {sequential / ours:.1f}x sequential SDK"
            )
            figures.update(
                baseline_cli_s=round(naive, 4),
                baseline_cli_per_s=round(report.containers / naive, 1),
                speedup_vs_cli=round(naive / ours, 2),
            )
        else:
            print("baseline, naive docker CLI: skipped (no `docker` command on PATH)")
        figures["speedup_vs_sdk_sequential"] = round(sequential / ours, 2)
    finally:
        removed = remove_labelled(client, LABEL, RUN)
        print(f"removed the {removed} containers labelled {LABEL}={RUN}")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

"""How long the live view of drift takes (`napdms_ops.drift.live.live_view`: run the program
under mocks, inspect every container, volume and network of the daemon, compare) with at least
100 containers on the local daemon (goal: `drift_s` under 3 s), next to a baseline that compares
the same way but reads the daemon as a shell script would: `docker ps -aq`, then one
`docker inspect` process per container and per image, `docker volume inspect`, `docker network
inspect`, one after the other.

On the daemon, for stack `driftbench` (the dev stack file's config under another name):

- each declared container that can run here, as declared (user, capabilities, read-only root,
  limits, mounts, networks with aliases, labels, environment, health check) but running the
  busybox stand-in (`sleep`; init containers run `true` and exit 0), then its declared
  `docker update --pids-limit` command; the images are compared through `image_of` (every
  declared reference -> the busybox stand-in). Left out, and so reported missing: containers
  that publish host ports (other live tests on this daemon may hold them) and those whose bind
  source does not exist on this host.
- busybox copies with the stack's label up to `--containers` on the daemon in all: unmanaged.

Everything made carries `napdms.bench=<run id>` or the stack's names and is removed at the end,
also on error or Ctrl-C.

Run: python tests/bench/drift_live.py [--containers N] [--runs N]
"""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from docker.errors import APIError  # noqa: E402

from napdms_ops.declared import declare  # noqa: E402
from napdms_ops.drift.expected import expected  # noqa: E402
from napdms_ops.drift.live import host_findings, live_view  # noqa: E402
from napdms_ops.drift.observed import Observed  # noqa: E402
from policies.rules.from_pulumi import COMMAND  # noqa: E402
from tests.bench.copies import remove_labelled  # noqa: E402
from tests.bench.timing import median_seconds  # noqa: E402
from tests.live.engine import DEFAULT_HOST, ensure_engine  # noqa: E402
from tests.live.replay import prepare, run_command, run_container  # noqa: E402
from tests.live.standins import standin_image  # noqa: E402
from tests.program import OPERATOR_CONFIG, labels_of, stack_config  # noqa: E402

STACK = "driftbench"
RUN = uuid.uuid4().hex[:8]
LABEL = "napdms.bench"
VALUES = {**stack_config("dev"), **OPERATOR_CONFIG}
SECRET_KEYS = tuple(OPERATOR_CONFIG)


def _declared():
    return declare(STACK, VALUES, SECRET_KEYS)


def _as_busybox(declared):
    """The declared container running busybox: only the command differs, which is not compared."""
    init = labels_of(declared).get("napdms.role") == "init"
    inputs = {
        **declared.inputs,
        "command": ["true"] if init else ["sleep", "3600"],
        "entrypoints": None,
        "uploads": None,
        "start": True,
        "attach": init,
        "wait": False,
    }
    return dataclasses.replace(declared, inputs=inputs)


def _replay(program, client, busybox: str):
    """Create the declared containers that can run here; (the replay, names left out)."""
    chosen, left_out = [], []
    for declared in program.containers():
        binds = [v["hostPath"] for v in declared.plain("volumes") or () if v.get("hostPath")]
        if declared.plain("ports") or not all(os.path.exists(b) for b in binds):
            left_out.append(declared.plain("name"))
        else:
            chosen.append(declared)
    done = prepare(program, chosen, client)
    # Init containers first: a service's volumes are theirs to prepare.
    for declared in sorted(chosen, key=lambda c: labels_of(c).get("napdms.role") != "init"):
        try:
            done.containers[declared.name] = run_container(
                client, _as_busybox(declared), image=busybox
            )
        except (APIError, RuntimeError) as error:
            left_out.append(f"{declared.plain('name')} ({' '.join(str(error).split())[:80]})")
    for command in program.of_type(COMMAND):
        if command.name.endswith("-pids") and command.name[: -len("-pids")] in done.containers:
            run_command(command)
    return done, left_out


def _copies(client, busybox: str, count: int) -> None:
    def one(index: int) -> None:
        client.containers.run(
            busybox,
            ["sleep", "3600"],
            name=f"drift-bench-{RUN}-{index:03d}",
            labels={LABEL: RUN, "napdms.stack": STACK},
            detach=True,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(count)))


def _naive_cli(host: str, docker_cli: str, busybox: str) -> int:
    """The same comparison over what one `docker` process per object reads, one at a time."""

    def cli(*args: str) -> str:
        return subprocess.run(
            [docker_cli, "-H", host, *args], check=True, capture_output=True, text=True
        ).stdout

    def docs(command: tuple[str, ...], *names: str) -> list:
        """`docker <command> <names>`: one document per object it still finds (other tests on
        this daemon may remove theirs between the listing and the inspect)."""
        try:
            return json.loads(cli(*command, *names))
        except subprocess.CalledProcessError:
            if len(names) == 1:
                return []
            return [doc for name in names for doc in docs(command, name)]

    program = _declared()
    hosts = expected(program)
    seen = Observed()
    for cid in cli("ps", "-aq", "--no-trunc").split():
        for doc in docs(("inspect",), cid):
            seen.containers[doc["Name"].lstrip("/")] = doc
    seen.image_ids = {busybox: docs(("image", "inspect"), busybox)[0]["Id"]}
    for image_id in {doc["Image"] for doc in seen.containers.values()}:
        for doc in docs(("image", "inspect"), image_id):
            seen.images[image_id] = doc.get("Config") or {}
    volumes = cli("volume", "ls", "-q").split()
    seen.volumes = {v["Name"]: v for v in docs(("volume", "inspect"), *volumes)} if volumes else {}
    networks = cli("network", "ls", "-q").split()
    seen.networks = {n["Name"]: n for n in docs(("network", "inspect"), *networks)}
    return len(host_findings(STACK, sorted(hosts), hosts, seen, lambda _ref: busybox))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    client = ensure_engine()
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    busybox = standin_image("busybox", client)
    docker_cli = shutil.which("docker")
    figures: dict = {"host": host, "runs": args.runs, "stack": STACK}
    done = None
    try:
        start = time.perf_counter()
        program = _declared()
        done, left_out = _replay(program, client, busybox)
        present = len(client.containers.list(all=True))
        _copies(client, busybox, max(0, args.containers - present))
        setup_s = time.perf_counter() - start

        def view():
            return live_view(STACK, {"local": client}, lambda _ref: busybox, program=_declared())

        view()  # imports and connection set-up out of the measurement
        ours, result = median_seconds(args.runs, view)
        declare_s, _ = median_seconds(args.runs, _declared)
        held = _declared()
        compare_s, _ = median_seconds(
            args.runs,
            lambda: live_view(STACK, {"local": client}, lambda _ref: busybox, program=held),
        )
        classes = Counter((f.field, f.severity) for f in result.findings)
        print(
            f"set up in {setup_s:.1f} s on {host}: {len(done.containers)} of "
            f"{len(program.containers())} declared containers of stack {STACK} replayed on "
            f"busybox, {len(left_out)} left out (reported missing): {', '.join(left_out)}"
        )
        print(
            f"live view: {result.containers} containers, {result.volumes} volumes, "
            f"{result.networks} networks inspected; {len(program.containers())} declared "
            "containers compared field by field (image id, user, capabilities, privileged, "
            "read-only root, security options, PIDs limit, mounts, ports, networks and aliases, "
            "isolation, memory, swap, CPUs, env names, labels, health check, restart, logging), "
            "declared volumes and networks, unmanaged containers"
        )
        print(f"findings by (field, severity): {dict(sorted(classes.items()))}")
        print(
            f"live_view (program under mocks + concurrent inspects + compare): {ours:.3f} s "
            f"median of {args.runs}; of which the program under mocks {declare_s:.3f} s, "
            f"inspect + compare {compare_s:.3f} s"
        )
        figures.update(
            containers=result.containers,
            volumes=result.volumes,
            networks=result.networks,
            declared_containers=len(program.containers()),
            replayed_containers=len(done.containers),
            findings=len(result.findings),
            drift_s=round(ours, 4),
            declare_s=round(declare_s, 4),
            inspect_compare_s=round(compare_s, 4),
            under_3s=ours < 3,
        )
        if docker_cli:
            naive, _ = median_seconds(
                min(args.runs, 3), lambda: _naive_cli(host, docker_cli, busybox)
            )
            print(
                f"baseline, one `docker inspect` process per object, sequential, + the same "
                f"program run and compare: {naive:.3f} s; live_view is {naive / ours:.1f}x faster"
            )
            figures.update(baseline_cli_s=round(naive, 4), speedup_vs_cli=round(naive / ours, 2))
        else:
            print("baseline, naive docker CLI: skipped (no `docker` command on PATH)")
    finally:
        removed = remove_labelled(client, LABEL, RUN)
        if done is not None:
            done.remove()
            print(
                f"removed stack {STACK}'s {len(done.containers)} containers, its volumes and "
                f"networks, and the {removed} copies labelled {LABEL}={RUN}"
            )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

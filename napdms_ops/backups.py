"""The operator's side of backups.

Find a stack's agent, run its commands there, restore into volumes.

The agent container (declared by the program) holds the plan, the secrets and the tools, so
`backup run|list|verify|prune|init` execute inside it. `restore` and `drill` start a one-shot
container from the agent's image with the agent's config and secrets, so a long restore never
blocks the nightly run, and fresh volumes receive the data.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import docker
from docker.errors import APIError, DockerException, NotFound
from requests import RequestException

from components.catalog.backup_agent import STATE_DIR
from components.model.plan import (
    AGENT_SERVICE,
    CONFIG_DIR,
    PLAN_FILE,
    BackupPlan,
    FilesSource,
    PostgresqlSource,
)
from components.model.spec import SECRETS_DIR, SOURCE_ROOT
from components.settings import Stack, read_stack
from napdms_ops.audit import AuditError, connect, default_host
from policies.rules.names import (
    JOB_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_OPS,
    RESTORE_LABEL,
    SERVICE_LABEL,
    STACK_LABEL,
    object_prefix,
)

RESTORE_ROOT = "/restore"
# What a restore needs to recreate files with their owners and modes, and nothing more.
RESTORE_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"]


class BackupCommandError(RuntimeError):
    """The command cannot run; the message names the stack and the fix."""


@dataclass(frozen=True)
class Agent:
    """A stack's running backup agent and the daemon it runs on."""

    stack: str
    client: docker.DockerClient
    container: docker.models.containers.Container


def endpoint(stack: Stack) -> str:
    """The Docker endpoint of the host that runs `stack`'s backup agent (its placement, including a
    `services.backup-agent.host` override)."""
    return stack.endpoint_of(AGENT_SERVICE) or default_host()


def find_agent(stack: str, client: docker.DockerClient | None = None) -> Agent:
    """The running agent of `stack`, found by the labels the program puts on it."""
    try:
        client = client or connect(endpoint(read_stack(stack)))
        found = client.containers.list(
            filters={"label": [f"{STACK_LABEL}={stack}", f"{SERVICE_LABEL}={AGENT_SERVICE}"]}
        )
    except AuditError as error:
        raise BackupCommandError(f"stack {stack}: {error}") from None
    except (DockerException, APIError, RequestException) as error:
        raise BackupCommandError(
            f"stack {stack}: cannot reach its Docker daemon ({error}); "
            "check DOCKER_HOST or the stack's hosts"
        ) from None
    if not found:
        raise BackupCommandError(
            f"stack {stack}: no running {AGENT_SERVICE} container; "
            f"deploy it with `python3 -m napdms_ops up --stack {stack}`"
        )
    return Agent(stack, client, found[0])


def run_in_agent(agent: Agent, command: str, *args: str) -> tuple[int, dict, str]:
    """Run `python3 -m napdms_ops.backup <command>` in the agent.

    Returns (exit code, JSON result, stderr).
    """
    with _docker_errors(agent.stack):
        result = agent.container.exec_run(
            ["python3", "-m", "napdms_ops.backup", command, "--plan", PLAN_FILE, *args], demux=True
        )
    stdout, stderr = result.output
    return result.exit_code, _json(stdout), (stderr or b"").decode(errors="replace").strip()


@contextmanager
def _docker_errors(stack: str) -> Iterator[None]:
    """Turn a daemon that fails or stops answering mid-command into one `BackupCommandError`."""
    try:
        yield
    except (DockerException, RequestException) as error:
        reason = " ".join(str(error).split())
        raise BackupCommandError(
            f"stack {stack}: its Docker daemon failed the request ({reason}); "
            "check the daemon and the agent container, then run the command again"
        ) from None


def _json(stdout: bytes | None) -> dict:
    lines = (stdout or b"").decode(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {"output": "\n".join(lines)}


@dataclass(frozen=True)
class JobResult:
    """What a one-shot restore or drill container did."""

    exit_code: int
    result: dict
    error: str
    volumes: tuple[str, ...]


def restore_volumes(
    agent: Agent, services: Sequence[str], label: str, live: bool = False
) -> dict[str, str]:
    """Volume names for each restored location: `<container path> -> <volume>`.

    Files services come back at their /source paths (as in the agent), dumps under /<service>.
    Volumes are fresh ones named after `label`; with `live`, files go back into the stack's own
    volumes (dumps still land in fresh ones: they are loaded into the database by hand).
    """
    plan = _plan(agent)
    known = [source.service for source in plan.sources]
    missing = sorted(set(services) - set(known))
    if missing:
        raise BackupCommandError(
            f"stack {agent.stack}: {', '.join(missing)} not in the backup plan; "
            f"known: {', '.join(known)}"
        )
    prefix = f"{object_prefix(agent.stack)}-restore-{label}"
    mounts = {}
    for source in plan.sources:
        if services and source.service not in services:
            continue
        if isinstance(source, FilesSource):
            for path in source.paths:
                volume = path.removeprefix(f"{SOURCE_ROOT}/").replace("/", "-")
                mounts[f"{RESTORE_ROOT}{path}"] = (
                    f"{object_prefix(agent.stack)}-{volume}" if live else f"{prefix}-{volume}"
                )
        else:
            mounts[f"{RESTORE_ROOT}/{source.service}"] = f"{prefix}-{source.service}-dump"
    return mounts


def _plan(agent: Agent) -> BackupPlan:
    code, output = agent.container.exec_run(["cat", PLAN_FILE])
    if code != 0:
        raise BackupCommandError(
            f"stack {agent.stack}: the agent has no plan at {PLAN_FILE}; redeploy it"
        )
    try:
        return BackupPlan.model_validate_json(output)
    except ValueError as error:
        raise BackupCommandError(
            f"stack {agent.stack}: the agent's {PLAN_FILE} does not match "
            f"this ops CLI's plan model ({error}); "
            "deploy the same version of the program as this CLI"
        ) from None


_CARRIED = (SECRETS_DIR, CONFIG_DIR)
"""What a job takes from the source agent: its secrets and its plan."""


def run_job(
    source: Agent,
    command: Sequence[str],
    mounts: dict[str, str],
    runner: Agent | None = None,
    timeout_s: float = 24 * 3600,
    entrypoint: Sequence[str] | None = None,
) -> JobResult:
    """Run the agent image once with `source`'s plan and secrets plus `mounts`, on `runner`'s host.

    `runner` (default `source`) gives the image, network and daemon: restoring prod's backup for
    staging runs on the staging host with prod's plan and key, copied over for this job only.
    """
    runner = runner or source
    client = runner.client
    runner.container.reload()
    binds = []
    for path, name in mounts.items():
        client.volumes.create(name, labels={**_job_labels(runner.stack), RESTORE_LABEL: "true"})
        binds.append(f"{name}:{path}:rw")
    if runner.container.id == source.container.id:
        binds += _agent_mounts(source)
        carried = {}
    else:
        carried = _carried_volumes(runner)
        binds += [f"{name}:{path}:rw" for path, name in carried.items()]
    job = _create_job(runner, command, binds, entrypoint)
    try:
        for path in carried:
            archive, _ = source.container.get_archive(path)
            # Into the volume itself: the job's root, where `path`'s parent is, is read-only.
            job.put_archive(path, _below_top(b"".join(archive)))
        job.start()
        status = job.wait(timeout=timeout_s)
        stdout = job.logs(stdout=True, stderr=False)
        stderr = job.logs(stdout=False, stderr=True).decode(errors="replace").strip()
    finally:
        job.remove(force=True)
        for name in carried.values():
            client.volumes.get(name).remove(force=True)
    return JobResult(status.get("StatusCode", 1), _json(stdout), stderr, tuple(mounts.values()))


def _agent_mounts(agent: Agent) -> list[str]:
    """Binds of what the agent itself mounts to reach its repository: its plan and secrets
    (read-only), its cache and, with a local repository (dev), the repository's volume, each as
    the agent has it. Not the agent's run record (the job keeps its own) nor the live volumes it
    backs up: a job reads the repository and writes only the volumes it is given."""
    # restic writes its cache with temporary files and renames, so the agent's can be shared.
    binds = []
    for mount in agent.container.attrs["Mounts"]:
        destination = mount["Destination"]
        if destination == STATE_DIR or destination.startswith(f"{SOURCE_ROOT}/"):
            continue
        source = mount.get("Name") if mount.get("Type") == "volume" else mount.get("Source")
        if mount.get("Type") in ("volume", "bind") and source:
            binds.append(f"{source}:{destination}:{'rw' if mount.get('RW') else 'ro'}")
    return binds


def _below_top(archive: bytes) -> bytes:
    """`archive` (of one directory, as `get_archive` gives it) with that directory's name taken off
    each member, so it extracts into the directory's counterpart."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(archive)) as source,
        tarfile.open(fileobj=out, mode="w") as target,
    ):
        for member in source.getmembers():
            _, _, rest = member.name.partition("/")
            if not rest:
                continue
            data = source.extractfile(member) if member.isfile() else None
            member.name = rest
            target.addfile(member, data)
    return out.getvalue()


def _carried_volumes(runner: Agent) -> dict[str, str]:
    """Fresh volumes on `runner`'s host for the source agent's plan and secrets, by path."""
    carried = {}
    for path in _CARRIED:
        carried[path] = (
            f"{object_prefix(runner.stack)}-job-{int(time.time())}-{path.rsplit('/', 1)[-1]}"
        )
        runner.client.volumes.create(carried[path], labels=_job_labels(runner.stack))
    return carried


def _create_job(
    runner: Agent,
    command: Sequence[str],
    binds: list[str],
    entrypoint: Sequence[str] | None = None,
):
    """The one-shot container of the agent's image: hardened, on every network of the agent (the
    route to the ASUSTOR and S3 is on one of them, the databases on others)."""
    networks = list(runner.container.attrs["NetworkSettings"]["Networks"])
    job = runner.client.containers.create(
        runner.container.image.id,
        command=[command[0], "--plan", PLAN_FILE, *command[1:]],
        entrypoint=list(entrypoint) if entrypoint else None,
        user="0",
        cap_drop=["ALL"],
        cap_add=RESTORE_CAPS,
        security_opt=["no-new-privileges:true"],
        cgroupns="private",
        read_only=True,
        # /state: the job's own manifest cache; the agent's run record is not the job's to touch.
        # /restore: restic also restores the owners and modes of the directories above the
        # volumes, which on the read-only root would fail.
        tmpfs={"/tmp": "rw,size=1g", STATE_DIR: "rw,size=64m", RESTORE_ROOT: "rw,size=1m"},
        volumes=binds,
        network=networks[0] if networks else None,
        environment={"TMPDIR": "/tmp"},
        labels={**_job_labels(runner.stack), JOB_LABEL: command[0]},
        mem_limit=runner.container.attrs["HostConfig"].get("Memory") or None,
        nano_cpus=runner.container.attrs["HostConfig"].get("NanoCpus") or None,
        pids_limit=512,
    )
    try:
        for name in networks[1:]:
            runner.client.networks.get(name).connect(job)
    except BaseException:
        job.remove(force=True)
        raise
    return job


def _job_labels(stack: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY_OPS, STACK_LABEL: stack}


def restore(
    source: Agent,
    snapshot: str,
    services: Sequence[str],
    runner: Agent | None = None,
    label: str | None = None,
    force: bool = False,
) -> JobResult:
    """Restore into fresh volumes on `runner`'s host (default: the source's).

    With `force`, files go back into the runner stack's live volumes, after the agent has backed
    up what they hold as a safety snapshot; stop the services first.
    """
    with _docker_errors(source.stack):
        return _restore(source, snapshot, services, runner or source, label, force)


def check_label(label: str) -> str:
    """A `--label` that can be part of a Docker volume name; raises `BackupCommandError`."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,39}", label):
        raise BackupCommandError(
            f"--label {json.dumps(label)}: not usable in a volume name; use up to 40 "
            'lower-case letters, digits, ".", "_" and "-", e.g. "before-upgrade"'
        )
    return label


def _restore(
    source: Agent,
    snapshot: str,
    services: Sequence[str],
    runner: Agent,
    label: str | None,
    force: bool,
) -> JobResult:
    label = check_label(label) if label else time.strftime("%Y%m%d%H%M%S", time.gmtime())
    mounts = {
        path: name.replace(f"{object_prefix(source.stack)}-", f"{object_prefix(runner.stack)}-", 1)
        for path, name in restore_volumes(source, services, label, live=force).items()
    }
    fresh = [name for name in mounts.values() if f"-restore-{label}-" in name]
    existing = [name for name in fresh if _volume_exists(runner.client, name)]
    if existing:
        raise BackupCommandError(
            f"stack {runner.stack}: volumes {', '.join(existing)} exist already; "
            "choose another --label"
        )
    chosen = [a for s in services for a in ("--service", s)]
    safety = None
    if force:
        live = {path: name for path, name in mounts.items() if name not in fresh}
        _refuse_mounted(runner, list(live.values()))
        if runner.container.id != source.container.id:
            safety = _set_aside(runner, live, chosen)
            force = False  # the target's volumes are empty now
    args = ["restore", "--snapshot", snapshot, "--into", RESTORE_ROOT, *chosen]
    job = run_job(source, args + (["--force"] if force else []), mounts, runner)
    if safety:
        job = dataclasses.replace(
            job, result={**job.result, "safety_snapshot": safety, "safety_stack": runner.stack}
        )
    return job


def restore_to(
    source: Agent, moment: str, service: str, runner: Agent | None = None, label: str | None = None
) -> JobResult:
    """Recover `service` (PostgreSQL with its WAL archived) to `moment` into a fresh volume on
    `runner`'s host (default: the source's), `<stack>-restore-<label>-<service>-data`: a data
    directory the stack's postgres image starts as it is. The WAL goes through a scratch volume,
    removed afterwards."""
    with _docker_errors(source.stack):
        runner = runner or source
        plan = _plan(source)
        archived = [
            s.service for s in plan.sources if isinstance(s, PostgresqlSource) and s.wal is not None
        ]
        if service not in archived:
            raise BackupCommandError(
                f"stack {source.stack}: --to recovers a PostgreSQL service whose WAL the agent "
                f"archives ({', '.join(archived) or 'none in its plan'}), not {service}"
            )
        label = check_label(label) if label else time.strftime("%Y%m%d%H%M%S", time.gmtime())
        volume = f"{object_prefix(runner.stack)}-restore-{label}-{service}-data"
        if _volume_exists(runner.client, volume):
            raise BackupCommandError(
                f"stack {runner.stack}: volume {volume} exists already; choose another --label"
            )
        scratch = f"{object_prefix(runner.stack)}-restore-{label}-{service}-wal"
        args = [
            "restore",
            "--to",
            moment,
            "--service",
            service,
            "--into",
            RESTORE_ROOT,
            "--workdir",
            "/scratch",
        ]
        try:
            job = run_job(
                source, args, {f"{RESTORE_ROOT}/{service}": volume, "/scratch": scratch}, runner
            )
        finally:
            try:
                runner.client.volumes.get(scratch).remove(force=True)
            except (DockerException, RequestException):
                pass  # never made, or the daemon is gone: the error above says which
        return dataclasses.replace(job, volumes=(volume,))


SET_ASIDE = ("python3", "-m", "napdms_ops.backup.restore")
"""Entry point of the job that takes a forced restore's safety snapshot in the target stack."""


def _set_aside(runner: Agent, live: dict[str, str], services: list[str]) -> str | None:
    """Back up the target stack's live volumes into the target's own repository (a job of its
    agent with its plan), then empty them; the snapshot's id, None when they held nothing."""
    job = run_job(
        runner, ["set-aside", "--into", RESTORE_ROOT, *services], live, entrypoint=SET_ASIDE
    )
    if job.exit_code != 0:
        raise BackupCommandError(
            f"stack {runner.stack}: the safety snapshot of its volumes failed ({job.error}); "
            "nothing was restored; fix that, then run the restore again"
        )
    return job.result.get("safety_snapshot")


def _refuse_mounted(runner: Agent, volumes: Sequence[str]) -> None:
    """Raise while a running container (other than the agent, which only reads them) mounts one
    of the live `volumes` a forced restore would overwrite: it could write after the snapshot's
    moment and the result would not be that moment."""
    for volume in volumes:
        users = sorted(
            c.name
            for c in runner.client.containers.list(filters={"volume": volume})
            if c.id != runner.container.id
        )
        if users:
            raise BackupCommandError(
                f"stack {runner.stack}: volume {volume} is mounted by running container "
                f"{', '.join(users)}; stop it first (`docker stop {' '.join(users)}`), "
                "then run the restore again"
            )


def drill(agent: Agent, snapshot: str, data_bytes: int | None) -> JobResult:
    """Run the drill in a one-shot container with a scratch volume, removed afterwards."""
    scratch = f"{object_prefix(agent.stack)}-drill-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    args = ["drill", "--snapshot", snapshot, "--workdir", "/scratch"]
    if data_bytes is not None:
        args += ["--data-bytes", str(data_bytes)]
    try:
        with _docker_errors(agent.stack):
            return run_job(agent, args, {"/scratch": scratch})
    finally:
        try:
            agent.client.volumes.get(scratch).remove(force=True)
        except (DockerException, RequestException):
            pass  # gone already, or the daemon is: the error above says which


def _volume_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.volumes.get(name)
    except NotFound:
        return False
    return True

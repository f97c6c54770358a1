"""`secrets rotate`, for real: one secret of each kind rotated on the engine by the ops package's
`Rotator`, the program's declarations applied by `ReplayEngine` as `pulumi up` would, and the
services shown to work afterwards with the new value and not with the old one.

Stack `secretslive` (dev's settings; PostgreSQL, Redis and the backup agent on their stand-ins):

- `redis-password`, a secret only its holders read: Redis answers AUTH with the new password and
  refuses the old;
- `napdms-db-password`, a database login: the role `napdms` logs in to PostgreSQL, whose data
  directory outlives the replaced container, with the new password and not the old;
- `restic-password`: the agent's repository opens with the new password and not the old, and
  its snapshot still reads.

The mocks give a RandomPassword a value of its name alone; here the value also follows its
`rotation` keeper, as pulumi-random's replacement gives a new one.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime

import pytest

from components.model.plan import PLAN_FILE
from components.model.spec import SECRETS_DIR
from components.settings import load_stack
from napdms_ops import declared
from napdms_ops.release.deploy import Deployer
from napdms_ops.release.journal import Journal
from napdms_ops.release.lock import StackLock
from napdms_ops.release.runtime import DockerRuntime
from napdms_ops.secrets.inventory import inventory
from napdms_ops.secrets.rotate import Rotator
from napdms_ops.trail import record, records
from napdms_ops.trail.mirror import LocalMirror
from tests.live.engine import engine_url, ensure_engine
from tests.live.release_engine import ReplayEngine, stack_values
from tests.live.standins import standin_image, upstream_repo_of
from tests.program import mock_password

STACK = "secretslive"
SERVICES = ("postgres", "redis", "backup-agent")
PREFIX = f"napdms-{STACK}"
OPERATOR = "secrets-live@nap-dms.localhost"


def _rotated_value(name: str, rotation: str) -> str:
    """What the mocks give RandomPassword `name` at keeper `rotation`."""
    return mock_password(name if rotation == "0" else f"{name}@{rotation}")


class _Mocks(declared._Mocks):
    """The program's mocks, with a RandomPassword's value following its keepers."""

    def new_resource(self, args):
        resource_id, state = super().new_resource(args)
        if args.typ == "random:index/randomPassword:RandomPassword":
            keepers = args.inputs.get("keepers") or {}
            state["result"] = _rotated_value(args.name, str(keepers.get("rotation", "0")))
        return resource_id, state


class _Engine(ReplayEngine):
    """`ReplayEngine` running the backup agent's stand-in for the image the program builds."""

    def _image(self, program, declared_container) -> str:
        """An image the program builds (the backup agent) runs its stand-in, as in `replay`."""
        built = [
            program.by_urn(urn).plain("imageName")
            for urn in declared_container.dependencies
            if program.by_urn(urn).type == "docker:index/image:Image"
        ]
        if built:
            return standin_image(upstream_repo_of(built[0]), self.client)
        return super()._image(program, declared_container)


def value(name: str, rotation: int) -> str:
    """Secret `name`'s value at counter `rotation` (its slot: even `-value`, odd `-value-odd`,
    for a secret that keeps its previous value)."""
    keeps = name == "restic-password"
    slot = f"{name}-value-odd" if keeps and rotation % 2 else f"{name}-value"
    return _rotated_value(slot, str(rotation))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The stack created on the engine with its restic repository initialised; removed after."""
    patch = pytest.MonkeyPatch()
    patch.setattr(declared, "_Mocks", _Mocks)
    client = ensure_engine()
    values, secret_keys = stack_values(SERVICES)
    engine = _Engine(STACK, values, secret_keys, SERVICES, (), client)
    state_dir = tmp_path_factory.mktemp("secretslive-state")
    try:
        engine.up("create")
        agent = engine.container(f"{PREFIX}-backup-agent-1")
        for argv in (["init"], ["run"]):
            code, output = agent.exec_run(
                ["python3", "-m", "napdms_ops.backup", *argv, "--plan", PLAN_FILE]
            )
            assert code == 0, output.decode(errors="replace")
        yield engine, state_dir
    finally:
        engine.remove()
        patch.undo()


def _rotator(engine: ReplayEngine, state_dir) -> Rotator:
    def runtime(endpoint):
        return DockerRuntime(engine_url(), client=engine.client)

    # No service of this stack runs two colours: the release flows are never asked to switch.
    journal = Journal(state_dir, STACK, OPERATOR, None, mirror=LocalMirror(state_dir / "m", STACK))
    return Rotator(
        engine,
        runtime,
        StackLock(state_dir, STACK, OPERATOR, "napdms-ops secrets rotate"),
        functools.partial(record, environ={"NAPDMS_STATE_DIR": str(state_dir)}),
        Deployer(engine, runtime, journal),
        health_timeout_s=90,
        restic_timeout_s=90,
    )


def _redis_answers(engine: ReplayEngine, password: str) -> bool:
    code, output = engine.container(f"{PREFIX}-redis-1").exec_run(
        ["redis-cli", "-h", "127.0.0.1", "ping"], environment={"REDISCLI_AUTH": password}
    )
    return code == 0 and output.strip() == b"PONG"


def _logs_in(engine: ReplayEngine, role: str, password: str) -> bool:
    """Role `role` logs in to its database over TCP (scram), as an application does."""
    code, output = engine.container(f"{PREFIX}-postgres-1").exec_run(
        ["psql", "-X", "-w", "-h", "127.0.0.1", "-U", role, "-d", role, "-tA", "-c", "SELECT 1"],
        environment={"PGPASSWORD": password},
    )
    return code == 0 and output.strip() == b"1"


def _restic_opens(engine: ReplayEngine, password_file: str) -> bool:
    code, _ = engine.container(f"{PREFIX}-backup-agent-1").exec_run(
        ["restic", "-r", "/repository", "--password-file", password_file, "cat", "config"],
        environment={"RESTIC_CACHE_DIR": "/tmp/restic-cache"},
    )
    return code == 0


@pytest.fixture(scope="module")
def rotated_redis(stack):
    engine, state_dir = stack
    assert _redis_answers(engine, value("redis-password", 0))
    return _rotator(engine, state_dir).rotate("redis-password")


def test_redis_answers_the_new_password_and_refuses_the_old(rotated_redis, stack):
    engine, _ = stack
    assert _redis_answers(engine, value("redis-password", 1))
    assert not _redis_answers(engine, value("redis-password", 0))


def test_every_holder_of_the_redis_password_was_replaced_and_is_healthy(rotated_redis, stack):
    engine, _ = stack
    assert rotated_redis.holders == ("redis", "backup-agent")
    for name in ("redis-1", "backup-agent-1"):
        container = engine.container(f"{PREFIX}-{name}")
        assert container.attrs["State"]["Health"]["Status"] == "healthy", name
        assert f"{PREFIX}-{name}" in engine.history[-1].replaced


@pytest.fixture(scope="module")
def rotated_role(stack, rotated_redis):
    engine, state_dir = stack
    assert _logs_in(engine, "napdms", value("napdms-db-password", 0))
    return _rotator(engine, state_dir).rotate("napdms-db-password")


def test_the_app_role_logs_in_with_the_new_password_and_not_the_old(rotated_role, stack):
    engine, _ = stack
    assert _logs_in(engine, "napdms", value("napdms-db-password", 1))
    assert not _logs_in(engine, "napdms", value("napdms-db-password", 0))


def test_the_database_kept_its_data_directory_across_the_rotation(rotated_role, stack):
    engine, _ = stack
    assert f"{PREFIX}-postgres-1" in engine.history[-1].replaced, "up did not restart postgres"
    assert _logs_in(engine, "gitea", value("gitea-db-password", 0)), "another role changed"


@pytest.fixture(scope="module")
def rotated_restic(stack, rotated_role):
    engine, state_dir = stack
    return _rotator(engine, state_dir).rotate("restic-password")


def test_the_repository_opens_with_the_new_restic_password_and_not_the_old(rotated_restic, stack):
    engine, _ = stack
    assert _restic_opens(engine, f"{SECRETS_DIR}/restic-password")
    assert not _restic_opens(engine, f"{SECRETS_DIR}/restic-password-previous")


def test_the_backups_made_before_the_restic_rotation_still_list(rotated_restic, stack):
    engine, _ = stack
    code, output = engine.container(f"{PREFIX}-backup-agent-1").exec_run(
        ["python3", "-m", "napdms_ops.backup", "list", "--plan", PLAN_FILE]
    )
    assert code == 0, output.decode(errors="replace")
    listed = json.loads(output.decode().strip().splitlines()[-1])
    assert [run["ok"] for run in listed["runs"]] == [True]
    assert listed["unreadable"] == []


def test_each_rotation_is_in_the_audit_trail_and_in_the_listing(rotated_restic, stack):
    engine, state_dir = stack
    trail = records(STACK, environ={"NAPDMS_STATE_DIR": str(state_dir)})
    rotations = [(r.changes["secret"], r.changes["to"], r.result) for r in trail]
    assert rotations == [
        ("redis-password", 1, "ok"),
        ("napdms-db-password", 1, "ok"),
        ("restic-password", 1, "ok"),
    ]
    listed = {
        age.name: age
        for age in inventory(
            load_stack(STACK, engine.values(), engine.secret_keys()), trail, None, _now()
        )
    }
    assert listed["restic-password"].rotation == 1
    assert listed["restic-password"].last_rotation is not None
    assert listed["redis-password"].overdue is False


def _now():
    return datetime.now(UTC)

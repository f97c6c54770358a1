"""`secrets rotate` on a small fake world: an engine whose `up` rewrites each holder's secret
file from the stack's counters (a pinned colour's from the counter before) and replaces the
replicas whose file changed, a proxy that routes NAP-DMS backend to one colour, a PostgreSQL
that keeps the role passwords it was given (as a real one does across restarts), a backup agent
whose repositories open with the keys it holds, and a clock that moves only when the rotation
waits. Blue-green holders switch through the real release flows (`Deployer`)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

from components.model.spec import SECRETS_DIR
from components.settings import load_stack, read_stack_file
from napdms_ops.release.deploy import Deployer, Windows
from napdms_ops.release.engine import ApplyError, with_changes, without_paths
from napdms_ops.release.journal import Journal
from napdms_ops.release.lock import StackLock
from napdms_ops.release.runtime import MISSING, ContainerState
from napdms_ops.secrets import commands
from napdms_ops.secrets.holders import replica_names
from napdms_ops.secrets.inventory import holders_of
from napdms_ops.secrets.rotate import REKEY_AFTER_S, RESTIC_CHECK, RotateError, Rotator
from napdms_ops.trail.mirror import LocalMirror


def _pulumi_path_value(value: str):
    """What `pulumi config set --path` stores: a whole number as a number (but one with a
    leading zero, such as "007", as text)."""
    return int(value) if value.isdigit() and (value == "0" or value[0] != "0") else value


@dataclass
class World:
    """The stack's containers and what the systems beside the files hold."""

    stack: str
    clock: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    """Secret name -> the value in its holders' files."""
    roles: dict[str, str] = field(default_factory=dict)
    """PostgreSQL role -> the password the server checks."""
    mongo_users: dict[str, str] = field(default_factory=dict)
    """MongoDB user -> the password the server checks."""
    restic_keys: set[str] = field(default_factory=set)
    """Passwords that open the backup repository."""
    restic_previous: str | None = None
    agent_rekeys_at_start: bool = True
    holders_fail_when_locked_out: bool = False
    role_update_lost: bool = False
    """psql exits 0 but the server keeps the old password (a broken database)."""
    unhealthy: set[str] = field(default_factory=set)
    execs: list[tuple[str, list[str], bytes | None]] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)
    containers: dict[str, ContainerState] = field(default_factory=dict)
    held: dict[tuple[str, str], str] = field(default_factory=dict)
    """(container, secret) -> the value in that container's file (a colour may be pinned)."""
    live: str = "blue"
    """The colour the proxy routes NAP-DMS backend to."""
    not_ready_after_switch: bool = False
    """The colour switched to stops answering its probe through the proxy (a failed watch)."""

    def value(self, name: str, counter: int) -> str:
        return f"{name}-value-{counter}"


class FakeEngine:
    """The stack's config in memory; `up` writes every secret file from the counters and
    replaces each holder whose file changed."""

    def __init__(self, world: World):
        self.world = world
        self.stack = world.stack
        self._values, self._secret_keys = read_stack_file(world.stack)
        self._values = dict(self._values)
        self.secrets_set: dict[str, str] = {}
        self.fail_up: list[str] = []

    def values(self):
        return self._values

    def secret_keys(self):
        return set(self._secret_keys) | set(self.secrets_set)

    def set_values(self, changes):
        self.world.events.append(("set", dict(changes)))
        parsed = {path: _pulumi_path_value(value) for path, value in changes.items()}
        self._values = with_changes(self._values, parsed)

    def remove_values(self, paths):
        self.world.events.append(("remove", list(paths)))
        self._values = without_paths(self._values, paths)

    def set_secret(self, key, value):
        self.world.events.append(("set-secret", key))
        self.secrets_set[key] = value
        self._values[key] = value

    def up(self, message):
        world = self.world
        world.events.append(("up", message))
        if self.fail_up:
            raise ApplyError(self.fail_up.pop(0))
        stack = load_stack(world.stack, self._values, self.secret_keys())
        counters = stack.settings.secrets.rotation
        from components.model.operator_keys import BY_SECRET

        for name, holders in holders_of(stack).items():
            key = BY_SECRET.get(name)
            counter = counters.get(name, 0)
            new = (
                self._values.get(key.config_key, f"{name}-operator")
                if key
                else world.value(name, counter)
            )
            old, world.files[name] = world.files.get(name), new
            if name == "restic-password" and old != new:
                world.restic_previous = old
                if world.agent_rekeys_at_start:
                    world.restic_keys = {new}
            for holder in holders:
                colours = stack.services[holder].colours
                for container in replica_names(stack, holder):
                    colour = container.rsplit("-", 2)[1] if colours else None
                    pinned = colour is not None and name in colours.image(colour).secrets
                    value = world.value(name, counter - 1) if pinned else new
                    if world.held.get((container, name)) == value:
                        continue
                    world.held[(container, name)] = value
                    world.events.append(("replaced", container))
                    world.containers[container] = ContainerState(
                        exists=True, running=True, health="healthy"
                    )
        locked_out = [
            role
            for role, password in world.roles.items()
            if world.files.get(_secret_of(role)) != password
        ]
        if locked_out and world.holders_fail_when_locked_out:
            raise ApplyError(f"napdms-backend-blue-1 is not healthy (roles {locked_out})")


def _secret_of(role: str) -> str:
    return "postgres-password" if role == "postgres" else f"{role}-db-password"


def _file_secret(path: str) -> str:
    return path.removeprefix(f"{SECRETS_DIR}/")


class FakeRuntime:
    """The world's containers; exec understands the rotation's psql and agent scripts."""

    def __init__(self, world: World):
        self.world = world

    def state(self, container):
        if container in self.world.unhealthy:
            return ContainerState(exists=True, running=True, health="unhealthy")
        return self.world.containers.get(container, MISSING)

    def exec(self, container, argv, stdin=None, timeout_s=30.0):
        world = self.world
        world.execs.append((container, list(argv), stdin))
        world.events.append(("exec", container, argv[0]))
        if argv[0] == "psql":
            sets = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--set")
            if not world.role_update_lost:
                world.roles[sets["role"]] = world.files[_file_secret(sets["file"])]
            return 0, ""
        if argv[:2] == ["sh", "-c"] and argv[2].startswith("grafana cli"):
            world.events.append(("grafana-reset",))
            return 0, "Admin password changed successfully"
        if argv[:2] == ["sh", "-c"]:
            role, path = argv[4], argv[5]
            if world.roles.get(role) == world.files[_file_secret(path)]:
                return 0, "1\n"
            return 2, f'psql: error: FATAL:  password authentication failed for user "{role}"'
        if argv[0] == "mongosh":
            script = argv[3]
            user_file = _file_secret(script.rsplit("readFileSync(", 1)[1].split('"')[1])
            if "updateUser" in script:
                world.mongo_users["rocketchat"] = world.files[user_file]
                return 0, ""
            ok = world.mongo_users["rocketchat"] == world.files[user_file]
            return (0, "1") if ok else (1, "MongoServerError: Authentication failed.")
        if argv[:2] == ["python3", "-c"] and argv[2] == RESTIC_CHECK:
            current = world.files["restic-password"]
            if argv[3:] == ["rekey"]:
                world.restic_keys = {current}
            found = {
                "repository": "/backups/restic",
                "current": current in world.restic_keys,
                "previous": world.restic_previous in world.restic_keys,
            }
            return 0, json.dumps([found]) + "\n"
        raise AssertionError(f"unexpected exec {argv}")


class FakeProxy:
    """The proxy: a switch is a Caddyfile routing NAP-DMS backend to one colour; every replica
    answers its probe unless the world says the colour switched to does not."""

    def __init__(self, world: World):
        self.world = world

    def load(self, caddyfile):
        self.world.live = "green" if "napdms-backend-green-1" in caddyfile else "blue"
        self.world.events.append(("switch", self.world.live))

    def ready(self, url):
        return not (self.world.not_ready_after_switch and f"-{self.world.live}-" in url)

    def upstreams(self):
        return {}

    def responses(self):
        return Counter()


class Recorder:
    def __init__(self):
        self.records: list[dict] = []

    def __call__(self, stack, command, result, *, service=None, changes=None, reason=None):
        self.records.append(
            {
                "stack": stack,
                "command": command,
                "result": result,
                "service": service,
                "changes": changes,
                "reason": reason,
            }
        )


@pytest.fixture
def world() -> World:
    """dev, applied once: every file written, each PostgreSQL role created from its file."""
    world = World("dev")
    engine = FakeEngine(world)
    engine.up("first up")
    world.roles = {
        role: world.files[_secret_of(role)] for role in ("postgres", "napdms", "gitea", "n8n")
    }
    world.restic_keys = {world.files["restic-password"]}
    world.events.clear()
    return world


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _journal(tmp_path) -> Journal:
    return Journal(
        tmp_path, "dev", "ops@example.org", None, mirror=LocalMirror(tmp_path / "m", "dev")
    )


def _deployer(world, engine, tmp_path) -> Deployer:
    """The release flows on the fake world, with its proxy and clock."""

    def sleep(seconds):
        world.clock += seconds

    return Deployer(
        engine,
        lambda endpoint: FakeRuntime(world),
        _journal(tmp_path),
        proxy=lambda runtime, container: FakeProxy(world),
        windows=Windows(drain_s=1.0, watch_s=3.0, check_s=1.0, poll_s=0.25),
        clock=lambda: world.clock,
        sleep=sleep,
    )


def _rotator(world, recorder, tmp_path, engine=None) -> Rotator:
    def sleep(seconds):
        world.clock += seconds

    engine = engine or FakeEngine(world)
    return Rotator(
        engine,
        lambda endpoint: FakeRuntime(world),
        StackLock(tmp_path, world.stack, "ops@example.org", "napdms-ops secrets rotate"),
        recorder,
        _deployer(world, engine, tmp_path),
        sleep=sleep,
        clock=lambda: world.clock,
    )


# -- generated secrets -------------------------------------------------------------------------


def test_rotating_a_generated_secret_raises_its_counter_by_one_and_applies_it(
    world, recorder, tmp_path
):
    rotated = _rotator(world, recorder, tmp_path).rotate("redis-password")
    assert world.events[:2] == [
        (
            "set",
            {
                "secrets.rotation.redis-password": "1",
                "services.napdms-backend.colours.blue.secrets.redis-password": "0",
            },
        ),
        ("up", "secrets rotate redis-password"),
    ]
    assert world.files["redis-password"] == world.value("redis-password", 1)
    assert (rotated.counter_from, rotated.counter_to) == (0, 1)


def test_a_rotation_waits_for_every_holder_of_the_secret_to_be_healthy(world, recorder, tmp_path):
    world.unhealthy = {"napdms-dev-redis-1"}
    with pytest.raises(RotateError) as refused:
        _rotator(world, recorder, tmp_path).rotate("redis-password")
    assert "napdms-dev-redis-1 is unhealthy" in str(refused.value)
    assert refused.value.result == "failed"
    assert world.clock >= 180, "gave up before its health timeout"


# -- blue-green holders --------------------------------------------------------------------------

BLUE = [f"napdms-dev-napdms-backend-blue-{n}" for n in (1,)]
GREEN = [f"napdms-dev-napdms-backend-green-{n}" for n in (1,)]
PIN = "services.napdms-backend.colours.blue.secrets.napdms-app-key"


def _steps(world: World) -> list[tuple]:
    """The rotation's config changes, `up`s, switches and NAP-DMS backend replacements."""
    return [
        e
        for e in world.events
        if e[0] in ("set", "remove", "up", "switch")
        or (e[0] == "replaced" and "napdms-backend" in e[1])
    ]


def test_a_blue_green_holder_takes_a_new_value_one_colour_at_a_time_around_a_switch(
    world, recorder, tmp_path
):
    _rotator(world, recorder, tmp_path).rotate("napdms-app-key")
    assert _steps(world) == [
        ("set", {"secrets.rotation.napdms-app-key": "1", PIN: "0"}),
        ("up", "secrets rotate napdms-app-key"),
        *[("replaced", c) for c in GREEN],
        ("switch", "green"),
        ("set", {"services.napdms-backend.colours.live": "green"}),
        ("remove", [PIN.rsplit(".", 1)[0]]),
        ("up", "secrets rotate napdms-app-key: the old colours"),
        *[("replaced", c) for c in BLUE],
    ]


def test_after_a_blue_green_rotation_both_colours_hold_the_new_value_and_no_pin_is_left(
    world, recorder, tmp_path
):
    engine = FakeEngine(world)
    _rotator(world, recorder, tmp_path, engine).rotate("napdms-app-key")
    new = world.value("napdms-app-key", 1)
    assert {world.held[(c, "napdms-app-key")] for c in BLUE + GREEN} == {new}
    colours = engine.values()["services"]["napdms-backend"]["colours"]
    assert colours == {"live": "green", "blue": {}}, colours


def test_the_live_colour_is_not_replaced_before_the_proxy_switched_away_from_it(
    world, recorder, tmp_path
):
    _rotator(world, recorder, tmp_path).rotate("redis-password")
    steps = _steps(world)
    switch = steps.index(("switch", "green"))
    assert all(steps.index(("replaced", c)) > switch for c in BLUE), steps
    assert all(steps.index(("replaced", c)) < switch for c in GREEN), steps


def test_a_database_password_changes_the_role_before_the_switch_to_the_new_colour(
    world, recorder, tmp_path
):
    _rotator(world, recorder, tmp_path).rotate("napdms-db-password")
    psql = world.events.index(("exec", "napdms-dev-postgres-1", "psql"))
    assert psql < world.events.index(("switch", "green")), world.events
    assert world.roles["napdms"] == world.value("napdms-db-password", 1)


def test_a_failed_watch_switches_back_and_keeps_the_live_colour_pinned(world, recorder, tmp_path):
    world.not_ready_after_switch = True
    engine = FakeEngine(world)
    with pytest.raises(RotateError) as failed:
        _rotator(world, recorder, tmp_path, engine).rotate("napdms-app-key")
    assert [e for e in world.events if e[0] == "switch"] == [
        ("switch", "green"),
        ("switch", "blue"),
    ]
    assert "switched back to blue" in str(failed.value)
    assert "--resume" in str(failed.value)
    colours = engine.values()["services"]["napdms-backend"]["colours"]
    assert colours["blue"]["secrets"] == {"napdms-app-key": 0}
    assert colours.get("live", "blue") == "blue"
    assert world.held[(BLUE[0], "napdms-app-key")] == world.value("napdms-app-key", 0)
    assert recorder.records[-1]["result"] == "failed"


def test_an_idle_colour_that_does_not_turn_healthy_is_never_switched_to(world, recorder, tmp_path):
    world.unhealthy = set(GREEN)
    with pytest.raises(RotateError) as failed:
        _rotator(world, recorder, tmp_path).rotate("napdms-app-key")
    assert [e for e in world.events if e[0] == "switch"] == []
    assert "nothing switched, blue keeps serving" in str(failed.value)
    assert world.held[(BLUE[0], "napdms-app-key")] == world.value("napdms-app-key", 0)


def test_resume_after_a_failed_watch_switches_and_drops_the_pin(world, recorder, tmp_path):
    world.not_ready_after_switch = True
    engine = FakeEngine(world)
    with pytest.raises(RotateError):
        _rotator(world, recorder, tmp_path, engine).rotate("napdms-app-key")
    world.not_ready_after_switch = False
    world.events.clear()
    _rotator(world, recorder, tmp_path, engine).rotate("napdms-app-key", resume=True)
    assert [e for e in world.events if e[0] == "switch"] == [("switch", "green")]
    assert engine.values()["services"]["napdms-backend"]["colours"] == {
        "live": "green",
        "blue": {},
    }
    assert engine.values()["secrets"]["rotation"]["napdms-app-key"] == 1


def test_the_switch_of_a_rotation_is_journalled_like_a_deploys(world, recorder, tmp_path):
    _rotator(world, recorder, tmp_path).rotate("napdms-app-key")
    (switch,) = _journal(tmp_path).records()
    assert (switch.action, switch.from_colour, switch.to_colour, switch.result) == (
        "switch",
        "blue",
        "green",
        "ok",
    )
    assert switch.reason == "secrets rotate napdms-app-key"


def test_a_successful_rotation_is_recorded_with_its_counters_and_holders(world, recorder, tmp_path):
    _rotator(world, recorder, tmp_path).rotate("redis-password")
    assert recorder.records == [
        {
            "stack": "dev",
            "command": "rotate",
            "result": "ok",
            "service": None,
            "changes": {
                "secret": "redis-password",
                "holders": ["redis", "napdms-backend", "backup-agent"],
                "from": 0,
                "to": 1,
            },
            "reason": None,
        }
    ]


def test_resume_applies_the_counter_already_raised_without_raising_it_again(
    world, recorder, tmp_path
):
    engine = FakeEngine(world)
    engine.fail_up = ["docker daemon went away"]
    with pytest.raises(RotateError) as failed:
        _rotator(world, recorder, tmp_path, engine).rotate("redis-password")
    assert "--resume" in str(failed.value)
    world.events.clear()
    rotated = _rotator(world, recorder, tmp_path, engine).rotate("redis-password", resume=True)
    assert [
        e for e in world.events if e[0] == "set" and "secrets.rotation.redis-password" in e[1]
    ] == []
    assert (rotated.counter_from, rotated.counter_to) == (1, 1)
    assert world.files["redis-password"] == world.value("redis-password", 1)
    assert [r["result"] for r in recorder.records] == ["failed", "ok"]


# -- database passwords --------------------------------------------------------------------------


def test_a_database_password_is_changed_in_the_database_to_the_file_up_wrote(
    world, recorder, tmp_path
):
    old = world.roles["napdms"]
    _rotator(world, recorder, tmp_path).rotate("napdms-db-password")
    assert world.roles["napdms"] == world.files["napdms-db-password"] != old
    up = world.events.index(("up", "secrets rotate napdms-db-password"))
    psql = world.events.index(("exec", "napdms-dev-postgres-1", "psql"))
    assert up < psql, "the role must change after up wrote the new file, not before"


def test_the_superusers_password_is_changed_in_the_database_too(world, recorder, tmp_path):
    _rotator(world, recorder, tmp_path).rotate("postgres-password")
    assert world.roles["postgres"] == world.files["postgres-password"]
    assert recorder.records[-1]["service"] == "postgres"


def test_no_password_is_on_a_command_line_or_on_stdin(world, recorder, tmp_path):
    _rotator(world, recorder, tmp_path).rotate("napdms-db-password")
    values = set(world.files.values())
    for _, argv, stdin in world.execs:
        shown = " ".join(argv) + (stdin or b"").decode()
        assert not any(value in shown for value in values), argv


def test_clients_locked_out_before_the_role_changed_are_applied_again_after_it(
    world, recorder, tmp_path
):
    world.holders_fail_when_locked_out = True
    _rotator(world, recorder, tmp_path).rotate("napdms-db-password")
    kinds = [e[0] for e in world.events if e[0] != "replaced"]
    assert kinds[:4] == ["set", "up", "exec", "up"], world.events
    assert world.roles["napdms"] == world.files["napdms-db-password"]


def test_a_role_that_does_not_take_the_new_password_fails_the_rotation_and_is_recorded(
    world, recorder, tmp_path
):
    world.role_update_lost = True
    with pytest.raises(RotateError) as failed:
        _rotator(world, recorder, tmp_path).rotate("gitea-db-password")
    assert "role gitea does not log in to postgres with the new password" in str(failed.value)
    assert recorder.records[-1]["result"] == "failed"
    assert recorder.records[-1]["reason"] == str(failed.value)


def test_rocketchats_mongodb_password_is_changed_by_mongosh_as_root_from_the_files(
    world, recorder, tmp_path
):
    world.mongo_users["rocketchat"] = world.files["rocketchat-mongodb-password"]
    _rotator(world, recorder, tmp_path).rotate("rocketchat-mongodb-password")
    assert world.mongo_users["rocketchat"] == world.files["rocketchat-mongodb-password"]
    (update, login) = [argv for c, argv, _ in world.execs if c == "napdms-dev-mongodb-1"]
    assert (
        "auth('root', require('fs').readFileSync(\"/run/secrets/mongodb-root-password\""
        in (update[3])
    )
    assert not any(v in " ".join(update + login) for v in world.files.values())


def test_mongodbs_root_password_is_refused_as_no_file_keeps_the_old_one_to_log_in_with(
    world, recorder, tmp_path
):
    with pytest.raises(RotateError) as refused:
        _rotator(world, recorder, tmp_path).rotate("mongodb-root-password")
    assert refused.value.result == "refused"
    assert world.events == []


# -- the restic password -------------------------------------------------------------------------


def test_restic_rotation_ends_when_the_new_password_opens_and_the_old_no_longer_does(
    world, recorder, tmp_path
):
    rotated = _rotator(world, recorder, tmp_path).rotate("restic-password")
    assert world.restic_keys == {world.files["restic-password"]}
    assert any("open with the new password, not the old" in step for step in rotated.steps)
    checks = [argv for _, argv, _ in world.execs if argv[:2] == ["python3", "-c"]]
    assert checks == [["python3", "-c", RESTIC_CHECK]] * 2, "the agent rekeyed at its start"


def test_restic_rotation_asks_the_agent_to_rekey_when_it_has_not(world, recorder, tmp_path):
    world.agent_rekeys_at_start = False
    _rotator(world, recorder, tmp_path).rotate("restic-password")
    checks = [argv[3:] for _, argv, _ in world.execs if argv[:2] == ["python3", "-c"]]
    assert checks[-1] == ["rekey"]
    assert world.clock >= REKEY_AFTER_S
    assert world.restic_keys == {world.files["restic-password"]}


def test_a_new_restic_password_is_refused_while_an_earlier_rotation_is_unfinished(
    world, recorder, tmp_path
):
    world.restic_keys = {"the password before"}
    with pytest.raises(RotateError) as refused:
        _rotator(world, recorder, tmp_path).rotate("restic-password")
    assert refused.value.result == "refused"
    assert "--resume" in str(refused.value)
    assert [e for e in world.events if e[0] in ("set", "up")] == []


# -- refusals ------------------------------------------------------------------------------------


def test_a_rotation_is_refused_while_another_command_holds_the_deploy_lock(
    world, recorder, tmp_path
):
    holder = StackLock(tmp_path, "dev", "someone@example.org", "napdms-ops deploy", pid=os.getpid())
    with holder:
        with pytest.raises(RotateError) as refused:
            _rotator(world, recorder, tmp_path).rotate("redis-password")
    assert refused.value.result == "refused"
    assert "locked by someone@example.org" in str(refused.value)
    assert world.events == [], "nothing may change beside a deploy"
    assert recorder.records[-1]["result"] == "refused"


def test_an_unknown_secret_is_refused_naming_those_there_are(world, recorder, tmp_path):
    with pytest.raises(RotateError) as refused:
        _rotator(world, recorder, tmp_path).rotate("redis-pasword")
    assert str(refused.value).startswith("dev: secrets rotate redis-pasword: no service")
    assert "redis-password" in str(refused.value)
    assert world.events == []


def test_a_key_that_encrypts_data_at_rest_is_refused(world, recorder, tmp_path):
    with pytest.raises(RotateError) as refused:
        _rotator(world, recorder, tmp_path).rotate("n8n-encryption-key")
    assert refused.value.result == "refused"
    assert "credentials" in str(refused.value)
    assert world.events == []


# -- operator-set keys ---------------------------------------------------------------------------


@pytest.fixture
def staging(recorder) -> World:
    world = World("staging")
    FakeEngine(world).up("first up")
    world.roles = {role: world.files[_secret_of(role)] for role in ("postgres", "napdms")}
    world.events.clear()
    return world


def test_an_operator_set_key_is_stored_encrypted_from_the_value_given_and_applied(
    staging, recorder, tmp_path
):
    engine = FakeEngine(staging)
    _rotator(staging, recorder, tmp_path, engine).rotate("smtp-password", value=lambda: "n3w pw")
    assert engine.secrets_set == {"smtp_password": "n3w pw"}
    assert staging.events[:2] == [
        ("set-secret", "smtp_password"),
        ("up", "secrets rotate smtp-password"),
    ]
    assert staging.files["smtp-password"] == "n3w pw"
    assert "n3w pw" not in json.dumps(recorder.records)


def test_an_operator_value_of_the_wrong_form_is_refused_before_anything_changes(
    staging, recorder, tmp_path
):
    with pytest.raises(RotateError) as refused:
        _rotator(staging, recorder, tmp_path).rotate("alert-webhook-url", value=lambda: "not a url")
    assert refused.value.result == "refused"
    assert "not a url" not in str(refused.value)
    assert staging.events == []


# -- the command ---------------------------------------------------------------------------------


def test_the_rotate_command_exits_2_on_a_refusal_and_prints_one_line(
    world, recorder, tmp_path, monkeypatch
):
    monkeypatch.setattr(commands, "_engine", lambda stack: _SelectableEngine(world))
    monkeypatch.setattr(commands, "_runtime", lambda endpoint: FakeRuntime(world))
    monkeypatch.setattr(commands, "_record", recorder)
    monkeypatch.setattr(commands, "_lock", lambda stack: StackLock(tmp_path, stack, "a", "b"))
    monkeypatch.setattr(
        commands, "_deployer", lambda engine, say: _deployer(world, engine, tmp_path)
    )
    result = CliRunner().invoke(commands.secrets_app, ["rotate", "n8n-encryption-key", "-s", "dev"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1


def test_the_rotate_command_reports_the_counter_and_holders(world, recorder, tmp_path, monkeypatch):
    monkeypatch.setattr(commands, "_engine", lambda stack: _SelectableEngine(world))
    monkeypatch.setattr(commands, "_runtime", lambda endpoint: FakeRuntime(world))
    monkeypatch.setattr(commands, "_record", recorder)
    monkeypatch.setattr(commands, "_lock", lambda stack: StackLock(tmp_path, stack, "a", "b"))
    monkeypatch.setattr(
        commands, "_deployer", lambda engine, say: _deployer(world, engine, tmp_path)
    )
    result = CliRunner().invoke(
        commands.secrets_app, ["rotate", "grafana-admin-password", "-s", "dev"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "dev: grafana-admin-password rotated (rotation 0 -> 1); holders: grafana" in result.output
    )


class _SelectableEngine(FakeEngine):
    def select(self):
        pass


def test_a_rotation_the_trail_does_not_take_says_both_and_exits_1(world, tmp_path, monkeypatch):
    def refusing(*args, **kwargs):
        raise OSError("audit mirror unreachable")

    monkeypatch.setattr(commands, "_engine", lambda stack: _SelectableEngine(world))
    monkeypatch.setattr(commands, "_runtime", lambda endpoint: FakeRuntime(world))
    monkeypatch.setattr(commands, "_record", refusing)
    monkeypatch.setattr(commands, "_lock", lambda stack: StackLock(tmp_path, stack, "a", "b"))
    monkeypatch.setattr(
        commands, "_deployer", lambda engine, say: _deployer(world, engine, tmp_path)
    )
    result = CliRunner().invoke(commands.secrets_app, ["rotate", "redis-password", "-s", "dev"])
    assert result.exit_code == 1
    assert (
        "dev: redis-password rotated, but not in the audit trail (audit mirror unreachable); "
        "record it by hand"
    ) in result.output
    assert world.files["redis-password"] == world.value("redis-password", 1)

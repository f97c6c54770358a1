"""`secrets list`: each secret's kind, counter, age and due date, from Pulumi state where it can
be read, else from the audit trail, else unknown; never a value. State and trail here are
recorded shapes: a `pulumi stack export` resource entry and `TrailRecord`s."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from components.settings import load_stack, read_stack_file
from napdms_ops.secrets import commands
from napdms_ops.secrets.inventory import inventory
from napdms_ops.trail import TrailRecord

SECRET_SIG, SECRET_VALUE = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
URN = (
    "urn:pulumi:{stack}::nap-dms-platform::napdms:platform:Platform$"
    "napdms:secrets:GeneratedSecret$random:index/randomPassword:RandomPassword::{name}"
)


def _stack(name: str = "dev", secrets: dict | None = None):
    values, secret_keys = read_stack_file(name)
    if secrets is not None:
        values = {**values, "secrets": secrets}
    return load_stack(name, values, secret_keys)


def _password(stack: str, name: str, rotation: int, created: datetime) -> dict:
    """A RandomPassword as `pulumi stack export` shows it (Pulumi 3.x state, trimmed)."""
    return {
        "urn": URN.format(stack=stack, name=name),
        "custom": True,
        "type": "random:index/randomPassword:RandomPassword",
        "inputs": {"keepers": {"rotation": str(rotation)}, "length": 32, "special": False},
        "outputs": {
            "result": {
                "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                "ciphertext": "v1:abc",
            }
        },  # fmt: skip
        "created": created.isoformat().replace("+00:00", "Z"),
        "modified": created.isoformat().replace("+00:00", "Z"),
    }


def _record(seq: int, when: datetime, command: str, result: str = "ok", **changes) -> TrailRecord:
    return TrailRecord(
        seq=seq,
        time=when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        operator="ops@example.org",
        commit="abc123",
        dirty=False,
        stack="dev",
        command=command,
        service=None,
        changes=changes,
        result=result,
        reason=None,
        prev="0" * 64,
        hash="1" * 64,
    )


def _by_name(ages):
    return {age.name: age for age in ages}


def test_every_secret_the_stack_reads_is_listed_once_with_its_kind():
    ages = _by_name(inventory(_stack("staging"), [], None, NOW))
    assert ages["redis-password"].kind == "generated"
    assert ages["smtp-password"].kind == "operator-set"
    assert ages["smtp-password"].rotation is None
    assert "restic-password-previous" not in ages, "a previous value is no secret of its own"
    assert ages["napdms-db-password"].holders == ("postgres", "napdms-backend")


def test_the_listing_holds_no_secret_value():
    state = [_password("dev", "redis-password-value", 0, NOW - timedelta(days=3))]
    listed = json.dumps([a.as_json() for a in inventory(_stack(), [], state, NOW)])
    assert "v1:c2VjcmV0" not in listed


def test_state_gives_a_never_rotated_secret_its_creation_time():
    made = NOW - timedelta(days=10)
    state = [_password("dev", "redis-password-value", 0, made)]
    age = _by_name(inventory(_stack(), [], state, NOW))["redis-password"]
    assert (age.source, age.created, age.last_rotation) == ("state", made, None)
    assert age.age == timedelta(days=10)
    assert age.due == made + timedelta(days=90)


def test_state_gives_the_last_rotation_as_the_creation_of_the_slot_holding_the_counter():
    first, rotated = NOW - timedelta(days=200), NOW - timedelta(days=5)
    state = [
        _password("dev", "restic-password-value", 0, first),
        _password("dev", "restic-password-value-odd", 1, rotated),
    ]
    age = _by_name(inventory(_stack(secrets={"rotation": {"restic-password": 1}}), [], state, NOW))[
        "restic-password"
    ]
    assert (age.source, age.last_rotation, age.rotation) == ("state", rotated, 1)
    assert age.overdue is False


def test_without_state_the_trail_gives_the_first_up_and_the_latest_successful_rotation():
    first_up, rotated = NOW - timedelta(days=120), NOW - timedelta(days=20)
    records = [
        _record(0, first_up, "up"),
        _record(1, NOW - timedelta(days=60), "rotate", secret="redis-password", to=1),
        _record(2, rotated, "rotate", secret="redis-password", to=2),
        _record(3, NOW - timedelta(days=1), "rotate", "failed", secret="redis-password", to=3),
    ]
    ages = _by_name(inventory(_stack(), records, None, NOW))
    assert (ages["redis-password"].source, ages["redis-password"].last_rotation) == (
        "trail",
        rotated,
    )
    assert ages["gitea-secret-key"].created == first_up
    assert ages["gitea-secret-key"].overdue is True, "120 days without rotation, 90 allowed"


def test_state_is_preferred_to_the_trail():
    from_state = NOW - timedelta(days=2)
    records = [_record(0, NOW - timedelta(days=50), "up")]
    state = [_password("dev", "redis-password-value", 0, from_state)]
    age = _by_name(inventory(_stack(), records, state, NOW))["redis-password"]
    assert (age.source, age.created) == ("state", from_state)


def test_without_state_or_trail_times_are_unknown_and_nothing_is_called_due():
    ages = inventory(_stack(), [], None, NOW)
    assert {(a.source, a.age, a.due, a.overdue) for a in ages} == {("unknown", None, None, None)}


def test_a_secrets_own_maximum_age_sets_its_due_date():
    made = NOW - timedelta(days=40)
    state = [_password("dev", "redis-password-value", 0, made)]
    stack = _stack(secrets={"max_age_days": {"redis-password": 30}})
    age = _by_name(inventory(stack, [], state, NOW))["redis-password"]
    assert (age.max_age_days, age.due, age.overdue) == (30, made + timedelta(days=30), True)


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def recorded(monkeypatch):
    records = [
        _record(0, NOW - timedelta(days=100), "up"),
        _record(1, NOW - timedelta(days=3), "rotate", secret="redis-password", to=1),
    ]
    monkeypatch.setattr(commands, "_records", lambda stack: records)
    monkeypatch.setattr(commands, "_state", lambda stack: None)
    monkeypatch.setattr(commands, "_now", lambda: NOW)
    monkeypatch.setenv("COLUMNS", "200")


def test_list_json_gives_each_secrets_times_and_due_date(recorded):
    result = CliRunner().invoke(commands.secrets_app, ["list", "--stack", "dev", "--json"])
    assert result.exit_code == 0, result.output
    listed = {entry["name"]: entry for entry in json.loads(result.output)}
    assert listed["redis-password"] == {
        "name": "redis-password",
        "kind": "generated",
        "rotation": 0,
        "holders": ["redis", "napdms-backend", "backup-agent"],
        "created": "2026-08-28T12:00:00Z",
        "last_rotation": "2026-12-03T12:00:00Z",
        "source": "trail",
        "age_days": 3.0,
        "max_age_days": 90,
        "due": "2027-03-03T12:00:00Z",
        "overdue": False,
    }


def test_list_table_marks_overdue_secrets_and_says_how_to_rotate_them(recorded):
    result = CliRunner().invoke(commands.secrets_app, ["list", "--stack", "dev"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "gitea-secret-key" in line)
    assert "OVERDUE" in row
    redis = next(line for line in result.output.splitlines() if "redis-password" in line)
    assert "OVERDUE" not in redis
    assert "napdms-ops secrets rotate <name> --stack dev" in result.output


def test_list_refuses_an_unknown_stack_with_exit_2():
    result = CliRunner().invoke(commands.secrets_app, ["list", "--stack", "qa"])
    assert result.exit_code == 2
    assert "unknown stack 'qa'" in result.output


def test_list_says_why_ages_are_unknown(monkeypatch):
    monkeypatch.setattr(commands, "_records", lambda stack: [])
    monkeypatch.setattr(commands, "_state", lambda stack: None)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(commands.secrets_app, ["list", "--stack", "dev"])
    assert result.exit_code == 0, result.output
    assert "dev: 14 secrets of unknown age: no Pulumi state could be read" in result.output

"""`audit-log show` filters the trail by stack, service, command and time, as a table or JSON."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from napdms_ops.trail.commands import audit_log_app
from napdms_ops.trail.show import moment, select, table
from napdms_ops.trail.store import Trail, trail_path

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _append(state, stack, command, service, days_ago):
    time = NOW - timedelta(days=days_ago)
    return Trail(trail_path(state, stack), None).append(
        {
            "time": time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "operator": "ops",
            "commit": "abc",
            "dirty": False,
            "stack": stack,
            "command": command,
            "service": service,
            "changes": {},
            "result": "ok",
            "reason": None,
        }
    )


@pytest.fixture
def state(tmp_path):
    """Trails of dev and prod: deploys, a restore and an up over ten days."""
    _append(tmp_path, "dev", "deploy", "gitea", 10)
    _append(tmp_path, "dev", "up", None, 3)
    _append(tmp_path, "prod", "deploy", "gitea", 5)
    _append(tmp_path, "prod", "restore", "postgres", 2)
    _append(tmp_path, "prod", "deploy", "n8n", 1)
    return tmp_path


def _prod(state):
    return Trail(trail_path(state, "prod"), None).records()


def test_service_and_command_filters_combine(state):
    chosen = select(_prod(state), service="gitea", command="deploy")
    assert [(r.service, r.command) for r in chosen] == [("gitea", "deploy")]


def test_since_is_inclusive_and_until_exclusive(state):
    chosen = select(_prod(state), since=NOW - timedelta(days=5), until=NOW - timedelta(days=1))
    assert [r.seq for r in chosen] == [1, 2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("12h", NOW - timedelta(hours=12)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T09:30Z", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        ("2026-12-01T10:30+01:00", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_times_are_iso_8601_or_a_span_before_now(value, expected):
    assert moment(value, NOW) == expected


def test_a_time_that_is_neither_says_which_forms_work():
    with pytest.raises(ValueError, match="ISO 8601.*7d"):
        moment("last tuesday", NOW)


def test_the_table_has_one_row_per_record(state):
    assert table(_prod(state)).row_count == 3


def _show(state, *args):
    return CliRunner().invoke(audit_log_app, ["show", *args], env={"NAPDMS_STATE_DIR": str(state)})


def test_show_json_filters_by_stack_command_and_relative_time(state):
    result = _show(state, "--stack", "prod", "--command", "deploy", "--since", "3000d", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [(r["stack"], r["service"]) for r in shown] == [("prod", "gitea"), ("prod", "n8n")]


def test_show_without_a_stack_reads_every_stack(state):
    result = _show(state, "--service", "gitea", "--json")
    assert [r["stack"] for r in json.loads(result.stdout)] == ["dev", "prod"]


def test_show_with_a_bad_time_exits_2_naming_it(state):
    result = _show(state, "--since", "yesterday-ish")
    assert result.exit_code == 2 and "'yesterday-ish'" in result.stderr

"""A stack's lifecycle: the allowed transitions, what status derives from health and drift, the
operator's retire and revive, a restore's recovery marker, and an audit record per transition."""

import itertools
import json
import os
import subprocess
import sys

import pytest

from napdms_ops.status.drift_input import Drift
from napdms_ops.status.lifecycle import (
    TRANSITIONS,
    LifecycleError,
    Lifecycles,
    Signals,
    allowed,
    derive,
    recovering,
    refuse_if_retired,
)

STATES = tuple(TRANSITIONS)
NO_DRIFT = Drift("none", "2026-12-06T08:00:00Z")


class Trail:
    """Collects what the lifecycle records (the trail's `record` signature)."""

    def __init__(self, fails: bool = False):
        self.records: list[dict] = []
        self.fails = fails

    def __call__(self, stack, command, result, *, changes=None, reason=None, environ=None):
        if self.fails:
            raise OSError("the audit disk is full")
        self.records.append(
            {"stack": stack, "command": command, "result": result, "changes": changes}
        )


def _signals(health=None, declared=4, missing=0, drift=NO_DRIFT, recovery=None) -> Signals:
    return Signals(
        health or {"redis": "healthy", "postgres": "healthy"}, declared, missing, drift, recovery
    )


def _lifecycles(tmp_path, trail=None) -> Lifecycles:
    return Lifecycles(tmp_path, record=trail or Trail(), environ={})


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("provisioning", "ready"),
        ("provisioning", "degraded"),
        ("provisioning", "recovering"),
        ("ready", "degraded"),
        ("ready", "recovering"),
        ("degraded", "ready"),
        ("recovering", "ready"),
        ("recovering", "degraded"),
        ("ready", "retired"),
        ("retired", "provisioning"),
    ],
)
def test_the_lifecycle_allows(before, after):
    assert allowed(before, after)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("ready", "provisioning"),
        ("degraded", "provisioning"),
        ("retired", "ready"),
        ("retired", "degraded"),
        ("retired", "recovering"),
    ],
)
def test_the_lifecycle_refuses(before, after):
    assert not allowed(before, after)


def test_derivation_never_proposes_a_transition_the_lifecycle_refuses():
    healths = [{"a": "healthy"}, {"a": "degraded"}, {"a": "unhealthy"}]
    drifts = [NO_DRIFT, Drift("major", "t", 1, 1), Drift("unknown")]
    for current, health, drift, missing in itertools.product(
        (None, *STATES), healths, drifts, (0, 1, 4)
    ):
        target, _ = derive(current, _signals(health, 4, missing, drift))
        assert target == current or allowed(current, target), (current, target)


def test_a_new_stack_without_any_container_is_provisioning():
    assert derive(None, _signals(missing=4))[0] == "provisioning"


def test_a_stack_that_was_ready_and_lost_every_container_is_degraded():
    assert derive("ready", _signals(missing=4)) == (
        "degraded",
        "every declared container is missing",
    )


def test_a_provisioning_stack_stays_so_while_containers_are_still_missing():
    assert derive("provisioning", _signals(missing=1))[0] == "provisioning"


def test_all_healthy_without_major_drift_is_ready():
    assert derive("degraded", _signals(drift=Drift("minor", "t", 2, 0)))[0] == "ready"


def test_an_unhealthy_service_makes_the_stack_degraded_and_names_it():
    state, reason = derive("ready", _signals({"redis": "unhealthy", "postgres": "healthy"}))
    assert (state, reason) == ("degraded", "redis unhealthy")


def test_a_degraded_service_means_the_stack_is_not_ready():
    assert derive("ready", _signals({"postgres": "degraded"}))[0] == "degraded"


def test_major_drift_makes_the_stack_degraded():
    state, reason = derive("ready", _signals(drift=Drift("major", "t", 3, 2)))
    assert (state, "major drift" in reason) == ("degraded", True)


def test_an_unknown_drift_is_said_not_taken_for_none():
    state, reason = derive("degraded", _signals(drift=Drift("unknown")))
    assert (state, "drift unknown" in reason) == ("ready", True)


def test_a_retired_stack_stays_retired_whatever_it_looks_like():
    assert derive("retired", _signals({"redis": "unhealthy"}))[0] == "retired"


def test_the_first_observation_is_stored_and_recorded_from_nothing(tmp_path):
    trail = Trail()
    after = _lifecycles(tmp_path, trail).observe("dev", _signals())
    stored = json.loads((tmp_path / "lifecycle" / "dev.json").read_text())
    assert (after.state, stored["state"]) == ("ready", "ready")
    assert trail.records == [
        {
            "stack": "dev",
            "command": "lifecycle",
            "result": "ok",
            "changes": {"from": None, "to": "ready"},
        }
    ]


def test_a_change_is_recorded_with_from_and_to(tmp_path):
    trail = Trail()
    lifecycles = _lifecycles(tmp_path, trail)
    lifecycles.observe("dev", _signals())
    lifecycles.observe("dev", _signals({"redis": "unhealthy"}))
    assert trail.records[-1]["changes"] == {"from": "ready", "to": "degraded"}


def test_no_change_records_nothing(tmp_path):
    trail = Trail()
    lifecycles = _lifecycles(tmp_path, trail)
    lifecycles.observe("dev", _signals())
    lifecycles.observe("dev", _signals())
    assert len(trail.records) == 1


def test_a_transition_the_trail_cannot_record_does_not_happen(tmp_path):
    _lifecycles(tmp_path).observe("dev", _signals())
    with pytest.raises(OSError):
        _lifecycles(tmp_path, Trail(fails=True)).observe("dev", _signals({"redis": "unhealthy"}))
    assert _lifecycles(tmp_path).current("dev").state == "ready"


def test_retire_then_revive_goes_back_to_provisioning(tmp_path):
    trail = Trail()
    lifecycles = _lifecycles(tmp_path, trail)
    lifecycles.observe("staging", _signals())
    lifecycles.retire("staging", "moved to the new NAS")
    after = lifecycles.revive("staging", "the NAS is back")
    assert after.state == "provisioning"
    assert [r["changes"]["to"] for r in trail.records] == ["ready", "retired", "provisioning"]


def test_retiring_a_retired_stack_is_refused_in_one_line_and_recorded(tmp_path):
    trail = Trail()
    lifecycles = _lifecycles(tmp_path, trail)
    lifecycles.retire("staging", "gone")
    with pytest.raises(LifecycleError) as refused:
        lifecycles.retire("staging", "again")
    assert trail.records[-1]["result"] == "refused"
    assert str(refused.value).startswith("staging: already retired") and "\n" not in str(
        refused.value
    )


def test_reviving_a_stack_that_is_not_retired_is_refused_and_recorded(tmp_path):
    trail = Trail()
    lifecycles = _lifecycles(tmp_path, trail)
    lifecycles.observe("prod", _signals())
    with pytest.raises(LifecycleError, match="only a retired stack can be revived"):
        lifecycles.revive("prod", "why not")
    assert (trail.records[-1]["result"], lifecycles.current("prod").state) == ("refused", "ready")


def test_a_restore_marks_the_stack_recovering_until_it_ends(tmp_path):
    lifecycles = _lifecycles(tmp_path)
    lifecycles.observe("prod", _signals())
    lifecycles.begin_recovery("prod", "restore --force of run 42")
    during = lifecycles.observe("prod", _signals(recovery=lifecycles.recovery("prod")))
    lifecycles.end_recovery("prod")
    after = lifecycles.observe("prod", _signals(recovery=lifecycles.recovery("prod")))
    assert (during.state, after.state) == ("recovering", "ready")


def test_a_restore_into_a_retired_stack_is_refused(tmp_path):
    lifecycles = _lifecycles(tmp_path)
    lifecycles.retire("prod", "decommissioned")
    with pytest.raises(LifecycleError, match="revive"):
        lifecycles.begin_recovery("prod", "restore")


def test_the_marker_of_a_restore_whose_process_is_gone_is_dropped(tmp_path):
    lifecycles = _lifecycles(tmp_path)
    lifecycles.begin_recovery("prod", "restore")
    marker = tmp_path / "lifecycle" / "prod.recovering.json"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    data = json.loads(marker.read_text()) | {"pid": int(gone.stdout)}
    marker.write_text(json.dumps(data))
    assert (lifecycles.recovery("prod"), marker.exists()) == (None, False)


def test_the_marker_of_a_running_restore_is_kept(tmp_path):
    lifecycles = _lifecycles(tmp_path)
    lifecycles.begin_recovery("prod", "restore")
    assert lifecycles.recovery("prod").pid == os.getpid()


def test_recovering_ends_the_recovery_also_when_the_restore_fails(tmp_path):
    environ = {"NAPDMS_STATE_DIR": str(tmp_path), "NAPDMS_OPERATOR": "ops@example.org"}
    with pytest.raises(RuntimeError), recovering("dev", "restore --force", environ):
        assert (tmp_path / "lifecycle" / "dev.recovering.json").exists()
        raise RuntimeError("restic exited 1")
    assert not (tmp_path / "lifecycle" / "dev.recovering.json").exists()


def test_transitions_land_in_the_real_audit_trail(tmp_path):
    from napdms_ops.trail import records

    environ = {"NAPDMS_STATE_DIR": str(tmp_path), "NAPDMS_OPERATOR": "ops@example.org"}
    lifecycles = Lifecycles(tmp_path, environ=environ)
    lifecycles.observe("dev", _signals())
    lifecycles.retire("dev", "end of project")
    trail = [(r.command, r.result, r.changes) for r in records("dev", environ)]
    assert trail == [
        ("lifecycle", "ok", {"from": None, "to": "ready"}),
        ("lifecycle", "ok", {"from": "ready", "to": "retired"}),
    ]


def test_a_recovery_the_trail_cannot_record_leaves_no_marker(tmp_path):
    with pytest.raises(OSError):
        _lifecycles(tmp_path, Trail(fails=True)).begin_recovery("prod", "restore")
    assert _lifecycles(tmp_path).recovery("prod") is None


def test_a_retired_stack_refuses_every_change_in_one_line(tmp_path):
    _lifecycles(tmp_path).retire("prod", "moved to the new NAS")
    with pytest.raises(LifecycleError) as refused:
        refuse_if_retired("prod", "up", {"NAPDMS_STATE_DIR": str(tmp_path)})
    message = str(refused.value)
    assert message.startswith("prod: retired since") and "lifecycle revive" in message
    assert "\n" not in message


def test_a_stack_that_is_not_retired_takes_changes(tmp_path):
    _lifecycles(tmp_path).observe("prod", _signals())
    assert refuse_if_retired("prod", "up", {"NAPDMS_STATE_DIR": str(tmp_path)}) is None


def test_up_on_a_retired_stack_runs_no_pulumi(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from napdms_ops import cli

    _lifecycles(tmp_path).retire("staging", "replaced by prod")
    monkeypatch.setenv("NAPDMS_STATE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(cli, "deploy_up", lambda *args: calls.append(args) or 0)
    result = CliRunner().invoke(cli.app, ["up", "--stack", "staging", "--yes"])
    assert (result.exit_code, calls) == (2, [])

"""Releases no user notices (issue 14), for real: the ops package's flows (`Deployer`) drive the
real Caddy and the real engine while 50 browser-like clients use the site through the proxy.

One stack for the module (`deploylive`: the proxy, NAP-DMS backend in two colours, Gitea held
behind the proxy; the program's declarations applied by `ReplayEngine` as `pulumi up` would),
the scenarios in order: a blue-green deploy, a rollback, a broken version refused while a second
deploy is refused by the lock, a version that fails after the switch rolled back on its own, a
stateful restart behind the proxy. Assertions are on what the users saw (`tests/live/load.py`),
on the containers and the proxy's running config, and on the audit trail's records.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

import pytest

from components.catalog.proxy import CADDYFILE, RELOAD
from components.hardened_service import reload_command
from napdms_ops.release.deploy import Windows
from napdms_ops.release.journal import AuditRecord
from napdms_ops.release.lock import LockHeld
from napdms_ops.trail.verify import walk as chain_breaks
from napdms_ops.workstation.state import commit
from tests.live.load import Summary
from tests.live.release_engine import OPERATOR, Rig, rig

STACK = "deploylive"
"""Its own stack name: its containers never collide with another live test's."""
BACKEND = "napdms-backend"
HELD = "gitea"
WINDOWS = Windows(drain_s=5.0, watch_s=3.0, check_s=0.5, poll_s=0.2)
"""Short windows keep the module within a few minutes; the fails-later case passes its own."""
FAILS_LATER_WATCH_S = 20.0
HELD_TAG = "1.25.4-rootless"
AUDIT_FIELDS = set(AuditRecord.model_fields)
"""An audit record's fields (the unit tests pin them to the issue's contract)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with rig(STACK, tmp_path_factory.mktemp("napdms-state"), WINDOWS) as made:
        proxy = made.container("proxy-1")
        yield made, (proxy.id, proxy.attrs["State"]["StartedAt"])


def _served(rig_: Rig, replica: str) -> dict:
    """What a replica answers (version, host), asked from inside the proxy."""
    code, output = rig_.container("proxy-1").exec_run(["wget", "-qO-", f"http://{replica}/version"])
    assert code == 0, output
    return json.loads(output)


def _proxied_upstreams(rig_: Rig, site: str) -> set[str]:
    """The upstreams Caddy's running config routes `site` to (admin API, inside the proxy)."""
    code, output = rig_.container("proxy-1").exec_run(
        ["wget", "-qO-", "http://127.0.0.1:2019/config/apps/http/servers"]
    )
    assert code == 0, output
    dials: set[str] = set()

    def walk(node, in_site: bool) -> None:
        if isinstance(node, dict):
            hosts = [h for m in node.get("match", []) for h in m.get("host", [])]
            in_site = in_site or site in hosts
            if in_site and node.get("handler") == "reverse_proxy":
                dials.update(u["dial"] for u in node.get("upstreams", []))
            for value in node.values():
                walk(value, in_site)
        elif isinstance(node, list):
            for value in node:
                walk(value, in_site)

    walk(json.loads(output), False)
    return dials


def _identity(rig_: Rig, replica: str) -> tuple[str, str]:
    container = rig_.container(replica)
    return container.id, container.attrs["State"]["StartedAt"]


def _records(rig_: Rig) -> list[AuditRecord]:
    return rig_.journal().records()


def _after(summary: Summary, moment: float) -> Summary:
    return summary.between(moment, float("inf"))


# Blue-green ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(stack):
    """1.0.0 (blue, live) -> 1.0.1 (green) under load."""
    rig_, _ = stack
    earlier = len(rig_.engine.history)
    with rig_.load(BACKEND) as load:
        outcome = rig_.deployer().deploy(BACKEND, "1.0.1", watch_s=WINDOWS.watch_s)
        returned = time.monotonic()
        time.sleep(2)
    summary = load.summary()
    print(f"blue-green deploy: {outcome.timings}; users: {summary.describe()}")
    return outcome, summary, returned, rig_.engine.history[earlier:]


def test_blue_green_deploy_succeeds(deployed):
    outcome, _, _, _ = deployed
    assert (outcome.result, outcome.reason) == ("ok", None)
    assert (outcome.from_colour, outcome.to_colour) == ("blue", "green")


def test_blue_green_deploy_fails_no_request(deployed):
    _, summary, _, _ = deployed
    assert summary.requests > 1000 and summary.failed == 0, summary.describe()


def test_after_the_deploy_every_user_gets_the_new_version(deployed, stack):
    rig_, _ = stack
    _, summary, returned, _ = deployed
    assert _after(summary, returned).versions().keys() == {"1.0.1"}
    assert _proxied_upstreams(rig_, rig_.site(BACKEND)) == {"napdms-backend-green-1:8000"}


def test_the_stack_records_the_switch_by_a_proxy_reload_not_a_replacement(deployed, stack):
    rig_, _ = stack
    _, _, _, ups = deployed
    proxy = f"{rig_.prefix}-proxy-1"
    assert any(f"{rig_.prefix}-proxy-init" in up.replaced for up in ups), "no new Caddyfile"
    assert any(reload_command(proxy, RELOAD) in up.commands for up in ups), "no reload ran"
    assert not any(proxy in up.replaced for up in ups)


def test_the_running_proxy_config_is_the_one_the_stack_declares(deployed, stack):
    rig_, _ = stack
    proxy = rig_.container("proxy-1")
    code, adapted = proxy.exec_run(["caddy", "adapt", "--config", CADDYFILE])
    assert code == 0, adapted
    code, running = proxy.exec_run(["wget", "-qO-", "http://127.0.0.1:2019/config/"])
    assert code == 0, running
    assert json.loads(running) == json.loads(adapted)


def test_the_old_colour_keeps_running_idle_for_a_rollback(deployed, stack):
    rig_, _ = stack
    blue = rig_.container("napdms-backend-blue-1")
    assert blue.status == "running"
    assert _served(rig_, "napdms-backend-blue-1:8000")["version"] == "1.0.0"


# Rollback --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rolled_back(deployed, stack):
    """Back from green (1.0.1) to blue (1.0.0) under load."""
    rig_, _ = stack
    replicas = ("napdms-backend-blue-1", "napdms-backend-green-1")
    before = {r: _identity(rig_, r) for r in replicas}
    with rig_.load(BACKEND) as load:
        started = time.monotonic()
        outcome = rig_.deployer().rollback(BACKEND)
        returned = time.monotonic()
        time.sleep(2)
    summary = load.summary()
    after = {r: _identity(rig_, r) for r in replicas}
    print(f"rollback: {outcome.timings} in {returned - started:.2f} s; users: {summary.describe()}")
    return outcome, summary, returned, before, after


def test_rollback_succeeds_and_serves_the_previous_version(rolled_back, stack):
    rig_, _ = stack
    outcome, summary, returned, _, _ = rolled_back
    assert (outcome.result, outcome.to_colour) == ("ok", "blue")
    assert _after(summary, returned).versions().keys() == {"1.0.0"}
    assert _proxied_upstreams(rig_, rig_.site(BACKEND)) == {"napdms-backend-blue-1:8000"}


def test_rollback_fails_no_request(rolled_back):
    _, summary, _, _, _ = rolled_back
    assert summary.failed == 0, summary.describe()


def test_rollback_starts_no_container(rolled_back):
    _, _, _, before, after = rolled_back
    assert after == before


# A broken version, and a second deploy meanwhile ------------------------------------------------


@pytest.fixture(scope="module")
def broken(rolled_back, stack):
    """A deploy of `broken` (never healthy) under load; meanwhile another operator deploys."""
    rig_, _ = stack
    result: dict = {}
    with rig_.load(BACKEND) as load:
        first = threading.Thread(
            target=lambda: result.update(outcome=rig_.deployer().deploy(BACKEND, "broken"))
        )
        first.start()
        deadline = time.monotonic() + 10
        while rig_.lock().path.exists() is False and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            rig_.deployer(operator="second-operator@nap-dms.localhost").deploy(BACKEND, "1.0.1")
        except LockHeld as error:
            result["second"] = error
        first.join()
        returned = time.monotonic()
        time.sleep(1)
    summary = load.summary()
    print(f"broken: {result['outcome'].reason}; users: {summary.describe()}")
    return result, summary, returned


def test_a_broken_version_is_refused_and_nothing_switches(broken, stack):
    rig_, _ = stack
    result, summary, returned = broken
    outcome = result["outcome"]
    assert outcome.result == "refused" and "napdms-backend-green-1" in outcome.reason
    assert summary.versions().keys() == {"1.0.0"}
    assert _proxied_upstreams(rig_, rig_.site(BACKEND)) == {"napdms-backend-blue-1:8000"}


def test_while_a_broken_version_starts_no_request_fails(broken):
    _, summary, _ = broken
    assert summary.failed == 0, summary.describe()


def test_a_second_deploy_is_refused_by_the_lock_naming_its_holder(broken):
    result, _, _ = broken
    error = result.get("second")
    assert isinstance(error, LockHeld), "the second deploy was not refused by the lock"
    assert OPERATOR in str(error) and STACK in str(error) and " since " in str(error)


# A version that fails after the switch --------------------------------------------------------


@pytest.fixture(scope="module")
def fails_later(broken, stack):
    """`fails-later` switched live, then rolled back by the watch window."""
    rig_, _ = stack
    with rig_.load(BACKEND) as load:
        outcome = rig_.deployer().deploy(BACKEND, "fails-later", watch_s=FAILS_LATER_WATCH_S)
        returned = time.monotonic()
        time.sleep(2)
    summary = load.summary()
    switches = [r for r in _records(rig_) if r.action == "switch"][-2:]
    print(f"fails-later: {outcome.reason} {outcome.timings}; users: {summary.describe()}")
    return outcome, summary, returned, switches, load


def test_a_version_failing_after_the_switch_is_rolled_back_with_the_reason(fails_later, stack):
    rig_, _ = stack
    outcome, summary, returned, _, _ = fails_later
    assert outcome.result == "rolled-back" and "switched back to blue" in outcome.reason
    assert _after(summary, returned).versions().keys() == {"1.0.0"}
    assert _after(summary, returned).failed == 0
    assert _proxied_upstreams(rig_, rig_.site(BACKEND)) == {"napdms-backend-blue-1:8000"}


def test_failures_happen_only_between_the_switch_and_the_rollback(fails_later):
    _, summary, _, switches, load = fails_later
    there, back = switches
    assert (there.to_colour, back.to_colour) == ("green", "blue") and back.reason
    switched = load.monotonic_of(datetime.fromisoformat(there.time))
    returned = load.monotonic_of(datetime.fromisoformat(back.time))
    assert summary.failed > 0, "fails-later never failed: the case tested nothing"
    late = [s for s in summary.failures if not switched - 1 <= s.start <= returned + 1]
    assert not late, f"{len(late)} failures outside the watch window, e.g. {late[:3]}"
    print(f"fails-later: {summary.failed} failed in {returned - switched:.2f} s before rollback")


# Stateful behind the proxy --------------------------------------------------------------------


@pytest.fixture(scope="module")
def held(fails_later, stack):
    """Gitea (one instance per volume) replaced while the proxy holds its requests."""
    rig_, _ = stack
    before = _identity(rig_, "gitea-1")
    with rig_.load(HELD) as load:
        started = time.monotonic()
        outcome = rig_.deployer().deploy(HELD, HELD_TAG, watch_s=WINDOWS.watch_s)
        returned = time.monotonic()
        time.sleep(1)
    summary = load.summary()
    gap = summary.longest_gap_s(started, returned)
    print(f"held: {outcome.timings}, users' longest gap {gap} s; {summary.describe()}")
    return outcome, summary, gap, before


def test_a_stateful_service_restarts_behind_the_proxy_without_failed_requests(held, stack):
    rig_, _ = stack
    outcome, summary, gap, before = held
    assert (outcome.result, outcome.strategy) == ("ok", "held")
    assert _identity(rig_, "gitea-1") != before
    assert summary.failed == 0, summary.describe()
    assert 0 < gap < 30, f"the users' gap was {gap} s"
    assert summary.versions().get(HELD_TAG), "the new version never answered"


# Across everything ------------------------------------------------------------------------------


def test_every_action_has_its_audit_record(held, stack):
    rig_, _ = stack
    records = _records(rig_)
    deploys = [(r.action, r.service, r.result) for r in records if r.action != "switch"]
    assert deploys == [
        ("deploy", BACKEND, "ok"),
        ("rollback", BACKEND, "ok"),
        ("deploy", BACKEND, "refused"),
        ("deploy", BACKEND, "rolled-back"),
        ("deploy", HELD, "ok"),
    ]
    switches = [(r.from_colour, r.to_colour) for r in records if r.action == "switch"]
    assert switches == [("blue", "green"), ("green", "blue"), ("blue", "green"), ("green", "blue")]
    for record in records:
        assert datetime.fromisoformat(record.time).utcoffset().total_seconds() == 0
        assert (record.operator, record.stack) == (OPERATOR, STACK)
        assert record.commit == commit() and record.duration_s >= 0
        assert (record.reason is None) == (record.result == "ok") or record.action == "switch"
        blue_green = record.strategy == "blue-green"
        assert (record.from_colour is not None) == blue_green, record
        assert record.to_digest, record


def test_each_audit_line_holds_exactly_the_contracts_fields(held, stack):
    rig_, _ = stack
    journal = rig_.journal()
    records = journal.records()
    assert records and all(set(r.model_dump()) == AUDIT_FIELDS for r in records)


def test_the_audit_lines_form_one_unbroken_chain(held, stack):
    rig_, _ = stack
    lines = rig_.journal().path.read_bytes().splitlines()
    assert lines and chain_breaks(lines) == []


def test_the_proxy_was_never_replaced(held, stack):
    rig_, proxy_before = stack
    proxy = rig_.container("proxy-1")
    assert (proxy.id, proxy.attrs["State"]["StartedAt"]) == proxy_before
    assert proxy.attrs["RestartCount"] == 0

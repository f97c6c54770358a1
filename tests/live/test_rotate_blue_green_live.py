"""A secret of a blue-green service rotated with no request lost, for real: the ops package's
`Rotator` (with the release flows' switch) on the real engine and the real Caddy while 50
browser-like clients use the site through the proxy.

Stack `rotatelive` (the deploy test's rig: the proxy, NAP-DMS backend in two colours on the test
application, Gitea; the program's declarations applied by `ReplayEngine` as `pulumi up` would).
NAP-DMS backend's app key is rotated: the idle colour gets the new value while the live one is
pinned at the old, the proxy switches, then the old colour takes the new value too.
"""

from __future__ import annotations

import functools
import time

import pytest

from napdms_ops.declared import mock_password
from napdms_ops.release.deploy import Windows
from napdms_ops.secrets.rotate import Rotator
from napdms_ops.trail import record
from tests.live.release_engine import Rig, rig

STACK = "rotatelive"
"""Its own stack name: its containers never collide with another live test's."""
BACKEND = "napdms-backend"
SECRET = "napdms-app-key"
WINDOWS = Windows(drain_s=5.0, watch_s=3.0, check_s=0.5, poll_s=0.2)


def _held(rig_: Rig, replica: str) -> str:
    """The app key in `replica`'s file, read as the service user."""
    code, output = rig_.container(replica).exec_run(["cat", f"/run/secrets/{SECRET}"])
    assert code == 0, output
    return output.decode()


def _identity(rig_: Rig, replica: str) -> str:
    return rig_.container(replica).id


@pytest.fixture(scope="module")
def rotated(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("napdms-rotate-state")
    with rig(STACK, state_dir, WINDOWS) as rig_:
        before = {r: _identity(rig_, r) for r in (f"{BACKEND}-blue-1", f"{BACKEND}-green-1")}
        old = _held(rig_, f"{BACKEND}-blue-1")
        rotator = Rotator(
            rig_.engine,
            rig_.runtime,
            rig_.lock(command="napdms-ops secrets rotate"),
            functools.partial(record, environ={"NAPDMS_STATE_DIR": str(state_dir)}),
            rig_.deployer(),
            health_timeout_s=60,
        )
        started = time.monotonic()
        with rig_.load(BACKEND) as load:
            result = rotator.rotate(SECRET)
            seconds = time.monotonic() - started
            time.sleep(2)
        summary = load.summary()
        print(f"rotation of {SECRET}: {seconds:.1f} s; users: {summary.describe()}")
        after = {r: _identity(rig_, r) for r in before}
        held = {r: _held(rig_, r) for r in before}
        again = len(rig_.engine.history)
        rig_.engine.up("the same config again")
        yield rig_, result, summary, old, held, before, after, rig_.engine.history[again:]


def test_rotating_a_blue_green_services_secret_fails_no_request(rotated):
    _, _, summary, *_ = rotated
    assert summary.requests > 500 and summary.failed == 0, summary.describe()


def test_both_colours_hold_the_new_value_and_were_replaced(rotated):
    _, _, _, old, held, before, after, _ = rotated
    assert set(held.values()) == {mock_password(f"{SECRET}-value-odd")} != {old}
    assert all(before[r] != after[r] for r in before), "a colour kept its old container"


def test_the_new_colour_serves_and_no_pin_is_left(rotated):
    rig_, result, *_ = rotated
    colours = rig_.engine.values()["services"][BACKEND]["colours"]
    assert colours["live"] == "green"
    assert not colours.get("blue", {}).get("secrets"), colours
    assert f"{BACKEND}: green (new value) live, blue unpinned" in result.steps


def test_an_up_after_the_rotation_changes_nothing(rotated):
    *_, ups = rotated
    (up,) = ups
    assert (up.replaced, up.commands, up.error) == ([], [], None)

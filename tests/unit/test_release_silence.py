"""Alerts of what a deploy takes down on purpose are silenced first, and only those."""

from datetime import UTC, datetime

import pytest

from napdms_ops.release.runtime import ContainerState
from napdms_ops.release.silence import AlertmanagerSilences, SilenceError, silence_body
from tests.unit.release_fakes import World

START = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def _silences(world: World) -> list[tuple]:
    return [event[1] for event in world.events if event[0] == "silence"]


def test_a_silence_matches_the_stack_service_and_colour_exactly():
    body = silence_body("prod", "napdms-backend", "green", START, 90, "ops@x", "deploy")
    assert body["matchers"] == [
        {"name": "stack", "value": "prod", "isRegex": False, "isEqual": True},
        {"name": "service", "value": "napdms-backend", "isRegex": False, "isEqual": True},
        {"name": "colour", "value": "green", "isRegex": False, "isEqual": True},
    ]
    assert (body["startsAt"], body["endsAt"]) == ("2026-12-06T06:00:00Z", "2026-12-06T06:01:30Z")


def test_a_silence_without_colour_covers_the_whole_service():
    body = silence_body("prod", "gitea", None, START, 60, "ops@x", "deploy")
    assert [m["name"] for m in body["matchers"]] == ["stack", "service"]


def test_a_blue_green_deploy_silences_the_idle_colour_before_starting_it(world):
    world.deployer().deploy("napdms-backend", "1.0.1")
    assert [(s, c) for s, c, _ in _silences(world)] == [("napdms-backend", "green")]
    kinds = world.kinds()
    assert kinds.index("silence") < kinds.index("up")


def test_a_held_deploy_silences_the_service_before_replacing_it(world):
    world.deployer().deploy("gitea", "1.24.7")
    assert [(s, c) for s, c, _ in _silences(world)] == [("gitea", None)]
    assert world.kinds().index("silence") < world.kinds().index("up")


def test_a_failed_silence_does_not_stop_the_deploy(world):
    world.silence_fails = "alertmanager: connection refused"
    outcome = world.deployer().deploy("napdms-backend", "1.0.1")
    assert outcome.result == "ok"


class _Runtime:
    def __init__(self, code: int, output: str):
        self.code, self.output, self.calls = code, output, []

    def state(self, container: str) -> ContainerState:
        raise AssertionError("not used")

    def exec(self, container, argv, stdin=None, timeout_s=30.0):
        self.calls.append((container, argv))
        return self.code, self.output


def test_the_silence_is_posted_inside_the_alertmanager_container_and_its_id_returned():
    runtime = _Runtime(0, '{"silenceID":"abc"}')
    silences = AlertmanagerSilences(runtime, "napdms-dev-alertmanager-1", "ops@x", lambda: START)
    assert silences("dev", "gitea", None, 60) == "abc"
    container, argv = runtime.calls[0]
    assert container == "napdms-dev-alertmanager-1"
    assert argv[-1] == "http://127.0.0.1:9093/api/v2/silences"


def test_a_refused_silence_raises_with_alertmanagers_answer():
    runtime = _Runtime(1, "wget: server returned error: HTTP/1.1 400 Bad Request")
    silences = AlertmanagerSilences(runtime, "napdms-dev-alertmanager-1", "ops@x", lambda: START)
    with pytest.raises(SilenceError, match="400 Bad Request"):
        silences("dev", "gitea", None, 60)

"""`status`: per service its strategy, live colour, images and running digests, replica health and
the last audit record; and the Docker facts it reads them from."""

import io

from rich.console import Console

from napdms_ops.release.runtime import docker_time, state_of
from napdms_ops.release.status import print_status, status
from tests.unit.release_fakes import World

DIGEST = "sha256:" + "cd" * 32


def _entry(report: dict, service: str) -> dict:
    return next(e for e in report["services"] if e["service"] == service)


def test_a_coloured_service_shows_each_colours_image_and_the_live_one(tmp_path):
    world = World(tmp_path)
    world.deployer().deploy("napdms-backend", "1.0.1")
    entry = _entry(status(world.stack(), lambda e: world.runtime, world.journal), "napdms-backend")
    assert (entry["strategy"], entry["live"]) == ("blue-green", "green")
    assert entry["colours"]["green"]["version"] == "1.0.1"
    assert entry["colours"]["green"]["replicas"][0]["health"] == "healthy"


def test_a_service_shows_its_last_audit_record(tmp_path):
    world = World(tmp_path)
    world.deployer().deploy("gitea", "1.24.7")
    entry = _entry(status(world.stack(), lambda e: world.runtime, world.journal), "gitea")
    assert (entry["strategy"], entry["last"]["to_digest"]) == ("held", "1.24.7")


def test_a_missing_container_shows_as_missing(tmp_path):
    world = World(tmp_path)
    world.containers.pop("napdms-dev-redis-1")
    entry = _entry(status(world.stack(), lambda e: world.runtime, world.journal), "redis")
    assert entry["replicas"][0]["health"] == "missing"


def test_the_table_marks_the_live_colour(tmp_path):
    world = World(tmp_path)
    out = io.StringIO()
    report = status(world.stack(), lambda e: world.runtime, world.journal)
    print_status(report, Console(file=out, width=200))
    assert "blue (live)" in out.getvalue()


def test_docker_times_lose_nanoseconds_and_the_zero_time():
    moment = docker_time("2026-12-01T09:30:00.123456789Z")
    assert (moment.microsecond, docker_time("0001-01-01T00:00:00Z")) == (123456, None)


def test_the_state_takes_the_digest_of_the_containers_repository():
    attrs = {
        "Image": "sha256:1111",
        "Config": {"Image": "docker.io/library/redis@" + DIGEST},
        "RestartCount": 2,
        "State": {
            "Running": True,
            "StartedAt": "2026-12-01T09:30:00Z",
            "Health": {"Status": "unhealthy", "Log": [{"Output": "PONG? no\n"}]},
        },
    }
    state = state_of(attrs, ["other/x@sha256:" + "00" * 32, f"docker.io/library/redis@{DIGEST}"])
    assert (state.repo_digest, state.health, state.health_output, state.restart_count) == (
        DIGEST,
        "unhealthy",
        "PONG? no",
        2,
    )

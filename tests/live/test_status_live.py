"""`status` on the real engine: the dev stack's PostgreSQL, Redis, Prometheus and blackbox
exporter replayed as stack `statuslive`; their pings measured by the real prober, read from the
real Prometheus. All healthy makes the stack ready; a stopped Redis is unhealthy (Docker sees it
stopped, the prober sees it disconnected) and the stack degraded, with the transition audited."""

from __future__ import annotations

import time

import pytest

from components.catalog import CATALOG
from components.settings import load_stack
from napdms_ops.release.journal import Journal
from napdms_ops.release.runtime import DockerRuntime
from napdms_ops.status.health import PING_LIMIT_MS
from napdms_ops.status.lifecycle import Lifecycles
from napdms_ops.status.report import stack_status
from tests.live.engine import ensure_engine
from tests.live.replay import replay
from tests.program import run_program, stack_config

STACK = "statuslive"
SERVICES = ("prometheus", "blackbox", "redis", "postgres")
PROBED_WITHIN_S = 60
"""Scrapes and probes run every 5 s; the first ones land soon after the targets are healthy."""


def _config() -> dict:
    config = stack_config("dev")
    overrides = config.get("services", {})
    config["services"] = {
        name: {**overrides.get(name, {}), "enabled": name in SERVICES} for name in CATALOG
    }
    return config


@pytest.fixture(scope="module")
def replayed():
    client = ensure_engine()
    config = _config()
    done = replay(run_program(STACK, config), SERVICES, client)
    try:
        yield client, done, load_stack(STACK, config, set())
    finally:
        done.remove()


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return tmp_path_factory.mktemp("statuslive-state")


def _status(replayed, state) -> dict:
    client, _, stack = replayed
    environ = {
        "NAPDMS_STATE_DIR": str(state),
        "NAPDMS_OPERATOR": "statuslive@example.org",
        "NAPDMS_AUDIT_MIRROR": str(state / "mirror"),
    }
    runtime = DockerRuntime(None, client=client)
    return stack_status(
        stack,
        lambda endpoint: runtime,
        Journal(state, STACK, "", None),
        state,
        Lifecycles(state, environ=environ),
    )


def _until(replayed, state, done, timeout_s: float = PROBED_WITHIN_S) -> dict:
    """The first report `done` holds for, or the last one when time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = _status(replayed, state)
        if done(report) or time.monotonic() > deadline:
            return report
        time.sleep(1)


def _entry(report: dict, service: str) -> dict:
    return next(e for e in report["services"] if e["service"] == service)


def _pinged(report: dict) -> bool:
    return all(_entry(report, s)["response_s"] is not None for s in ("redis", "postgres"))


@pytest.fixture(scope="module")
def healthy(replayed, state):
    return _until(replayed, state, _pinged)


def test_the_real_prometheus_answers_every_status_query(healthy):
    assert healthy["metrics"] == {"available": True, "error": None}


@pytest.mark.parametrize(("service", "role"), [("postgres", "database"), ("redis", "redis")])
def test_the_prober_measures_each_ping_under_its_limit(healthy, service, role):
    entry = _entry(healthy, service)
    assert entry["response_s"] is not None, f"no probe of {service} reached Prometheus"
    assert 0 < entry["response_s"] * 1000 <= PING_LIMIT_MS[role]
    assert (entry["health"], entry["reasons"]) == ("healthy", [])


def test_a_healthy_stack_is_ready(healthy):
    assert healthy["lifecycle"]["state"] == "ready"


@pytest.fixture(scope="module")
def redis_stopped(replayed, state, healthy):
    _, done, _ = replayed
    done.containers["local-redis-1"].stop(timeout=5)
    return _until(
        replayed,
        state,
        lambda r: any("disconnected" in reason for reason in _entry(r, "redis")["reasons"]),
    )


def test_a_stopped_redis_is_unhealthy_to_docker_and_to_the_prober(redis_stopped):
    redis = _entry(redis_stopped, "redis")
    assert redis["health"] == "unhealthy"
    assert "napdms-statuslive-redis-1 stopped" in redis["reasons"]
    assert "redis disconnected (its port does not answer)" in redis["reasons"]


def test_the_stack_goes_from_ready_to_degraded_and_the_trail_says_so(redis_stopped, state):
    from napdms_ops.trail import records

    environ = {"NAPDMS_STATE_DIR": str(state), "NAPDMS_AUDIT_MIRROR": str(state / "mirror")}
    moves = [r.changes for r in records(STACK, environ) if r.command == "lifecycle"]
    assert redis_stopped["lifecycle"]["state"] == "degraded"
    assert moves[-1] == {"from": "ready", "to": "degraded"}

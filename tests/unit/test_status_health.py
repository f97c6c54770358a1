"""A service's health from the seed's HealthCheck thresholds, at and around each one, and from
what Docker says of each replica."""

from datetime import UTC, datetime, timedelta

import pytest

from napdms_ops.status import health
from napdms_ops.status.health import Verdict

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("role", "ping_ms", "expected"),
    [
        ("database", 0.4, "healthy"),
        ("database", 99.9, "healthy"),
        ("database", 100.0, "healthy"),
        ("database", 100.1, "degraded"),
        ("database", 5000.0, "degraded"),
        ("redis", 49.9, "healthy"),
        ("redis", 50.0, "healthy"),
        ("redis", 50.1, "degraded"),
        ("redis", 100.0, "degraded"),
    ],
)
def test_a_ping_over_its_limit_is_degraded_and_the_limit_itself_is_healthy(role, ping_ms, expected):
    assert health.ping(role, True, ping_ms).health == expected


@pytest.mark.parametrize("role", ["database", "redis"])
def test_a_database_or_redis_that_does_not_answer_is_unhealthy(role):
    verdict = health.ping(role, False, 0.3)
    assert (verdict.health, "disconnected" in verdict.reason) == ("unhealthy", True)


def test_an_unknown_ping_is_no_verdict():
    assert (health.ping("redis", None, None), health.ping("redis", True, None)) == (None, None)


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (0.0, "healthy"),
        (0.0099, "healthy"),
        (0.01, "degraded"),
        (0.03, "degraded"),
        (0.05, "degraded"),
        (0.0501, "unhealthy"),
        (1.0, "unhealthy"),
    ],
)
def test_an_error_rate_from_1_to_5_percent_is_degraded_and_over_5_unhealthy(ratio, expected):
    assert health.error_rate(ratio).health == expected


def test_a_site_without_requests_has_no_error_rate_verdict():
    assert health.error_rate(None) is None


@pytest.mark.parametrize(
    ("success", "average_s", "expected"),
    [(False, 0.1, "unhealthy"), (True, 2.0, "healthy"), (True, 2.01, "degraded")],
)
def test_a_public_site_down_is_unhealthy_and_slow_over_2_seconds_degraded(
    success, average_s, expected
):
    assert health.site(success, average_s).health == expected


@pytest.mark.parametrize(
    ("days", "expected"), [(30, "healthy"), (14, "healthy"), (13.9, "degraded"), (-1, "unhealthy")]
)
def test_a_certificate_under_14_days_is_degraded_and_an_expired_one_unhealthy(days, expected):
    now = NOW.timestamp()
    assert health.certificate(now + days * 86400, now).health == expected


def _replica(**facts) -> Verdict:
    given = {
        "container": "napdms-dev-redis-1",
        "exists": True,
        "running": True,
        "docker_health": "healthy",
        "restarts": 0,
        "started_at": NOW - timedelta(hours=2),
        "now": NOW,
    }
    return health.replica(**(given | facts))


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({}, "healthy"),
        ({"docker_health": None}, "healthy"),
        ({"exists": False, "running": False, "docker_health": None}, "unhealthy"),
        ({"running": False}, "unhealthy"),
        ({"docker_health": "unhealthy"}, "unhealthy"),
        ({"docker_health": "starting"}, "degraded"),
    ],
)
def test_docker_sees_a_replica_missing_stopped_or_failing_its_check(facts, expected):
    assert _replica(**facts).health == expected


def test_a_replica_restarted_3_times_within_15_minutes_is_unhealthy():
    verdict = _replica(restarts=3, started_at=NOW - timedelta(seconds=20))
    assert (verdict.health, "restarting" in verdict.reason) == ("unhealthy", True)


def test_a_replica_restarted_once_within_15_minutes_is_degraded():
    assert _replica(restarts=1, started_at=NOW - timedelta(minutes=14)).health == "degraded"


def test_restarts_long_ago_leave_a_replica_healthy():
    assert _replica(restarts=7, started_at=NOW - timedelta(minutes=16)).health == "healthy"


def test_the_worst_known_verdict_wins_and_unknowns_do_not_count():
    verdicts = [None, health.HEALTHY, Verdict("degraded", "slow"), Verdict("unhealthy", "down")]
    assert health.worst(verdicts) == ("unhealthy", ["down", "slow"])


def test_nothing_known_is_healthy_without_reasons():
    assert health.worst([None, None]) == ("healthy", [])


def test_an_idle_colours_trouble_costs_at_most_degraded():
    capped = health.at_most(Verdict("unhealthy", "x-1 missing"), "degraded", "idle colour green")
    assert capped == Verdict("degraded", "idle colour green: x-1 missing")

"""What `status` reads from the stack's Prometheus: the query API's answers parsed, asked from
inside the Prometheus container, and turned into per-service metrics (nothing invented)."""

import json
from urllib.parse import unquote

import pytest

from components.settings import read_stack
from napdms_ops.release.runtime import DaemonError
from napdms_ops.status.prometheus import (
    ContainerPrometheus,
    PrometheusError,
    Sample,
    queries,
    read_metrics,
    samples,
)


def _answer(*series: tuple[dict, str]) -> str:
    result = [{"metric": labels, "value": [1765011600.0, value]} for labels, value in series]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


class Canned:
    """A Prometheus that answers each of `status`' queries from `answers` (by query name)."""

    def __init__(self, stack: str, answers: dict[str, list[Sample]]):
        self.by_expr = {expr: answers.get(name, []) for name, expr in queries(stack).items()}

    def query(self, expr):
        return self.by_expr[expr]


class ExecRuntime:
    def __init__(self, code=0, output="", error=None):
        self.code, self.output, self.error = code, output, error
        self.argv = None

    def exec(self, container, argv, stdin=None, timeout_s=30.0):
        self.argv = (container, argv)
        if self.error:
            raise self.error
        return self.code, self.output


def test_an_instant_vector_is_read_with_its_labels_and_values():
    found = samples(_answer(({"service": "redis"}, "1"), ({"service": "postgres"}, "0.0123")))
    assert found == [Sample({"service": "redis"}, 1.0), Sample({"service": "postgres"}, 0.0123)]


def test_nan_is_no_value():
    assert samples(_answer(({"site": "dms.example.org"}, "NaN")))[0].value is None


def test_a_failed_query_raises_with_prometheus_reason():
    failed = json.dumps({"status": "error", "error": "parse error at char 3"})
    with pytest.raises(PrometheusError, match="parse error at char 3"):
        samples(failed)


def test_an_answer_that_is_not_prometheus_raises():
    with pytest.raises(PrometheusError, match="not a Prometheus answer"):
        samples("<html>502 Bad Gateway</html>")


def test_the_query_is_asked_from_inside_the_prometheus_container():
    runtime = ExecRuntime(output=_answer(({}, "1")))
    ContainerPrometheus(runtime, "napdms-dev-prometheus-1").query('up{job="redis"}')
    container, argv = runtime.argv
    assert (container, argv[:2]) == ("napdms-dev-prometheus-1", ["wget", "-qO-"])
    assert unquote(argv[2]) == 'http://127.0.0.1:9090/api/v1/query?query=up{job="redis"}'


def test_a_query_api_that_does_not_answer_raises():
    runtime = ExecRuntime(code=1, output="wget: can't connect to remote host: Connection refused")
    with pytest.raises(PrometheusError, match="Connection refused"):
        ContainerPrometheus(runtime, "napdms-dev-prometheus-1").query("up")


def test_a_daemon_failure_is_a_prometheus_failure():
    runtime = ExecRuntime(error=DaemonError("DOCKER_HOST: no such container"))
    with pytest.raises(PrometheusError, match="no such container"):
        ContainerPrometheus(runtime, "napdms-dev-prometheus-1").query("up")


def test_every_query_is_limited_to_the_stack():
    assert all('stack="prod"' in expr for expr in queries("prod").values())


def test_probes_carry_their_duration_and_colour():
    stack = read_stack("dev")
    reader = Canned(
        "dev",
        {
            "probe_success": [
                Sample({"service": "redis", "instance": "redis-1:6379"}, 1.0),
                Sample(
                    {"service": "napdms-backend", "instance": "b-green", "colour": "green"}, 0.0
                ),
            ],
            "probe_seconds": [Sample({"service": "redis", "instance": "redis-1:6379"}, 0.0021)],
        },
    )
    metrics = read_metrics(stack, reader)
    redis, backend = metrics.probes["redis"][0], metrics.probes["napdms-backend"][0]
    assert (redis.success, redis.seconds, redis.colour) == (True, 0.0021, None)
    assert (backend.success, backend.seconds, backend.colour) == (False, None, "green")


def test_the_error_ratio_of_a_site_belongs_to_the_service_it_serves():
    stack = read_stack("dev")
    spec = stack.services["napdms-backend"]
    site = f"{spec.public.subdomain}.{stack.settings.domain}"
    reader = Canned(
        "dev",
        {"error_ratio": [Sample({"site": site}, 0.02), Sample({"site": "elsewhere.org"}, 0.9)]},
    )
    assert read_metrics(stack, reader).error_ratio == {"napdms-backend": 0.02}


def test_backups_are_read_for_the_stack_and_per_service():
    stack = read_stack("dev")
    reader = Canned(
        "dev",
        {
            "last_backup": [Sample({}, 1765000000.0)],
            "service_backup": [Sample({"service": "postgres"}, 1764990000.0)],
        },
    )
    metrics = read_metrics(stack, reader)
    assert (metrics.last_backup, metrics.service_backup) == (
        1765000000.0,
        {"postgres": 1764990000.0},
    )


def test_metrics_prometheus_has_no_sample_of_stay_unknown():
    metrics = read_metrics(read_stack("dev"), Canned("dev", {}))
    assert (metrics.last_backup, metrics.probes, metrics.error_ratio) == (None, {}, {})

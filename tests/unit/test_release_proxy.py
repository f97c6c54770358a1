"""`ProxyControl`: what it runs inside the proxy container, and how it reads Caddy's answers."""

import json

import pytest

from napdms_ops.release.proxy import ProxyControl, ProxyError, status_classes


def _count(code: str, handler: str, value: int, name: str = "count") -> str:
    labels = f'code="{code}",handler="{handler}",method="GET",server="srv0"'
    return f"caddy_http_request_duration_seconds_{name}{{{labels}}} {value}"


METRICS = "\n".join(
    [
        "# TYPE caddy_http_request_duration_seconds histogram",
        _count("200", "reverse_proxy", 3, name="bucket"),
        _count("200", "reverse_proxy", 90),
        _count("502", "reverse_proxy", 7),
        _count("200", "headers", 97),
        _count("200", "metrics", 4),
    ]
)


class Runtime:
    """Answers each exec with the next scripted (exit code, output); records the calls."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def state(self, container):
        raise AssertionError("not used")

    def exec(self, container, argv, stdin=None, timeout_s=30.0):
        self.calls.append((container, argv, stdin))
        return self.answers.pop(0)


def test_responses_count_the_reverse_proxy_handler_by_status_class():
    assert status_classes(METRICS) == {"2xx": 90, "5xx": 7}


def test_responses_fall_back_to_every_handler_without_a_reverse_proxy():
    text = 'caddy_http_request_duration_seconds_count{code="404",handler="file_server"} 2\n'
    assert status_classes(text) == {"4xx": 2}


def test_load_writes_the_caddyfile_through_stdin_then_reloads_it():
    runtime = Runtime((0, ""), (0, ""))
    ProxyControl(runtime, "napdms-dev-proxy-1").load("example.org {\n}\n")
    write, reload = runtime.calls
    assert write[2] == b"example.org {\n}\n"
    assert reload[1] == [
        "caddy",
        "reload",
        "--config",
        "/tmp/Caddyfile.next",
        "--adapter",
        "caddyfile",
    ]


def test_a_refused_reload_is_an_error_with_caddys_last_line():
    runtime = Runtime((0, ""), (1, "adapting config: Caddyfile:3: unknown directive 'x'\n"))
    with pytest.raises(ProxyError, match="unknown directive 'x'"):
        ProxyControl(runtime, "p").load("x\n")


def test_ready_is_a_successful_get_from_inside_the_proxy():
    runtime = Runtime((0, "ok"), (1, "wget: server returned error: HTTP/1.1 503"))
    proxy = ProxyControl(runtime, "p")
    url = "http://napdms-backend-green-1:8000/healthz"
    assert (proxy.ready(url), proxy.ready(url)) == (True, False)
    assert runtime.calls[0][1] == ["timeout", "3", "wget", "-qO-", url]


def test_upstreams_map_each_address_to_its_requests_in_flight():
    listed = [{"address": "napdms-backend-blue-1:8000", "num_requests": 3, "fails": 0}]
    proxy = ProxyControl(Runtime((0, json.dumps(listed))), "p")
    assert proxy.upstreams() == {"napdms-backend-blue-1:8000": 3}

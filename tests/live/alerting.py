"""The monitoring pipeline as the dev stack declares it (Prometheus, Alertmanager, the blackbox
exporter and a monitored service), replayed onto the engine with its two receivers played by this
process: an SMTP server (aiosmtpd) and a webhook endpoint. Shared by the live test and
`tests/bench/alert_latency.py`.

The receivers listen on the engine's default bridge address, which Alertmanager reaches through
its `edge` network as it would reach a relay on the LAN; the stack's settings point there.
"""

from __future__ import annotations

import contextlib
import email
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import docker
from aiosmtpd.controller import Controller

from components.catalog import CATALOG
from tests.live.replay import Replay, replay
from tests.program import Program, run_program, stack_config

STACK = "alerts"
"""Its own stack name, so its containers never collide with another live test's `dev` ones."""
MONITORED = "redis"
"""The service whose container the trials stop: probed on its port, as every database is."""
SERVICES = ("prometheus", "alertmanager", "blackbox", MONITORED)
ALERT = "ProbeFailing"
"""The page a stopped database raises (its probe fails as its name leaves the network)."""


@dataclass(frozen=True)
class Notice:
    """One alert as a receiver got it."""

    at: float
    receiver: str
    """`mail` or `chat`."""
    alertname: str
    service: str
    status: str
    """`firing` or `resolved`."""


@dataclass
class Receivers:
    """The SMTP server and the webhook endpoint, and every alert they got, in arrival order."""

    address: str
    smtp_port: int = 0
    webhook_port: int = 0
    notices: list[Notice] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _smtp: Controller | None = None
    _http: http.server.ThreadingHTTPServer | None = None

    def record(self, receiver: str, alerts: list[dict], status: str) -> None:
        now = time.time()
        with self._lock:
            self.notices += [
                Notice(
                    now,
                    receiver,
                    alert["labels"].get("alertname", ""),
                    alert["labels"].get("service", ""),
                    alert.get("status", status),
                )
                for alert in alerts
            ]

    def first(self, receiver: str, alertname: str, service: str, status: str, after: float):
        """The first matching notice that arrived after `after`, or None."""
        with self._lock:
            return next(
                (
                    n
                    for n in self.notices
                    if n.receiver == receiver
                    and n.alertname == alertname
                    and n.service == service
                    and n.status == status
                    and n.at > after
                ),
                None,
            )

    def start_smtp(self) -> None:
        """Accept mail (again, on the same port after `stop_smtp`)."""
        self._smtp = Controller(_MailHandler(self), hostname="0.0.0.0", port=self.smtp_port)
        self._smtp.start()

    def stop_smtp(self) -> None:
        """Refuse connections: the relay is down."""
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None

    def start(self) -> None:
        self.smtp_port = self.smtp_port or _free_port()
        self.start_smtp()
        receivers = self

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receivers.record("chat", body["alerts"], body["status"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("0.0.0.0", self.webhook_port), Hook)
        self.webhook_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stop_smtp()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class _MailHandler:
    """Alertmanager's mail carries the alerts' labels only in its HTML body; its subject names
    the group: `[FIRING:1] ProbeFailing (...)`. The group key holds alertname, service, host."""

    def __init__(self, receivers: Receivers):
        self.receivers = receivers

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        message = email.message_from_bytes(envelope.content)
        subject = str(message["Subject"])
        status = "resolved" if subject.startswith("[RESOLVED") else "firing"
        # `[FIRING:1] ProbeFailing local redis (...)`: the group labels, in group_by order.
        words = subject.split("]", 1)[1].split()
        alertname, service = words[0], words[2] if len(words) > 2 else ""
        self.receivers.record(
            "mail", [{"labels": {"alertname": alertname, "service": service}}], status
        )
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def bridge_address(client: docker.DockerClient) -> str:
    """The host's address on the engine's default bridge, reachable from every bridge network."""
    return client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]


def program(
    receivers: Receivers, services: tuple[str, ...] = SERVICES, stack: str = STACK
) -> Program:
    """The dev stack with only `services` enabled and its alerts sent to `receivers`."""
    config = stack_config("dev")
    overrides = config.get("services", {})
    config["services"] = {
        name: {**overrides.get(name, {}), "enabled": name in services} for name in CATALOG
    }
    config["alerting"] = {
        **config["alerting"],
        "smtp_host": receivers.address,
        "smtp_port": receivers.smtp_port,
        "smtp_starttls": False,
        "chat_webhook": True,
    }
    webhook = f"http://{receivers.address}:{receivers.webhook_port}/hooks/alerts"
    return run_program(
        stack, {**config, "alert_webhook_url": webhook}, secret_keys=("alert_webhook_url",)
    )


@contextlib.contextmanager
def pipeline(
    client: docker.DockerClient, services: tuple[str, ...] = SERVICES, stack: str = STACK
) -> Iterator[tuple[Replay, Receivers]]:
    """The replayed monitoring pipeline (`services` of the dev stack, as stack `stack`) and its
    receivers, removed afterwards."""
    receivers = Receivers(bridge_address(client))
    receivers.start()
    done = replay(program(receivers, services, stack), services, client)
    try:
        yield done, receivers
    finally:
        done.remove()
        receivers.stop()


def container(done: Replay, service: str):
    """The live container of `service` (its first replica)."""
    return done.containers[f"local-{service}-1"]


def wait_for(
    receivers: Receivers,
    receiver: str,
    status: str,
    after: float,
    timeout_s: float,
    alertname: str = ALERT,
    service: str = MONITORED,
):
    """The first `alertname` for `service` with `status` at `receiver` after `after`, or None."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        notice = receivers.first(receiver, alertname, service, status, after)
        if notice is not None:
            return notice
        time.sleep(0.2)
    return None


@dataclass(frozen=True)
class Trial:
    """Seconds from stopping the service to each receiver's page, and from starting it again to
    each receiver's all-clear (None: did not arrive in time)."""

    alert_s: dict[str, float | None]
    resolve_s: dict[str, float | None]


RECEIVERS = ("mail", "chat")


def trial(done: Replay, receivers: Receivers, timeout_s: float = 90, delay_s: float = 0) -> Trial:
    """After `delay_s`, stop the monitored container, wait for the page at both receivers, start
    it again, wait for the all-clear at both. (Back-to-back trials would all stop the service at
    one phase of the scrape and evaluation cycles, set by the last all-clear: a random delay
    samples the phases a real fault meets.)"""
    time.sleep(delay_s)
    service = container(done, MONITORED)
    stopped = time.time()
    service.stop(timeout=10)
    alert = {r: wait_for(receivers, r, "firing", stopped, timeout_s) for r in RECEIVERS}
    started = time.time()
    service.start()
    resolve = {r: wait_for(receivers, r, "resolved", started, timeout_s) for r in RECEIVERS}
    return Trial(
        {r: None if n is None else n.at - stopped for r, n in alert.items()},
        {r: None if n is None else n.at - started for r, n in resolve.items()},
    )


def query(done: Replay, promql: str) -> list[dict]:
    """Prometheus' instant query result, asked inside its container."""
    code, output = container(done, "prometheus").exec_run(
        ["wget", "-qO-", f"http://127.0.0.1:9090/api/v1/query?query={quote(promql)}"]
    )
    return json.loads(output)["data"]["result"] if code == 0 else []


def wait_steady(done: Replay, timeout_s: float = 120) -> None:
    """Until Prometheus probes the monitored service successfully and knows Alertmanager."""
    deadline = time.time() + timeout_s
    wanted = f'probe_success{{service="{MONITORED}"}} == 1'
    while time.time() < deadline:
        if query(done, wanted) and query(done, 'up{job="alertmanager"} == 1'):
            return
        time.sleep(1)
    raise TimeoutError(f"Prometheus never saw {MONITORED} probed and Alertmanager up")

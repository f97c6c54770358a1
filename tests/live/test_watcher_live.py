"""The watcher as the dev stack declares it (a second Prometheus and Alertmanager reading the
primary's Watchdog by federation), with the primary's Prometheus and Alertmanager, on the real
engine: a dead primary Prometheus is paged by the watcher's own path within two minutes."""

from __future__ import annotations

import time

import pytest

from tests.live.alerting import container, pipeline, wait_for
from tests.live.engine import ensure_engine

SERVICES = ("prometheus", "alertmanager", "watcher-alertmanager", "watcher")
NOTICED_WITHIN_S = 120
"""Federation every 15 s, the Watchdog absent for 1 min, a group wait of 2 s: about 80 s."""


def _federated(done) -> bool:
    code, output = container(done, "watcher").exec_run(
        ["wget", "-qO-", "http://127.0.0.1:9090/api/v1/query?query=ALERTS"]
    )
    return code == 0 and b'"Watchdog"' in output


@pytest.fixture(scope="module")
def silenced():
    """(replay, receivers, when the primary's Prometheus was stopped), once the watcher had
    read its Watchdog."""
    with pipeline(ensure_engine(), SERVICES, stack="watch") as (done, receivers):
        deadline = time.time() + 90
        while not _federated(done) and time.time() < deadline:
            time.sleep(1)
        assert _federated(done), "the watcher never read the primary's Watchdog"
        stopped = time.time()
        container(done, "prometheus").stop(timeout=10)
        yield done, receivers, stopped


@pytest.mark.parametrize("receiver", ["mail", "chat"])
def test_a_dead_primary_prometheus_is_paged_by_the_watcher(silenced, receiver):
    _, receivers, stopped = silenced
    page = wait_for(
        receivers,
        receiver,
        "firing",
        stopped,
        NOTICED_WITHIN_S,
        alertname="MonitoringSilent",
        service="prometheus",
    )
    assert page is not None, f"{receiver}: no MonitoringSilent within {NOTICED_WITHIN_S} s"

"""The dev stack's monitoring pipeline on the real engine, with the real Prometheus, Alertmanager
and blackbox exporter: a stopped service pages both receivers within 30 s, the page resolves when
it returns, and with the mail relay down the page and the relay's failure still reach chat."""

from __future__ import annotations

import time

import pytest

from tests.live.alerting import (
    MONITORED,
    container,
    pipeline,
    trial,
    wait_for,
    wait_steady,
)
from tests.live.engine import ensure_engine

PAGE_WITHIN_S = 30
"""The spec's bound (SC-003)."""


@pytest.fixture(scope="module")
def steady():
    with pipeline(ensure_engine()) as (done, receivers):
        wait_steady(done)
        yield done, receivers


@pytest.fixture(scope="module")
def first_trial(steady):
    done, receivers = steady
    return trial(done, receivers)


@pytest.mark.parametrize("receiver", ["mail", "chat"])
def test_a_stopped_service_pages_within_30_seconds(first_trial, receiver):
    seconds = first_trial.alert_s[receiver]
    assert seconds is not None and seconds <= PAGE_WITHIN_S, (
        f"{receiver}: the page for stopped {MONITORED} came after {seconds} s"
    )


@pytest.mark.parametrize("receiver", ["mail", "chat"])
def test_the_page_resolves_when_the_service_returns(first_trial, receiver):
    assert first_trial.resolve_s[receiver] is not None, (
        f"{receiver}: no all-clear after {MONITORED} came back"
    )


def test_with_the_relay_down_the_page_and_the_relays_failure_reach_chat(steady, first_trial):
    done, receivers = steady
    receivers.stop_smtp()
    try:
        stopped = time.time()
        container(done, MONITORED).stop(timeout=10)
        page = wait_for(receivers, "chat", "firing", stopped, 60)
        assert page is not None, f"chat got no page for {MONITORED} while the relay was down"
        failing = None
        deadline = time.time() + 60
        while failing is None and time.time() < deadline:
            failing = receivers.first("chat", "NotificationsFailing", "", "firing", stopped)
            time.sleep(0.5)
        assert failing is not None, "chat was not told that mail cannot be delivered"
    finally:
        container(done, MONITORED).start()
        receivers.start_smtp()

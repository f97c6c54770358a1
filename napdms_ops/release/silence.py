"""Silences for what a deploy takes down on purpose, so nobody is paged for it.

A blue-green deploy recreates the idle colour, and a held or snapshot deploy restarts the
service: its targets fail their scrapes and probes for as long as the new container takes to
turn healthy, which can outlast the alerts' `for`. Before that, the deploy asks Alertmanager
(its v2 API, from inside the Alertmanager container, as the proxy is driven) to silence the
alerts of exactly those targets (`stack`, `service`, and `colour` for one colour) until the
deploy's own health gate would have given up. A real fault outside them still pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from napdms_ops.release.runtime import Runtime

SILENCES = "http://127.0.0.1:9093/api/v2/silences"
"""Alertmanager's API inside its container (it listens on 9093)."""


class SilenceError(Exception):
    """Alertmanager did not take the silence; the message says why."""


def silence_body(
    stack: str,
    service: str,
    colour: str | None,
    starts: datetime,
    seconds: float,
    operator: str,
    comment: str,
) -> dict:
    """The API's silence for `service`'s alerts in `stack` (only `colour`'s when given), from
    `starts` for `seconds`."""
    labels = {"stack": stack, "service": service, **({"colour": colour} if colour else {})}
    return {
        "matchers": [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in labels.items()
        ],
        "startsAt": _iso(starts),
        "endsAt": _iso(starts + timedelta(seconds=seconds)),
        "createdBy": operator,
        "comment": comment,
    }


class AlertmanagerSilences:
    """Posts silences to the Alertmanager container `container` through `runtime`."""

    def __init__(
        self,
        runtime: Runtime,
        container: str,
        operator: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.runtime = runtime
        self.container = container
        self.operator = operator
        self._now = now

    def __call__(self, stack: str, service: str, colour: str | None, seconds: float) -> str:
        """Silence `service` (one `colour` of it) for `seconds`; the silence's id."""
        what = f"{service} {colour}" if colour else service
        body = silence_body(
            stack, service, colour, self._now(), seconds, self.operator, f"napdms-ops deploy {what}"
        )
        code, output = self.runtime.exec(
            self.container,
            [
                "wget",
                "-qO-",
                "--header",
                "Content-Type: application/json",
                "--post-data",
                json.dumps(body),
                SILENCES,
            ],
        )
        if code != 0:
            raise SilenceError(f"{self.container}: POST {SILENCES} failed: {output.strip()}")
        try:
            return json.loads(output)["silenceID"]
        except (ValueError, KeyError, TypeError):
            raise SilenceError(f"{self.container}: no silence id in {output.strip()!r}") from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

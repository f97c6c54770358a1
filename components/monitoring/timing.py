"""How fast a fault becomes a page, in one place (the README shows the arithmetic).

A stopped service is seen by the next scrape or probe (at most `SCRAPE_S` later, plus
`PROBE_TIMEOUT_S` for a probe that hangs), the next rule evaluation puts its alert pending (at
most `EVALUATE_S` later), the alert fires once the condition has held for `CRITICAL_FOR_S`, and
Alertmanager sends a critical group after `CRITICAL_GROUP_WAIT_S`: at worst
5 + 4 + 2.5 + 10 + 1 s = 22.5 s plus delivery, on average about 15 s.

One failed scrape pages no one: it holds the condition for one scrape interval (5 s), and an
alert needs it held for `CRITICAL_FOR_S` = 2 x `SCRAPE_S`.
"""

SCRAPE_S = 5
"""Scrape and probe interval of every target the platform owns."""
EVALUATE_S = 2.5
"""Rule evaluation interval: half the scrape interval, so a new sample is judged soon after it
lands, whatever the phase between the two cycles."""
PROBE_TIMEOUT_S = 4
"""A probe that has no answer in this long failed; below `SCRAPE_S`, so probes never overlap."""
CRITICAL_FOR_S = 10
"""How long a critical condition (down, failing probe) holds before it pages."""
CRITICAL_GROUP_WAIT_S = 1
"""Alertmanager's wait before the first notification of a critical group (batches a burst)."""
CRITICAL_GROUP_INTERVAL_S = 10
"""Wait before notifying changes (new or resolved alerts) of a critical group already sent."""
CRITICAL_REPEAT = "1h"
"""A critical alert still firing is sent again this often."""
WARNING_GROUP_WAIT_S = 30
WARNING_GROUP_INTERVAL = "5m"
WARNING_REPEAT = "4h"
"""Warnings wait longer and repeat less: they need attention today, not now."""
WATCHER_SCRAPE_S = 15
"""The watcher on the backup host reads the QNAP's Prometheus this often."""
WATCHER_FOR = "1m"
"""How long the QNAP's monitoring may be silent before the watcher pages."""


def seconds(value: float) -> str:
    """A duration in Prometheus' notation (whole milliseconds below a second's precision)."""
    if float(value).is_integer():
        return f"{int(value)}s"
    return f"{round(value * 1000)}ms"

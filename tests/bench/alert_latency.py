"""How long from a service's container stopping to the page at each receiver, and from its return
to the all-clear: the dev stack's monitoring pipeline (real Prometheus, Alertmanager, blackbox
exporter in stand-in images, an SMTP server and a webhook endpoint in this process), compared
with the same pipeline at common default timings.

    python tests/bench/alert_latency.py [--trials 10] [--baseline-trials 3]

Ours: scrape every 5 s, evaluate every 2.5 s, `for: 10s`, group_wait 1 s
(`components/monitoring/timing.py`).
Baseline: Prometheus' example configuration (scrape and evaluate every 15 s), `for: 1m` as in
most published rule sets, Alertmanager's default group_wait of 30 s.
The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from components.monitoring import rules, timing  # noqa: E402
from tests.live.alerting import RECEIVERS, Trial, pipeline, trial, wait_steady  # noqa: E402
from tests.live.engine import ensure_engine  # noqa: E402

BASELINE = {
    "SCRAPE_S": 15,
    "EVALUATE_S": 15,
    "PROBE_TIMEOUT_S": 10,
    "CRITICAL_FOR_S": 60,
    "CRITICAL_GROUP_WAIT_S": 30,
}


@contextlib.contextmanager
def baseline_timing() -> Iterator[None]:
    """The program generates its files with the baseline's timings while this lasts."""
    saved = {name: getattr(timing, name) for name in BASELINE}
    saved_for = rules.CRITICAL_FOR
    for name, value in BASELINE.items():
        setattr(timing, name, value)
    rules.CRITICAL_FOR = timing.seconds(BASELINE["CRITICAL_FOR_S"])
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(timing, name, value)
        rules.CRITICAL_FOR = saved_for


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def run_trials(count: int, label: str, rng: random.Random) -> list[Trial]:
    client = ensure_engine()
    results = []
    with pipeline(client) as (done, receivers):
        wait_steady(done)
        for number in range(1, count + 1):
            # Uniform over one scrape interval: every phase of the scrape and evaluation cycles.
            delay = rng.uniform(0, timing.SCRAPE_S)
            result = trial(done, receivers, timeout_s=240, delay_s=delay)
            results.append(result)
            print(
                f"{label} trial {number}: page "
                + ", ".join(f"{r} {result.alert_s[r]}" for r in RECEIVERS)
                + " s; all-clear "
                + ", ".join(f"{r} {result.resolve_s[r]}" for r in RECEIVERS)
                + " s",
                flush=True,
            )
    return results


def figures(results: list[Trial]) -> dict[str, float | int]:
    """Latencies over every receiver of every trial; a page that never came fails the run."""
    alerts = [t.alert_s[r] for t in results for r in RECEIVERS]
    resolves = [t.resolve_s[r] for t in results for r in RECEIVERS]
    if None in alerts or None in resolves:
        raise SystemExit(f"a page or all-clear never arrived: {results}")
    return {
        "trials": len(results),
        "alert_p50_s": round(statistics.median(alerts), 2),
        "alert_p95_s": round(percentile(alerts, 0.95), 2),
        "alert_max_s": round(max(alerts), 2),
        "resolve_p50_s": round(statistics.median(resolves), 2),
        "resolve_p95_s": round(percentile(resolves, 0.95), 2),
        "mail_p95_s": round(percentile([t.alert_s["mail"] for t in results], 0.95), 2),
        "chat_p95_s": round(percentile([t.alert_s["chat"] for t in results], 0.95), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--baseline-trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    ours = figures(run_trials(args.trials, "ours", rng))
    result = dict(ours)
    if args.baseline_trials:
        with baseline_timing():
            baseline = figures(run_trials(args.baseline_trials, "baseline", rng))
        result |= {f"baseline_{key}": value for key, value in baseline.items()}
        result["speedup_p95"] = round(baseline["alert_p95_s"] / ours["alert_p95_s"], 2)
        print(
            f"page p95: ours {ours['alert_p95_s']} s over {ours['trials']} trials, baseline "
            f"{baseline['alert_p95_s']} s over {baseline['trials']} trials (goal: under 20 s)"
        )
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()

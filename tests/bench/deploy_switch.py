"""What users notice of a release: blue-green deploys, a rollback and a stateful restart through
the ops package's flows, beside a naive recreate, each under the same load of browser-like
clients through the real Caddy (tests/live/load.py) on the engine.

    python tests/bench/deploy_switch.py [--deploys 20] [--naive 3] [--clients 50]

The stack is the live deploy test's (`tests/live/release_engine.rig`: the proxy, NAP-DMS backend
in two colours, Gitea behind the proxy) under its own name. In order, each with its own load:

1. `--deploys` blue-green deploys of napdms-backend, each a new version (1.1.1, 1.1.2, ...: the
   idle colour never runs it yet, so every deploy starts a container), the colours alternating
   (`Deployer.deploy`: start the idle colour, readiness, switch, drain, record, watch);
2. one rollback (`Deployer.rollback`: flip back, nothing started);
3. `--naive` naive recreates of the live colour with new versions (1.2.1, ...): its image
   changed in the stack config and
   applied (the old container stopped and removed, the new one started under the same name, as
   `delete_before_replace` does), no proxy switch;
4. one deploy of Gitea (held: one instance per volume, the proxy holds requests meanwhile).

Switch windows are the proxy config loads plus a second after; `p99_ms_steady` is every request
outside them in phase 1. `switch_s` is the median proxy load; `rollback_s` runs from the rollback
command to the moment after which every answer is the previous version; `stateful_gap_s` is the
longest time without a successful answer during the Gitea deploy. The last line is one JSON object
of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napdms_ops.release.deploy import Windows  # noqa: E402
from tests.live.deploy_app import app_image  # noqa: E402
from tests.live.engine import ensure_engine  # noqa: E402
from tests.live.load import Summary, percentile  # noqa: E402
from tests.live.release_engine import Rig, rig  # noqa: E402

STACK = "deploybench"
"""Its own stack name: it never collides with the live test's."""
BACKEND = "napdms-backend"
HELD = "gitea"
HELD_TAG = "1.25.4-rootless"
WINDOWS = Windows(drain_s=5.0, watch_s=2.0, check_s=0.5, poll_s=0.2)


def versions(series: int, count: int) -> list[str]:
    """`count` new versions of the test application: 1.<series>.1, 1.<series>.2, ..."""
    return [f"1.{series}.{n}" for n in range(1, count + 1)]


def blue_green(bench: Rig, deploys: list[str], clients: int) -> tuple[Summary, list[dict]]:
    """A blue-green deploy of each version under one load; per deploy its outcome and what users
    saw."""
    results = []
    with bench.load(BACKEND, clients=clients, max_duration_s=len(deploys) * 60 + 120) as load:
        for number, version in enumerate(deploys):
            started = time.monotonic()
            outcome = bench.deployer().deploy(BACKEND, version, watch_s=WINDOWS.watch_s)
            ended = time.monotonic()
            time.sleep(1)
            seen = load.since(started).between(started, ended + 1)
            results.append(
                {
                    "version": version,
                    "result": outcome.result,
                    "reason": outcome.reason,
                    "deploy_s": ended - started,
                    "switch_s": outcome.timings.get("switch"),
                    "failed": seen.failed,
                    "requests": seen.requests,
                    "served_after": sorted(load.since(ended).versions()),
                }
            )
            print(
                f"deploy {number + 1}/{len(deploys)} -> {version}: {outcome.result} "
                f"{outcome.reason or ''} in {ended - started:.1f} s, switch "
                f"{outcome.timings.get('switch', 0):.3f} s; users: {seen.describe()}",
                flush=True,
            )
    return load.summary(), results


def rollback(bench: Rig, clients: int) -> tuple[Summary, float, str]:
    """One rollback under load; (what users saw, seconds until only the previous version
    answers, the version it went back to)."""
    with bench.load(BACKEND, clients=clients) as load:
        time.sleep(1)
        started = time.monotonic()
        outcome = bench.deployer().rollback(BACKEND)
        time.sleep(2)
    summary = load.summary()
    if outcome.result != "ok":
        raise SystemExit(f"the rollback was {outcome.result}: {outcome.reason}")
    target = outcome.to_version
    others = [s.end for s in summary.samples if s.version != target and not s.failed]
    back = max(others, default=started)
    print(f"rollback -> {target}: {outcome.timings}; users: {summary.describe()}", flush=True)
    return summary, max(0.0, back - started), target


def naive(bench: Rig, recreates: list[str], clients: int) -> tuple[Summary, list[float]]:
    """The live colour recreated in place with each version, under one load; (what users saw,
    the longest gap of each)."""
    gaps = []
    with bench.load(BACKEND, clients=clients) as load:
        for number, version in enumerate(recreates):
            live = bench.engine.values()["services"][BACKEND]["colours"]["live"]
            started = time.monotonic()
            bench.engine.set_values({f"services.{BACKEND}.colours.{live}.tag": version})
            bench.engine.up(f"naive recreate of {BACKEND} {live} with {version}")
            ended = time.monotonic()
            time.sleep(1)
            seen = load.since(started)
            gaps.append(seen.longest_gap_s(started, ended))
            print(
                f"naive {number + 1}/{len(recreates)} -> {version} ({live} replaced in place) in "
                f"{ended - started:.1f} s; users: {seen.describe()}",
                flush=True,
            )
    return load.summary(), gaps


def held(bench: Rig, clients: int) -> tuple[Summary, float]:
    """Gitea's deploy under load; (what users saw, the longest time without a success)."""
    with bench.load(HELD, clients=clients) as load:
        started = time.monotonic()
        outcome = bench.deployer().deploy(HELD, HELD_TAG, watch_s=WINDOWS.watch_s)
        ended = time.monotonic()
        time.sleep(1)
    summary = load.summary()
    if outcome.result != "ok":
        raise SystemExit(f"the Gitea deploy was {outcome.result}: {outcome.reason}")
    gap = summary.longest_gap_s(started, ended)
    print(f"held deploy of {HELD}: {outcome.timings}; users: {summary.describe()}", flush=True)
    return summary, gap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deploys", type=int, default=20)
    parser.add_argument("--naive", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    deploys, recreates = versions(1, args.deploys), versions(2, args.naive)
    client = ensure_engine()
    for version in [*deploys, *recreates]:
        app_image(version, client)  # built now, as a registry would hold them: no build in a run
    with tempfile.TemporaryDirectory(prefix="napdms-bench-state-") as state:
        with rig(STACK, Path(state), WINDOWS) as bench:
            proxy_before = bench.container("proxy-1").id
            deployed, results = blue_green(bench, deploys, args.clients)
            rolled, rollback_s, rolled_to = rollback(bench, args.clients)
            naive_seen, naive_gaps = naive(bench, recreates, args.clients)
            stateful, stateful_gap = held(bench, args.clients)
            proxy_kept = bench.container("proxy-1").id == proxy_before
    switching = [*deployed.window("switch").samples, *rolled.window("switch").samples]
    during = percentile([s.latency_s for s in switching], 99)
    steady = deployed.steady()
    ok = [r for r in results if r["result"] == "ok"]
    clean = [r for r in ok if r["failed"] == 0 and r["served_after"] == [r["version"]]]
    switch_times = [r["switch_s"] for r in ok if r["switch_s"] is not None]
    figures = {
        "deploys": len(results),
        "deploys_ok": len(ok),
        "deploys_without_a_failed_request": len(clean),
        "requests": deployed.requests + rolled.requests,
        "failed_requests": deployed.failed + rolled.failed,
        "retried_requests": deployed.retried + rolled.retried,
        "p99_ms_during_switch": None if during is None else round(during * 1000, 1),
        "p99_ms_steady": steady.p99_ms(),
        "switch_s": round(statistics.median(switch_times), 3) if switch_times else None,
        "switch_s_max": round(max(switch_times), 3) if switch_times else None,
        "deploy_s_median": round(statistics.median(r["deploy_s"] for r in results), 1),
        "bluegreen_longest_gap_s": deployed.longest_gap_s(),
        "rollback_s": round(rollback_s, 3),
        "rollback_failed_requests": rolled.failed,
        "naive_recreates": args.naive,
        "naive_requests": naive_seen.requests,
        "naive_failed_requests": naive_seen.failed,
        "naive_longest_gap_s": max(naive_gaps, default=0.0),
        "naive_p99_ms": naive_seen.p99_ms(),
        "stateful_gap_s": stateful_gap,
        "stateful_failed_requests": stateful.failed,
        "stateful_p99_ms": stateful.p99_ms(),
        "clients": args.clients,
        "proxy_replaced": not proxy_kept,
    }
    print(
        f"compared under {args.clients} clients: {len(results)} blue-green deploys "
        f"({len(clean)} without a failed request, {figures['failed_requests']} failed of "
        f"{figures['requests']}, p99 {figures['p99_ms_during_switch']} ms at the switch vs "
        f"{figures['p99_ms_steady']} ms steady, switch {figures['switch_s']} s) and a rollback to "
        f"{rolled_to} ({figures['rollback_s']} s) against {args.naive} naive recreates "
        f"({figures['naive_failed_requests']} failed of {figures['naive_requests']}, longest gap "
        f"{figures['naive_longest_gap_s']} s); Gitea held: gap {stateful_gap} s, "
        f"{stateful.failed} failed of {stateful.requests}"
    )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

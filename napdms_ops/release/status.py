"""`napdms-ops status`: what each service of a stack runs, per colour and replica, and the last
thing the audit trail says about it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from components.model.release import COLOURS
from components.settings import Stack
from napdms_ops.release.deploy import strategy_of
from napdms_ops.release.journal import Journal
from napdms_ops.release.runtime import Runtime
from napdms_ops.release.versions import Version


def _replica(runtime: Runtime, stack: Stack, name: str) -> dict[str, Any]:
    state = runtime.state(f"{stack.name_prefix}-{name}")
    return {
        "container": f"{stack.name_prefix}-{name}",
        "running": state.running,
        "health": state.health if state.exists else "missing",
        "digest": state.repo_digest,
        "image_id": state.image_id,
        "restarts": state.restart_count,
        "started": state.started_at.isoformat() if state.started_at else None,
    }


def status(stack: Stack, runtimes: Callable[[str | None], Runtime], journal: Journal) -> dict:
    """The stack's services as one JSON-ready document (`--json` prints it)."""
    services = []
    for service, spec in stack.services.items():
        runtime = runtimes(stack.endpoint_of(service))
        last = journal.last(service)
        entry: dict[str, Any] = {
            "service": service,
            "strategy": strategy_of(spec),
            "live": spec.colours.live if spec.colours else None,
            "last": last.model_dump() if last else None,
        }
        if spec.colours is not None:
            entry["colours"] = {
                colour: {
                    "image": spec.colour_image_ref(colour),
                    "version": str(Version.of_ref(spec.colour_image_ref(colour), spec.image)),
                    "replicas": [
                        _replica(runtime, stack, name)
                        for name in stack.context.colour_replica_names(service, colour)
                    ],
                }
                for colour in COLOURS
            }
        else:
            entry["image"] = spec.image_ref
            entry["version"] = str(Version(spec.tag, spec.digest))
            entry["replicas"] = [
                _replica(runtime, stack, name) for name in stack.context.replica_names(service)
            ]
        services.append(entry)
    return {"stack": stack.name, "services": services}


def document(report: dict) -> str:
    """`report` as the JSON `--json` prints."""
    return json.dumps(report, indent=2)


def _health(replicas: list[dict]) -> str:
    return " ".join(f"{r['container'].rsplit('-', 1)[-1]}:{r['health'] or 'up'}" for r in replicas)


def _short(digest: str | None) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "-"


def print_status(report: dict, console: Any) -> None:
    """`report` as a table on a rich `console`: one row per service, and per colour."""
    from rich.table import Table

    table = Table(title=f"stack {report['stack']}")
    for column in ("service", "strategy", "colour", "version", "running digest", "health", "last"):
        table.add_column(column)
    for entry in report["services"]:
        last = entry["last"]
        said = f"{last['action']} {last['result']} {last['time']}" if last else "-"
        if "colours" in entry:
            for colour, data in entry["colours"].items():
                mark = f"{colour} (live)" if colour == entry["live"] else colour
                digests = {_short(r["digest"]) for r in data["replicas"]}
                table.add_row(
                    entry["service"],
                    entry["strategy"],
                    mark,
                    data["version"],
                    ", ".join(sorted(digests)),
                    _health(data["replicas"]),
                    said if colour == entry["live"] else "",
                )
        else:
            digests = {_short(r["digest"]) for r in entry["replicas"]}
            table.add_row(
                entry["service"],
                entry["strategy"],
                "-",
                entry["version"],
                ", ".join(sorted(digests)),
                _health(entry["replicas"]),
                said,
            )
    console.print(table)

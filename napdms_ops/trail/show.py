"""`audit-log show`: the records of one or every stack, filtered by service, command and time."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from napdms_ops.trail.chain import TrailRecord

_RELATIVE = re.compile(r"(\d+)([mhdw])\Z")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def moment(value: str, now: datetime) -> datetime:
    """`--since`/`--until`: ISO 8601 (UTC when it names no offset), or a span before `now` such
    as 30m, 12h, 7d, 2w. Raises ValueError naming the accepted forms."""
    relative = _RELATIVE.match(value.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative[2]]: int(relative[1])})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r}: not a time; use ISO 8601 (2026-12-01 or 2026-12-01T09:30Z) or a span "
            "before now (30m, 12h, 7d, 2w)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(record: TrailRecord) -> datetime:
    """The record's time, as a datetime."""
    return datetime.fromisoformat(record.time)


def select(
    records: Iterable[TrailRecord],
    service: str | None = None,
    command: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[TrailRecord]:
    """The records matching every filter given (`since` inclusive, `until` exclusive)."""
    return [
        record
        for record in records
        if (service is None or record.service == service)
        and (command is None or record.command == command)
        and (since is None or when(record) >= since)
        and (until is None or when(record) < until)
    ]


def _changes(record: TrailRecord) -> str:
    return ", ".join(f"{key}={value}" for key, value in record.changes.items() if value is not None)


def table(records: list[TrailRecord]):
    """A rich table of `records`, one row each."""
    from rich.table import Table

    shown = Table("stack", "seq", "time (UTC)", "operator", "commit", "command", "service")
    shown.add_column("result")
    shown.add_column("changes / reason", overflow="fold")
    for record in records:
        commit = (record.commit or "-")[:8] + (" dirty" if record.dirty else "")
        detail = "; ".join(part for part in (_changes(record), record.reason) if part)
        shown.add_row(
            record.stack,
            str(record.seq),
            record.time[:19].replace("T", " "),
            record.operator,
            commit,
            record.command,
            record.service or "-",
            record.result,
            detail,
        )
    return shown

"""Value types shared by the settings and the catalog: memory sizes, CPU counts, durations.

Each type parses what an operator would naturally write in a stack file ("512m", "1.5",
"30s") and rejects anything else with a message that shows a correct example.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt])(?:i?b)?\s*$", re.IGNORECASE)
_SIZE_FACTORS_MB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
MAX_SIZE_MB = 1024 * 1024
"""1t: more memory than any host of this platform has, so a larger size is a typo."""
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
MAX_DURATION_S = 24 * 3600
"""A day: longer than any health-check interval or timeout could sensibly be."""


def parse_size_mb(value: object) -> int:
    """Return a memory size in MiB, the unit pulumi-docker's `memory` field takes."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'{value!r} is not a size; use a string with a unit, e.g. "512m" or "2g"')
    shown = f'"{value}"' if len(value) <= 80 else f'"{value[:72]}...(cut)"'
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f'{shown} is not a size; use e.g. "512m"')
    megabytes = float(match.group(1)) * _SIZE_FACTORS_MB[match.group(2).lower()]
    if megabytes < 4:
        raise ValueError(f'{shown} is below Docker\'s 4m minimum; use e.g. "64m"')
    if megabytes > MAX_SIZE_MB:
        raise ValueError(
            f'{shown} is more memory than any host has; use at most "1t", e.g. "512m" or "2g"'
        )
    return int(megabytes)


def parse_cpus(value: object) -> float:
    """Return a CPU count (Docker's --cpus): a positive number such as 0.5 or 2."""
    try:
        cpus = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        cpus = None
    if cpus is None:
        raise ValueError(f'{value!r} is not a CPU count; use e.g. "0.5" or 2')
    if not 0.01 <= cpus <= 256:
        raise ValueError(f"{value!r} is out of range; use a CPU count between 0.01 and 256")
    return cpus


def parse_duration(value: object) -> str:
    """Check a Docker-style duration ("500ms", "10s", "5m") and return it unchanged."""
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'{value!r} is not a duration; use e.g. "10s" or "5m"')
    if len(match.group(1)) > 9 or _seconds(match) > MAX_DURATION_S:
        raise ValueError(f'{value!r} is longer than a day; use e.g. "10s" or "5m"')
    return value


def duration_seconds(value: str) -> float:
    """Seconds in a Docker-style duration ("500ms", "10s", "5m")."""
    return _seconds(_DURATION.fullmatch(parse_duration(value)))


def _seconds(match: re.Match[str]) -> float:
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def format_size_mb(megabytes: int) -> str:
    """Render MiB the way an operator writes it, for messages."""
    return f"{megabytes // 1024}g" if megabytes % 1024 == 0 else f"{megabytes}m"


SizeMB = Annotated[
    int,
    BeforeValidator(parse_size_mb),
    # JSON holds a size as an operator writes it, so a dumped model validates again unchanged.
    PlainSerializer(format_size_mb, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": _SIZE.pattern, "examples": ["512m", "2g"]}),
]
"""Memory size written with a unit ("512m", "2g"), held as MiB."""

Cpus = Annotated[
    float,
    BeforeValidator(parse_cpus),
    WithJsonSchema({"type": ["number", "string"], "examples": [0.5, "2"]}),
]
"""CPU count as Docker's --cpus takes it."""

Duration = Annotated[
    str,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": "string", "pattern": _DURATION.pattern, "examples": ["10s"]}),
]
"""Duration as Docker health checks take it."""

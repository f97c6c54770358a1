"""What the trail tests append: a record body (everything but seq, prev and hash, which the trail
adds) and a collector of the warnings a trail gives when its mirror cannot be written."""

from __future__ import annotations

from typing import Any


def record_body(**fields: Any) -> dict[str, Any]:
    """A successful `up` on dev by `ops`; `fields` replace any of its values."""
    return {
        "time": "2026-12-01T09:30:00.000Z",
        "operator": "ops",
        "commit": "abc",
        "dirty": False,
        "stack": "dev",
        "command": "up",
        "service": None,
        "changes": {},
        "result": "ok",
        "reason": None,
        **fields,
    }


class Warnings(list):
    """Collects the trail's warnings (its `warn` callable) in order."""

    def __call__(self, message: str) -> None:
        self.append(message)

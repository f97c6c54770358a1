"""The hash chain: each record carries the SHA-256 of its own canonical JSON and of the record
before it, so an edited, inserted, deleted or reordered line no longer links."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from components.model.strict import StrictModel

GENESIS = "0" * 64
"""The `prev` of the first record."""


class TrailRecord(StrictModel):
    """One line of a stack's audit trail."""

    seq: int
    """1 for the first record, one more for each after it."""
    time: str
    """UTC, ISO 8601 with a Z."""
    operator: str
    commit: str | None
    """The project's git HEAD (no `-dirty` suffix); None outside git."""
    dirty: bool
    """Whether the working tree differed from `commit`."""
    stack: str
    command: str
    """up, deploy, switch, rollback, rotate, restore, drill, drift-accept, exemption, ..."""
    service: str | None
    changes: dict[str, Any]
    """What changed (JSON, never a secret value)."""
    result: str
    """ok, refused, rolled-back or failed."""
    reason: str | None
    prev: str
    """The previous record's `hash`; GENESIS for the first."""
    hash: str
    """SHA-256 (hex) of the canonical JSON of every other field."""


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The bytes a record is hashed and stored as: JSON, sorted keys, no spaces."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def digest(fields: Mapping[str, Any]) -> str:
    """The hash of a record's fields (its own `hash` left out)."""
    return hashlib.sha256(canonical({k: v for k, v in fields.items() if k != "hash"})).hexdigest()


def seal(body: Mapping[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """`body` (every field but seq, prev and hash) as the record after (`seq` - 1, `prev`)."""
    # Through JSON once, so the stored text and the hashed value are the same data (tuples,
    # non-string keys and the like would otherwise hash differently from what is read back).
    fields = {**json.loads(json.dumps(dict(body))), "seq": seq, "prev": prev}
    return {**fields, "hash": digest(fields)}


def line_of(fields: Mapping[str, Any]) -> bytes:
    """A sealed record as one line of the trail file."""
    return canonical(fields) + b"\n"

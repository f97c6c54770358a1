"""Every secret a stack uses, with its kind, rotation counter, age and next due date.

Times come from the best witness there is, never invented:

- the stack's Pulumi state (`export_stack()`, where the Pulumi CLI exists): each generated secret
  is a RandomPassword `<name>-value` (and `<name>-value-odd` when its previous value is kept),
  whose `created` time is when its current value was made, since a rotation replaces it;
- else the audit trail: the latest successful `rotate` record of the secret, and the first
  successful `up` of the stack as the time the secrets came into use;
- else "unknown", shown as such: no age, no due date, not overdue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from components.model.operator_keys import BY_SECRET
from components.settings.stack import Stack

RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
"""The resource type of a generated secret's value in Pulumi state."""
SLOTS = ("-value", "-value-odd")
"""Suffixes of a generated secret's RandomPassword resources (see `GeneratedSecret`)."""

Kind = Literal["generated", "operator-set"]
Source = Literal["state", "trail", "unknown"]


@dataclass(frozen=True)
class SecretAge:
    """One secret of a stack: what it is and how old, never its value."""

    name: str
    kind: Kind
    rotation: int | None
    """The stack's `secrets.rotation.<name>` counter; None for an operator-set key."""
    holders: tuple[str, ...]
    """The services that read it."""
    created: datetime | None
    """When it came into use (first `up`, or its value's creation in state); None: unknown."""
    last_rotation: datetime | None
    """When it was last rotated; None: never, or unknown (see `source`)."""
    source: Source
    """Where `created`/`last_rotation` come from."""
    max_age_days: int
    now: datetime

    @property
    def since(self) -> datetime | None:
        """When the current value was made: the last rotation, else the creation."""
        return self.last_rotation or self.created

    @property
    def age(self) -> timedelta | None:
        """How old the current value is; None when unknown."""
        return None if self.since is None else self.now - self.since

    @property
    def due(self) -> datetime | None:
        """When it must be rotated next; None when its age is unknown."""
        return None if self.since is None else self.since + timedelta(days=self.max_age_days)

    @property
    def overdue(self) -> bool | None:
        """Past its due date; None when unknown."""
        return None if self.due is None else self.now > self.due

    def as_json(self) -> dict[str, Any]:
        """The fields as JSON values (times ISO 8601 UTC, unknown ones null)."""
        age = self.age
        return {
            "name": self.name,
            "kind": self.kind,
            "rotation": self.rotation,
            "holders": list(self.holders),
            "created": iso(self.created),
            "last_rotation": iso(self.last_rotation),
            "source": self.source,
            "age_days": None if age is None else round(age.total_seconds() / 86400, 1),
            "max_age_days": self.max_age_days,
            "due": iso(self.due),
            "overdue": self.overdue,
        }


def iso(moment: datetime | None) -> str | None:
    """`moment` as ISO 8601 UTC with a Z, None kept."""
    if moment is None:
        return None
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: object) -> datetime | None:
    """An ISO 8601 time as Pulumi state and the audit trail write it; None if it is none."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def holders_of(stack: Stack) -> dict[str, tuple[str, ...]]:
    """The services reading each secret the stack rotates, in catalog order."""
    holders: dict[str, list[str]] = {name: [] for name in stack.settings.rotatable_secrets()}
    for service, spec in stack.services.items():
        for use in spec.secrets:
            if use.secret in holders and service not in holders[use.secret]:
                holders[use.secret].append(service)
    return {name: tuple(services) for name, services in holders.items()}


@dataclass(frozen=True)
class _Witnessed:
    created: datetime | None = None
    last_rotation: datetime | None = None


def from_state(resources: Sequence[Mapping[str, Any]]) -> dict[str, _Witnessed]:
    """What Pulumi state says of each generated secret: its first slot's creation while never
    rotated, and the creation of the slot holding the current counter (a rotation replaces it)."""
    slots: dict[str, dict[int, datetime]] = {}
    for resource in resources:
        if resource.get("type") != RANDOM_PASSWORD:
            continue
        name = str(resource.get("urn", "")).rsplit("::", 1)[-1]
        secret = next((name.removesuffix(s) for s in SLOTS[::-1] if name.endswith(s)), None)
        created = parse_time(resource.get("created")) or parse_time(resource.get("modified"))
        keepers = (resource.get("inputs") or {}).get("keepers") or {}
        try:
            counter = int(keepers.get("rotation", 0))
        except (TypeError, ValueError):
            continue
        if secret is not None and created is not None:
            slots.setdefault(secret, {})[counter] = created
    witnessed = {}
    for secret, by_counter in slots.items():
        newest = max(by_counter)
        made = by_counter[newest]
        witnessed[secret] = (
            _Witnessed(created=made) if newest == 0 else _Witnessed(last_rotation=made)
        )
    return witnessed


def from_trail(records: Iterable[Any]) -> tuple[datetime | None, dict[str, datetime]]:
    """The first successful `up` and each secret's latest successful `rotate`, from the audit
    trail's records (oldest first)."""
    first_up: datetime | None = None
    rotated: dict[str, datetime] = {}
    for record in records:
        if record.result != "ok":
            continue
        moment = parse_time(record.time)
        if moment is None:
            continue
        if record.command == "up" and first_up is None:
            first_up = moment
        changes = record.changes if isinstance(record.changes, Mapping) else {}
        if record.command == "rotate" and isinstance(changes.get("secret"), str):
            rotated[changes["secret"]] = moment
    return first_up, rotated


def inventory(
    stack: Stack,
    records: Iterable[Any],
    state: Sequence[Mapping[str, Any]] | None,
    now: datetime,
) -> list[SecretAge]:
    """Every secret `stack` rotates, in catalog order. `records`: its audit trail; `state`: the
    resources of its exported Pulumi state, None where it cannot be read."""
    first_up, rotated = from_trail(records)
    witnessed = from_state(state) if state is not None else {}
    settings = stack.settings.secrets
    ages = []
    for name, holders in holders_of(stack).items():
        generated = name not in BY_SECRET
        seen = witnessed.get(name) if generated else None
        if seen is not None:
            created = seen.created or first_up
            last, source = seen.last_rotation, "state"
        elif first_up is not None or name in rotated:
            created, last, source = first_up, rotated.get(name), "trail"
        else:
            created, last, source = None, None, "unknown"
        ages.append(
            SecretAge(
                name=name,
                kind="generated" if generated else "operator-set",
                rotation=settings.rotation.get(name, 0) if generated else None,
                holders=holders,
                created=created,
                last_rotation=last,
                source=source,
                max_age_days=settings.max_age(name),
                now=now,
            )
        )
    return ages

"""`audit-log verify`: walk a trail's chain and say which record was edited, inserted, deleted or
moved; against the mirror, which records the local trail lost or changed."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Literal

from components.model.strict import StrictModel
from napdms_ops.trail.chain import GENESIS, digest

Where = Literal["local", "mirror"]
Kind = Literal[
    "unreadable",
    "edited",
    "inserted",
    "deleted",
    "reordered",
    "truncated",
    "diverged",
    "unmirrored",
]


class Problem(StrictModel):
    """One thing wrong with a trail."""

    where: Where
    kind: Kind
    """unmirrored is the only kind that is not tampering: the mirror has not received the newest
    records yet (the next append sends them)."""
    seq: int | None
    """The record concerned (the first one for a range); None for a line that is no record."""
    line: int | None
    """1-based line in `where`'s file (for deleted records: the line after the gap); None for
    records missing at the end."""
    detail: str


class Verdict(StrictModel):
    """What `verify` found."""

    stack: str
    records: int
    mirror: str | None
    """Where the mirror is; None when verify compared none."""
    mirror_records: int | None
    mirror_error: str | None
    """Why the mirror could not be read."""
    problems: list[Problem]

    @property
    def tampered(self) -> bool:
        """Whether any record was edited, inserted, deleted, moved or lost."""
        return any(problem.kind != "unmirrored" for problem in self.problems)

    @property
    def exit_code(self) -> int:
        """1 tampered, 2 the mirror could not be read, else 0."""
        return 1 if self.tampered else 2 if self.mirror_error else 0


def _span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}-{last}"


def _parsed(lines: list[bytes]) -> tuple[list[tuple[int, dict[str, Any]]], list[int]]:
    """(line number, fields) of every line that is a record; the numbers of those that are not."""
    records, unreadable = [], []
    for number, line in enumerate(lines, 1):
        try:
            fields = json.loads(line)
        except ValueError:
            fields = None
        ok = isinstance(fields, dict) and isinstance(fields.get("seq"), int)
        ok = ok and all(isinstance(fields.get(key), str) for key in ("hash", "prev"))
        if ok:
            records.append((number, fields))
        else:
            unreadable.append(number)
    return records, unreadable


def _genuine(copies: list[tuple[int, dict]], by_seq: dict[int, list]) -> tuple[int, dict]:
    """Of records sharing a seq, the one the next record links to (else the first)."""
    successors = by_seq.get(copies[0][1]["seq"] + 1, [])
    linked = {fields["prev"] for _, fields in successors}
    return next((copy for copy in copies if copy[1]["hash"] in linked), copies[0])


def _chain(
    records: list[tuple[int, dict]],
) -> tuple[dict[int, tuple[int, dict]], list[tuple[int, dict]]]:
    """The record of each seq the chain runs through, and the extra copies (inserted)."""
    by_seq: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    for number, fields in records:
        by_seq[fields["seq"]].append((number, fields))
    chain = {seq: _genuine(copies, by_seq) for seq, copies in by_seq.items()}
    inserted = [entry for entry in records if chain[entry[1]["seq"]] != entry]
    return chain, inserted


def walk(lines: list[bytes], where: Where = "local") -> list[Problem]:
    """Every break in one file's chain, in line order."""
    records, unreadable = _parsed(lines)
    problems = [
        Problem(where=where, kind="unreadable", seq=None, line=n, detail="not a trail record")
        for n in unreadable
    ]
    for number, fields in records:
        if digest(fields) != fields["hash"]:
            problems.append(
                Problem(
                    where=where,
                    kind="edited",
                    seq=fields["seq"],
                    line=number,
                    detail=f"seq {fields['seq']}: its content no longer matches its hash",
                )
            )
    chain, inserted = _chain(records)
    for number, fields in inserted:
        seq = fields["seq"]
        problems.append(
            Problem(
                where=where,
                kind="inserted",
                seq=seq,
                line=number,
                detail=f"seq {seq} a second time; the chain runs through line {chain[seq][0]}",
            )
        )
    problems += _gaps(chain, unreadable, where) + _moves(chain, where) + _relinks(chain, where)
    return sorted(problems, key=lambda p: (p.line or 0, p.seq or 0))


def _gaps(chain: dict[int, tuple[int, dict]], unreadable: list[int], where: Where) -> list[Problem]:
    """Seqs missing between 1 and the last, unless unreadable lines stand in their place (a
    truncated tail shows only against the mirror)."""
    problems, present = [], sorted(chain)
    for before, after in zip([0, *present], present, strict=False):
        line = chain[after][0]
        start = chain[before][0] if before else 0
        garbled = sum(1 for number in unreadable if start < number < line)
        if after - before - 1 > garbled:
            problems.append(
                Problem(
                    where=where,
                    kind="deleted",
                    seq=before + 1,
                    line=line,
                    detail=f"{_span(before + 1, after - 1)} missing before this line",
                )
            )
    return problems


def _moves(chain: dict[int, tuple[int, dict]], where: Where) -> list[Problem]:
    """Records that stand after a later one."""
    problems, highest = [], 0
    for number, fields in sorted(chain.values(), key=lambda entry: entry[0]):
        if fields["seq"] < highest:
            problems.append(
                Problem(
                    where=where,
                    kind="reordered",
                    seq=fields["seq"],
                    line=number,
                    detail=f"seq {fields['seq']} stands after seq {highest}",
                )
            )
        highest = max(highest, fields["seq"])
    return problems


def _relinks(chain: dict[int, tuple[int, dict]], where: Where) -> list[Problem]:
    """Records whose own hash checks but which the next record does not link to: edited, with the
    hash recomputed (the next record still names the original)."""
    problems = []
    first = chain.get(1)
    if first and digest(first[1]) == first[1]["hash"] and first[1]["prev"] != GENESIS:
        problems.append(
            Problem(
                where=where,
                kind="edited",
                seq=1,
                line=first[0],
                detail="seq 1 does not start the chain",
            )
        )
    for seq, (number, fields) in chain.items():
        after = chain.get(seq + 1)
        sound = digest(fields) == fields["hash"]
        if after and sound and digest(after[1]) == after[1]["hash"]:
            if after[1]["prev"] != fields["hash"]:
                problems.append(
                    Problem(
                        where=where,
                        kind="edited",
                        seq=seq,
                        line=number,
                        detail=(
                            f"seq {seq}: its hash was recomputed; seq {seq + 1} (line {after[0]}) "
                            "names another record before it"
                        ),
                    )
                )
    return problems


def compare(local: list[bytes], mirror: list[bytes]) -> list[Problem]:
    """What the local trail lost or changed against the mirror's copy (and the mirror's own
    breaks)."""
    mine, theirs = _chain(_parsed(local)[0])[0], _chain(_parsed(mirror)[0])[0]
    problems = walk(mirror, "mirror")
    for seq in sorted(mine.keys() & theirs.keys()):
        (number, held), (_, copy) = mine[seq], theirs[seq]
        if held != copy:
            fields = sorted(k for k in held.keys() | copy.keys() if held.get(k) != copy.get(k))
            problems.append(
                Problem(
                    where="local",
                    kind="diverged",
                    seq=seq,
                    line=number,
                    detail=f"seq {seq} differs from the mirror's copy in: {', '.join(fields)}",
                )
            )
    last = max(mine, default=0)
    lost = sorted(seq for seq in theirs if seq > last)
    if lost:
        problems.append(
            Problem(
                where="local",
                kind="truncated",
                seq=lost[0],
                line=None,
                detail=f"{_span(lost[0], lost[-1])}: held by the mirror, gone from the local trail",
            )
        )
    behind = sorted(seq for seq in mine if seq > max(theirs, default=0))
    if behind:
        problems.append(
            Problem(
                where="mirror",
                kind="unmirrored",
                seq=behind[0],
                line=None,
                detail=f"{_span(behind[0], behind[-1])} not copied yet (the next record sends it)",
            )
        )
    return problems


def verify(
    stack: str,
    local: list[bytes],
    mirror: list[bytes] | None = None,
    where: str | None = None,
    mirror_error: str | None = None,
) -> Verdict:
    """The verdict on `stack`'s trail, against the mirror's lines when given."""
    problems = walk(local) + (compare(local, mirror) if mirror is not None else [])
    return Verdict(
        stack=stack,
        records=len(_parsed(local)[0]),
        mirror=where,
        mirror_records=len(_parsed(mirror)[0]) if mirror is not None else None,
        mirror_error=mirror_error,
        problems=problems,
    )

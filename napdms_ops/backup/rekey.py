"""Moving a repository from the previous `restic-password` to the current one, safely.

Raising `secrets.rotation.restic-password` makes a new password, but the repository stays
encrypted under keys that only the old one opens. The program therefore hands the agent both
(`/run/secrets/restic-password` and `/run/secrets/restic-password-previous`, the plan's
`password_file` and `previous_password_file`), and the agent, at its start and before each run,
brings the repository to the current one in steps that each leave it openable:

1. the current password opens it: if the previous one still opens it too, remove the previous
   key (its id as the previous password's own listing names it). Done.
2. otherwise the previous password must open it: `restic key add` the current one, list the keys
   with the current one (the check that it opens), then remove the previous key.

Stopped at any point, a later call carries on from what it finds: the previous key is removed only
after the current password has opened the repository, so one of the two always does. Passwords
stay in their files (`RESTIC_PASSWORD_FILE`, `--new-password-file`), never on argv or in env.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from components.model.plan import BackupPlan, Repository
from napdms_ops.backup.restic import Restic, ResticError

log = logging.getLogger(__name__)

Outcome = Literal[
    "current",
    "rotated",
    "removed-previous",
    "no-repository",
    "no-previous",
    "failed",
]
"""`current`: nothing to do; `rotated`: the current key was added and the previous removed;
`removed-previous`: an earlier, interrupted rotation finished; `no-repository`: not initialised yet
(init uses the current password); `no-previous`: the plan names no previous password; `failed`: see
the error."""


class NeitherOpens(ResticError):
    """Neither the current nor the previous password opens the repository."""


@dataclass(frozen=True)
class Rekeyed:
    """What one repository's rekey did."""

    repository: str
    outcome: Outcome
    error: str | None = None


Step = Literal["added", "verified", "removed"]


def rekey(
    restic: Restic,
    previous_file: str | None,
    after: Callable[[Step], None] = lambda step: None,
) -> Outcome:
    """Make the current password (restic's `password_file`) open the repository and the previous
    one (`previous_file`) no longer; idempotent. `after` is called after each step (tests stop
    there). Raises `NeitherOpens` if neither password opens it, `ResticError` on other failures
    (a later call carries on)."""
    if previous_file is None:
        return "no-previous"
    try:
        mine = restic.own_key()
    except ResticError as error:
        if error.kind == "no-repository":
            return "no-repository"
        if error.kind != "wrong-password":
            raise
        mine = None
    old = restic.with_password_file(previous_file)
    if mine is not None:
        try:
            theirs = old.own_key()
        except ResticError as error:
            if error.kind in ("wrong-password", "missing-password"):
                return "current"  # the previous password is no key (any more)
            raise
        if theirs.id == mine.id:
            return "current"  # both files hold the same password
        restic.remove_key(theirs.id)
        after("removed")
        return "removed-previous"
    try:
        theirs = old.own_key()
    except ResticError as error:
        if error.kind != "wrong-password":
            raise
        raise NeitherOpens(
            "wrong-password",
            restic.url,
            "rekey",
            "neither restic-password nor restic-password-previous opens the repository "
            "(was secrets.rotation.restic-password raised twice before the agent started?)",
        ) from None
    old.add_key(restic.repository.password_file)
    after("added")
    mine = restic.own_key()  # the current password opens it: only now may the old key go
    after("verified")
    if mine.id == theirs.id:
        return "current"
    restic.remove_key(theirs.id)
    after("removed")
    return "rotated"


def repositories(plan: BackupPlan) -> list[Repository]:
    """The plan's repositories that share the restic password: primary, and offsite if any."""
    return [plan.repository] + ([plan.offsite.repository] if plan.offsite else [])


def rekey_plan(plan: BackupPlan, binary: str = "restic") -> list[Rekeyed]:
    """Rekey each repository of the plan; never raises (the run that follows reports a repository
    that does not open), logs a `rekey` line for each repository that changed or failed."""
    done: list[Rekeyed] = []
    for repository in repositories(plan):
        restic = Restic(repository, plan.cache_dir, binary)
        try:
            outcome: Outcome = rekey(restic, repository.previous_password_file)
            error = None
        except Exception as failure:  # the loop goes on; its run reports a wrong password
            outcome, error = "failed", str(failure) or type(failure).__name__
        done.append(Rekeyed(restic.url, outcome, error))
        if error:
            log.error("rekey %s: %s", restic.url, error)
        elif outcome in ("rotated", "removed-previous"):
            log.warning("rekey %s: %s: the current restic-password opens it", restic.url, outcome)
    return done

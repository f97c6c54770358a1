"""The backup agent's own command line, run inside the agent image (or any host with restic).

    python3 -m napdms_ops.backup agent   --plan P        schedule loop + /metrics
                                                         (the container's process)
    python3 -m napdms_ops.backup health  --plan P        0 while the loop beats and its run
                                                         moves (the plan's `health` bounds)
    python3 -m napdms_ops.backup run|list|verify|prune|init --plan P
    python3 -m napdms_ops.backup restore --plan P --snapshot S --into DIR [--service s] [--force]
    python3 -m napdms_ops.backup drill   --plan P [--snapshot S] [--data-bytes N]

Each command prints one JSON object on stdout; errors are one line on stderr, as are warnings
(an unreadable manifest, skipped) and the agent's log. Exit codes:
0 done, 1 the run/check/drill failed, 2 unusable plan or arguments, 3 another run holds the lock.
The operators' CLI (`python3 -m napdms_ops backup ...`) calls these on the right host.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence

from components.model.plan import PLAN_FILE, PlanError, load_plan
from napdms_ops.backup import agent
from napdms_ops.backup.offsite import OffsiteError
from napdms_ops.backup.restic import ResticError
from napdms_ops.backup.run import RunLocked


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of bytes")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m napdms_ops.backup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("agent", "run backups on the plan's schedule and serve /metrics"),
        ("health", "exit 0 while the agent loop beats and its run makes progress"),
        ("run", "one backup run now"),
        ("list", "the finished runs in the repository"),
        ("verify", "restic check (a subset of the data, or all with --full)"),
        ("prune", "apply the retention policy"),
        ("init", "create the repository (and prepare the offsite bucket)"),
        ("restore", "restore a run into a directory"),
        ("drill", "restore the latest run into scratch space, verify it, extrapolate the RTO"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--plan", default=PLAN_FILE, help=f"backup plan file (default {PLAN_FILE})"
        )
        if name == "verify":
            command.add_argument(
                "--full", action="store_true", help="read every pack, not a subset"
            )
        if name in ("restore", "drill"):
            command.add_argument(
                "--snapshot",
                default="latest",
                help="latest, a run or snapshot id, or a time like 2026-11-20T03:00",
            )
        if name == "restore":
            command.add_argument(
                "--into",
                required=True,
                help="directory to restore under (must be empty without --force)",
            )
            command.add_argument(
                "--service",
                action="append",
                default=[],
                help="restore only this service (repeatable)",
            )
            command.add_argument(
                "--force",
                action="store_true",
                help="overwrite a non-empty --into after a safety snapshot",
            )
            command.add_argument(
                "--verify", action="store_true", help="re-read restored files against the snapshot"
            )
            command.add_argument(
                "--to",
                default=None,
                help="recover the --service (PostgreSQL with archived WAL) to this moment, "
                "e.g. 2026-11-20T14:05:30 (the plan's time zone) or with an offset",
            )
            command.add_argument(
                "--workdir", default=None, help="scratch space for --to's WAL (default: temp dir)"
            )
        if name == "drill":
            command.add_argument(
                "--data-bytes",
                type=_positive_int,
                default=None,
                help="extrapolate the RTO to this size (default: the run's size)",
            )
            command.add_argument(
                "--workdir", default=None, help="scratch space (default: the system temp dir)"
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run one command, print its JSON result; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        plan = load_plan(args.plan)
        result, code = agent.dispatch(plan, args)
    except PlanError as error:
        print(str(error), file=sys.stderr)
        return 2
    except RunLocked as error:
        print(str(error), file=sys.stderr)
        return 3
    except (ResticError, agent.CommandError, OffsiteError) as error:
        print(str(error), file=sys.stderr)
        return 1
    if result is not None:
        print(
            json.dumps(
                dataclasses.asdict(result) if dataclasses.is_dataclass(result) else result,
                default=str,
            )
        )
    return code


if __name__ == "__main__":
    sys.exit(main())

"""How long each stack takes to evaluate under Pulumi mocks (goal: under 5 s each), next to a
bare program that registers the same number of resources without our settings and components.

Run: python tests/bench/evaluate_stacks.py [--runs N]
"""

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.timing import median_seconds  # noqa: E402
from tests.program import STACKS, run_program  # noqa: E402

BASELINE = Path(__file__).with_name("baseline_program.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    run_program("dev")  # imports and first-run caches out of the measurement
    figures = {"runs": args.runs}
    for stack in STACKS:
        ours, program = median_seconds(args.runs, lambda stack=stack: run_program(stack))
        resources = len(program.resources)
        os.environ["BASELINE_RESOURCES"] = str(resources)
        base, _ = median_seconds(
            args.runs, lambda stack=stack: run_program(stack, config={}, main=BASELINE)
        )
        print(
            f"{stack:8} ours {ours:6.3f} s for {resources} resources | "
            f"bare program with {resources} containers {base:6.3f} s | ratio {ours / base:4.2f}"
        )
        figures[stack] = {
            "resources": resources,
            "evaluate_s": round(ours, 4),
            "baseline_s": round(base, 4),
            "ratio": round(ours / base, 3),
            "under_5s": ours < 5,
        }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

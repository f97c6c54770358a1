"""CI's policy gate: `python3 -m tests.policy.run_pack [stack ...]`.

Runs the program for each stack under mocks, sends every declared resource and then the whole
stack to the policy pack over its gRPC protocol with the stack's policy config (what `pulumi
preview --policy-pack policies --policy-pack-config policies/config/<stack>.json` does), prints
each stack's tally and every mandatory violation, and exits 1 if there is any.
"""

from __future__ import annotations

import sys
from collections import Counter

from tests.policy.analyzer import PackProcess
from tests.program import STACKS, run_program


def main(stacks: list[str]) -> int:
    failed = False
    with PackProcess() as pack:
        for stack in stacks:
            program = run_program(stack)
            pack.configure(stack)
            diagnostics = pack.analyze_program(program)
            levels = Counter(d.level for d in diagnostics)
            print(
                f"policy pack on {stack}: {len(program.resources)} resources, "
                f"{levels['mandatory']} mandatory, {levels['advisory']} advisory "
                "(exemptions and relaxed rules)"
            )
            for d in diagnostics:
                if d.level == "mandatory":
                    failed = True
                    print(f"  MANDATORY {d.policy} {d.urn}: {d.message}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(STACKS)))

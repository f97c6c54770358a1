"""Same config, same resource graph: `pulumi preview` stays a drift detector."""

import json

import pytest

from tests.program import STACKS, run_program


def _graph(program) -> str:
    # Registration order varies with RPC scheduling; the engine keys resources by URN.
    return json.dumps(
        sorted(
            [r.urn, r.parent, r.provider, r.protect, sorted(r.dependencies), r.inputs] for r in program.resources
        ),
        sort_keys=True,
    )


@pytest.mark.parametrize("stack", STACKS)
def test_two_runs_declare_identical_resources(stack):
    assert _graph(run_program(stack)) == _graph(run_program(stack))

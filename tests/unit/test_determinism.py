"""Same config, same resource graph: `pulumi preview` stays a drift detector."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.program import ROOT, STACKS, run_program


def _graph(program) -> str:
    # Registration order varies with RPC scheduling; the engine keys resources by URN.
    return json.dumps(
        sorted(
            [r.urn, r.parent, r.provider, r.protect, sorted(r.dependencies), r.inputs]
            for r in program.resources
        ),
        sort_keys=True,
    )


@pytest.mark.parametrize("stack", STACKS)
def test_two_runs_declare_identical_resources(stack):
    assert _graph(run_program(stack)) == _graph(run_program(stack))


_GRAPH_DIGEST = """
import hashlib, sys
from tests.unit.test_determinism import _graph
from tests.program import run_program
print(hashlib.sha256(_graph(run_program(sys.argv[1])).encode()).hexdigest())
"""


@pytest.mark.parametrize("stack", STACKS)
def test_separate_processes_with_different_hash_seeds_declare_identical_resources(stack):
    digests = {
        subprocess.run(
            [sys.executable, "-c", _GRAPH_DIGEST, stack],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(digests) == 1, f"{stack} declares a different graph per process"
    assert digests == {hashlib.sha256(_graph(run_program(stack)).encode()).hexdigest()}

"""Shared fixtures: the real program evaluated once per stack under Pulumi mocks."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.program import STACKS, Program, run_program  # noqa: E402

_RUNS: dict[str, Program] = {}


def program_of(stack: str) -> Program:
    """The program as declared for `stack`, evaluated once per test session."""
    if stack not in _RUNS:
        _RUNS[stack] = run_program(stack)
    return _RUNS[stack]


@pytest.fixture(params=STACKS)
def program(request) -> Program:
    """Each stack's declared program in turn."""
    return program_of(request.param)

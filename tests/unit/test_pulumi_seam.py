"""The seam to Pulumi's internals (`napdms_ops/declared/pulumi_seam.py`) still fits the installed
SDK.

After a pulumi upgrade these are the tests to read first: each internal the seam needs is checked
on its own and fails with what is gone and what to do, rather than as a traceback from deep inside
the program's run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pulumi
import pytest

from napdms_ops.declared import pulumi_seam
from napdms_ops.declared.pulumi_seam import COROUTINE, FIELD, FUNCTION, Export, Internal

VERSION = importlib.metadata.version("pulumi")
WAY_OUT = "pin pulumi==3.272.0 in requirements.txt or adapt the seam"


@pytest.mark.parametrize(
    "internal", pulumi_seam.INTERNALS, ids=lambda internal: f"{internal.module}.{internal.name}"
)
def test_installed_pulumi_provides(internal: Internal):
    message = pulumi_seam.problem(internal)
    if message:
        pytest.fail(message, pytrace=False)


@pytest.mark.parametrize(
    ("internal", "lost"),
    [
        (
            Internal("pulumi.runtime.stack", "run_pulumi_funk", "run the program", COROUTINE),
            "no longer provides pulumi.runtime.stack.run_pulumi_funk",
        ),
        (
            Internal("pulumi.runtime.gone", "run_pulumi_func", "run the program", COROUTINE),
            "no longer provides pulumi.runtime.gone.run_pulumi_func",
        ),
        (
            Internal("pulumi.runtime.stack", "Stack.exports", "run the program", FIELD),
            "no longer provides pulumi.runtime.stack.Stack.exports",
        ),
        (
            Internal("pulumi.runtime.sync_await", "_sync_await", "run the program", COROUTINE),
            "provides pulumi.runtime.sync_await._sync_await, but no longer as a coroutine function",
        ),
    ],
    ids=["attribute gone", "module gone", "field gone", "shape changed"],
)
def test_a_lost_internal_is_named_with_the_version_and_the_way_out(internal: Internal, lost: str):
    assert pulumi_seam.problem(internal) == (
        f"pulumi {VERSION} {lost}, which napdms_ops/declared/pulumi_seam.py uses to run the "
        f"program; {WAY_OUT}"
    )


def test_importing_the_seam_fails_plainly_when_an_internal_is_gone(monkeypatch):
    # A fresh copy of the module, so the seam the other tests use stays as imported.
    monkeypatch.delattr(pulumi.runtime.stack, "run_pulumi_func")
    spec = importlib.util.spec_from_file_location("pulumi_seam_copy", pulumi_seam.__file__)
    with pytest.raises(ImportError) as raised:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert str(raised.value) == pulumi_seam.problem(pulumi_seam.RUN_PULUMI_FUNC)
    assert f"pulumi {VERSION} no longer provides pulumi.runtime.stack.run_pulumi_func" in str(
        raised.value
    )


def test_check_names_every_lost_internal():
    gone = Internal("pulumi.runtime.stack", "gone", "run the program", FUNCTION)
    also_gone = Internal("pulumi.runtime.stack", "also_gone", "run the program", FUNCTION)
    with pytest.raises(pulumi_seam.MissingInternal) as raised:
        pulumi_seam.check((*pulumi_seam.INTERNALS, gone, also_gone))
    assert str(raised.value).splitlines() == [
        pulumi_seam.problem(gone),
        pulumi_seam.problem(also_gone),
    ]


class _Mocks(pulumi.runtime.Mocks):
    """Echo inputs and compute one output, as a provider would."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        return f"{args.name}-id", {**args.inputs, "greeting": f"hello {args.inputs['who']}"}

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def _program() -> None:
    thing = pulumi.CustomResource("seam:index:Thing", "thing", {"who": "seam", "greeting": None})
    pulumi.export("greeting", thing.greeting)


def test_an_inline_program_runs_and_its_export_comes_back():
    exports = pulumi_seam.run_under_mocks(_program, _Mocks(), project="seam", stack="test")
    assert exports == {"greeting": Export(value="hello seam", secret=False)}

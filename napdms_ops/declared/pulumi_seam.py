"""The one place the project leans on Pulumi SDK internals: running a whole program under mocks
(the tests, and the ops CLI's view of what a stack declares).

Pulumi's public mocks API (`pulumi.runtime.set_mocks`, `pulumi.runtime.test`) checks resources one
output at a time; it cannot run a program from end to end the way `pulumi up` does and hand back
its stack exports. That takes a few private SDK names, and a pulumi upgrade may drop or reshape any
of them. So each one is listed in `INTERNALS` with what the seam uses it for, the seam looks them
up only through that list, and importing this module fails with a plain message (which internal,
which pulumi, what to do) instead of a traceback from deep inside a test run.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import pulumi
from pulumi.runtime.mocks import MockMonitor

KNOWN_GOOD = "3.272.0"
"""The last pulumi release the seam was checked against: the pin to fall back to."""

FUNCTION = "a function"
COROUTINE = "a coroutine function"
FIELD = "an instance attribute"


class Internal(NamedTuple):
    """A private SDK name the seam uses, and the shape it relies on."""

    module: str
    name: str
    """Dotted path inside `module`; for a `FIELD`, `Class.attribute`."""
    purpose: str
    """What the seam does with it, finishing "which napdms_ops/declared/pulumi_seam.py uses to
    ..."."""
    shape: str
    """`FUNCTION`, `COROUTINE` or `FIELD` (declared on the class, set per instance)."""


SYNC_AWAIT = Internal(
    "pulumi.runtime.sync_await",
    "_sync_await",
    "wait, from synchronous code, for the program's run and for its exports' values",
    FUNCTION,
)
RUN_PULUMI_FUNC = Internal(
    "pulumi.runtime.stack",
    "run_pulumi_func",
    "run the program and wait for all its registrations and outputs, as `pulumi up` does",
    COROUTINE,
)
CLEAR_RPCS = Internal(
    "pulumi.runtime.settings",
    "SETTINGS.rpc_manager.clear",
    "make the run wait only for the program's own RPCs, not those set_mocks started",
    FUNCTION,
)
CLEAR_OUTPUTS = Internal(
    "pulumi.runtime.settings",
    "SETTINGS.outputs.clear",
    "make the run wait only for the program's own outputs, not the root stack's from set_mocks",
    FUNCTION,
)
STACK_OUTPUTS = Internal(
    "pulumi.runtime.stack",
    "Stack.outputs",
    "read the stack's exports, which under mocks never reach the monitor",
    FIELD,
)
OUTPUT_FUTURE = Internal(
    "pulumi.output",
    "Output.future",
    "read an export's value",
    COROUTINE,
)
INTERNALS = (SYNC_AWAIT, RUN_PULUMI_FUNC, CLEAR_RPCS, CLEAR_OUTPUTS, STACK_OUTPUTS, OUTPUT_FUTURE)


class MissingInternal(ImportError):
    """The installed pulumi lacks an internal the seam needs."""


def problem(internal: Internal) -> str | None:
    """Why the installed pulumi cannot serve `internal`, worded for whoever upgraded it; None when
    it can."""
    fits = _fits(internal)
    if fits:
        return None
    where = f"{internal.module}.{internal.name}"
    lost = f"no longer provides {where}"
    if fits is False:
        lost = f"provides {where}, but no longer as {internal.shape}"
    return (
        f"pulumi {importlib.metadata.version('pulumi')} {lost}, which"
        f" napdms_ops/declared/pulumi_seam.py uses to {internal.purpose}; pin"
        f" pulumi=={KNOWN_GOOD} in requirements.txt or adapt the seam"
    )


def check(internals: tuple[Internal, ...]) -> None:
    """Raise `MissingInternal` naming every one of `internals` the installed pulumi cannot serve."""
    problems = [message for message in map(problem, internals) if message]
    if problems:
        raise MissingInternal("\n".join(problems))


def _fits(internal: Internal) -> bool | None:
    """None when `internal` is gone, else whether it still has the shape the seam relies on."""
    *parents, attribute = internal.name.split(".")
    try:
        owner = importlib.import_module(internal.module)
        for parent in parents:
            owner = getattr(owner, parent)
    except (ImportError, AttributeError):
        return None
    if internal.shape == FIELD:
        # Set in __init__, so only the class's annotation can vouch for it before a run.
        return True if attribute in getattr(owner, "__annotations__", {}) else None
    if not hasattr(owner, attribute):
        return None
    value = getattr(owner, attribute)
    return inspect.iscoroutinefunction(value) if internal.shape == COROUTINE else callable(value)


def _use(internal: Internal) -> Any:
    """The object `internal` names, looked up now: the settings it reaches through are replaced
    by every `set_mocks`, so nothing is bound at import."""
    found: Any = importlib.import_module(internal.module)
    for part in internal.name.split("."):
        found = getattr(found, part)
    return found


class Export(NamedTuple):
    """One stack export, resolved."""

    value: Any
    secret: bool


def run_under_mocks(
    program: Callable[[], Any],
    mocks: pulumi.runtime.Mocks,
    monitor: MockMonitor | None = None,
    *,
    project: str,
    stack: str,
) -> dict[str, Export]:
    """Run `program` as `project`/`stack` under `mocks` (and `monitor`, default Pulumi's own) with
    fresh runtime state, and return its stack exports by name.

    Config is not touched: set it with `pulumi.runtime.set_all_config` first.
    """
    pulumi.runtime.reset_options(project=project, stack=stack)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    _use(CLEAR_RPCS)()
    _use(CLEAR_OUTPUTS)()
    sync_await = _use(SYNC_AWAIT)
    sync_await(_use(RUN_PULUMI_FUNC)(program))
    root = pulumi.runtime.get_root_resource()
    exports = getattr(root, STACK_OUTPUTS.name.rpartition(".")[2])
    future = _use(OUTPUT_FUTURE)
    resolved = {}
    for name, value in exports.items():
        output = pulumi.Output.from_input(value)
        resolved[name] = Export(sync_await(future(output)), sync_await(output.is_secret()))
    return resolved


check(INTERNALS)

"""How the ops CLI changes a stack: its config values, and applying them (`up`).

`StackEngine` is the seam the release flows take; `AutomationEngine` implements it with the
Pulumi Automation API, so the next `pulumi preview` sees exactly what a deploy applied (no drift).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from components.settings import read_stack_file
from components.settings.loader import PROJECT_DIR

PROJECT = "nap-dms-platform"
"""The Pulumi project name: the namespace of every config key."""
OUTPUT_LINES_KEPT = 20
"""Lines of the engine's output kept to explain a failed `up`."""


class ApplyError(Exception):
    """Applying the stack failed; `reason` says why (the engine's last words)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class StackEngine(Protocol):
    """One stack's config and its application."""

    stack: str

    def values(self) -> dict[str, Any]:
        """The stack file's `config:` values, keys without the project namespace (as
        `components.settings.read_stack_file` gives them)."""
        ...

    def secret_keys(self) -> set[str]:
        """The keys stored encrypted."""
        ...

    def set_values(self, changes: Mapping[str, str]) -> None:
        """Set config paths (`services.<svc>.colours.live`, ...) to the given values."""
        ...

    def remove_values(self, paths: Iterable[str]) -> None:
        """Remove config paths (`services.<svc>.colours.blue.secrets`, ...), as `pulumi config
        rm --path` does; a path that is not set is no error."""
        ...

    def up(self, message: str) -> None:
        """Apply the whole stack; raises `ApplyError(reason)`."""
        ...


def with_changes(values: Mapping[str, Any], changes: Mapping[str, str]) -> dict[str, Any]:
    """`values` with each dotted config path of `changes` set, as `pulumi config set --path`
    would set it (missing mappings are created)."""
    result = copy.deepcopy(dict(values))
    for path, value in changes.items():
        node = result
        *parents, leaf = path.split(".")
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[leaf] = value
    return result


def without_paths(values: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """`values` without each dotted config path of `paths`, as `pulumi config rm --path` would
    leave them (a path that is not there is skipped)."""
    result = copy.deepcopy(dict(values))
    for path in paths:
        node: Any = result
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return result


class StackHandle(Protocol):
    """The part of `pulumi.automation.Stack` the engine uses."""

    def set_all_config(self, config: Mapping[str, Any], path: bool = False) -> None: ...

    def remove_all_config(self, keys: list[str], path: bool = False) -> None: ...

    def up(self, **kwargs: Any) -> Any: ...


def _select(stack: str, project_dir: Path, env: dict[str, str]) -> StackHandle:
    from napdms_ops.workstation.pulumi_cli import NoPulumiCli, cli_root, select_stack

    # The CLI on PATH, else the one `napdms-ops up` installed (as the drift view finds it).
    try:
        root = cli_root(stack, env)
    except NoPulumiCli:
        root = None  # selecting fails then, and `_stack` says how to get a CLI
    return select_stack(stack, env, root, project_dir)


class AutomationEngine:
    """A stack of this project through the Pulumi Automation API (its CLI must be installed:
    `napdms-ops up` installs the pinned one).

    `env` is the Pulumi CLI's environment: `napdms_ops.deploy.deploy_environment(stack,
    os.environ)` (the local file backend unless one is configured, dev's empty passphrase)."""

    def __init__(
        self,
        stack: str,
        env: Mapping[str, str],
        project_dir: Path = PROJECT_DIR,
        on_output: Callable[[str], None] | None = None,
        select: Callable[[str, Path, dict[str, str]], StackHandle] = _select,
    ):
        self.stack = stack
        self._project_dir = project_dir
        self._env = dict(env)
        self._on_output = on_output
        self._select = select
        self._handle: StackHandle | None = None

    def select(self) -> None:
        """Select the stack now, so a missing CLI or stack stops a command before it changes
        anything; raises `ApplyError` with the fix."""
        self._stack()

    def _stack(self) -> StackHandle:
        if self._handle is None:
            try:
                self._handle = self._select(self.stack, self._project_dir, self._env)
            except Exception as error:  # the CLI missing, no such stack, a backend error
                raise ApplyError(
                    f"{self.stack}: cannot select the stack with the Automation API "
                    f"({_last_line(str(error))}); run `napdms-ops up --stack {self.stack}` once "
                    "(it installs the Pulumi CLI and creates the stack)"
                ) from None
        return self._handle

    def values(self) -> dict[str, Any]:
        """The stack file's values: the Automation API writes config there, so it is current."""
        return read_stack_file(self.stack, self._project_dir)[0]

    def secret_keys(self) -> set[str]:
        """The keys the stack file stores encrypted."""
        return read_stack_file(self.stack, self._project_dir)[1]

    def set_values(self, changes: Mapping[str, str]) -> None:
        """`pulumi config set --path` for each change, in one call."""
        from pulumi.automation import ConfigValue

        self._stack().set_all_config(
            {f"{PROJECT}:{path}": ConfigValue(value=value) for path, value in changes.items()},
            path=True,
        )

    def remove_values(self, paths: Iterable[str]) -> None:
        """`pulumi config rm --path` for each path, in one call."""
        keys = [f"{PROJECT}:{path}" for path in paths]
        if keys:
            self._stack().remove_all_config(keys, path=True)

    def up(self, message: str) -> None:
        """`pulumi up --yes` with `message`; the output goes to `on_output`, the last lines of
        it explain a failure."""
        from pulumi.automation import CommandError

        lines: list[str] = []

        def output(line: str) -> None:
            lines.append(line)
            del lines[:-OUTPUT_LINES_KEPT]
            if self._on_output:
                self._on_output(line)

        try:
            self._stack().up(message=message, on_output=output)
        except CommandError as error:
            raise ApplyError(_last_line(str(error)) or _last_line("\n".join(lines))) from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text.strip()

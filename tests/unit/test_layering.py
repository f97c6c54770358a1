"""The codebase's shape, as specifications: dependencies point one way, and every shared name has
one home.

Layers, bottom up: the rules and their vocabulary (`policies.rules`, standard library only), the
pure data (`components.model`, the monitoring generated from it, the catalog, the stack
settings; no Pulumi), the Pulumi
components, then the operator CLI (`napdms_ops`) and the backup agent (`napdms_ops.backup`), which
ships only `components.model.plan` of the program.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.program import ROOT

PACKAGES = ("components", "napdms_ops", "policies")
PULUMI_OR_DOCKER = {
    "pulumi",
    "pulumi_docker",
    "pulumi_random",
    "pulumi_command",
    "pulumi_policy",
    "docker",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "venv" not in path.parts
    }


def _imported(name: str, path: Path) -> set[str]:
    """Every module `name` imports, anywhere in the file (also inside functions and
    TYPE_CHECKING blocks: a cycle hidden there is still a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # The policy pack runs from inside policies/, where the rules are the top-level `rules`.
            if name.startswith("policies.") and module.split(".")[0] in ("rules", "pack"):
                module = f"policies.{module}"
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


@cache
def _graph() -> dict[str, frozenset[str]]:
    """Our module -> our modules and the third-party top-level packages it imports."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported(name, path):
            if imported in modules:
                targets.add(imported)
            elif imported.split(".")[0] not in PACKAGES:
                targets.add(imported.split(".")[0])
        graph[name] = frozenset(targets - {name})
    return graph


def _in(module: str, *layers: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


def _ours(targets: frozenset[str]) -> set[str]:
    return {t for t in targets if t.split(".")[0] in PACKAGES}


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            visit(node)
    return found


def _package(module: str) -> str:
    """The unit a layer is made of: a sub-package of components/napdms_ops/policies, or the
    top-level modules of one of them."""
    parts = module.split(".")
    if len(parts) > 1 and (ROOT / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0]


def test_no_module_imports_itself_back_through_others():
    assert _cycles(_graph()) == [], "import cycles between modules"


def test_no_package_imports_itself_back_through_others():
    packages: dict[str, frozenset[str]] = {}
    for module, targets in _graph().items():
        others = {_package(t) for t in _ours(targets)} - {_package(module)}
        packages[_package(module)] = packages.get(_package(module), frozenset()) | others
    assert _cycles(packages) == [], "import cycles between packages"


def test_the_rules_need_only_the_standard_library():
    for module, targets in _graph().items():
        if _in(module, "policies.rules"):
            outside = {
                t
                for t in targets
                if not _in(t, "policies.rules") and t not in sys.stdlib_module_names
            }
            assert not outside, (
                f"{module} imports {sorted(outside)}; "
                "the policy pack runs with the standard library only"
            )


@pytest.mark.parametrize(
    "layer",
    ["components.model", "components.monitoring", "components.catalog", "components.settings"],
)
def test_the_data_layer_registers_no_resource(layer):
    for module, targets in _graph().items():
        if _in(module, layer):
            assert not targets & PULUMI_OR_DOCKER, (
                f"{module} imports {sorted(targets & PULUMI_OR_DOCKER)}"
            )


@pytest.mark.parametrize(
    "layer, allowed",
    [
        ("components.model", ("components.model", "policies.rules")),
        (
            "components.monitoring",
            ("components.monitoring", "components.model", "policies.rules"),
        ),
        (
            "components.catalog",
            ("components.catalog", "components.monitoring", "components.model", "policies.rules"),
        ),
        (
            "components.settings",
            (
                "components.settings",
                "components.catalog",
                "components.monitoring",
                "components.model",
                "policies.rules",
            ),
        ),
        ("components", ("components", "policies.rules")),
        (
            "napdms_ops.backup",
            ("napdms_ops.backup", "components.model.plan", "components.model.strict"),
        ),
    ],
)
def test_each_layer_imports_only_the_layers_below(layer, allowed):
    for module, targets in _graph().items():
        if _in(module, layer):
            upward = {t for t in _ours(targets) if not _in(t, *allowed) and t != "napdms_ops"}
            assert not upward, (
                f"{module} imports {sorted(upward)}, above or beside its layer {layer}"
            )


def _needed_by_the_agent() -> set[str]:
    """Every module of ours the agent loads, directly or not, with the packages above them."""
    graph = _graph()
    todo = [module for module in graph if _in(module, "napdms_ops.backup")]
    needed = set(todo)
    while todo:
        for target in _ours(graph[todo.pop()]) - needed:
            needed.add(target)
            todo.append(target)
    parents = {".".join(m.split(".")[:i]) for m in needed for i in range(1, m.count(".") + 1)}
    return needed | parents


def test_the_agent_image_ships_every_module_the_agent_loads():
    dockerfile = (ROOT / "napdms_ops/backup/Dockerfile").read_text()
    context = (ROOT / ".dockerignore").read_text().split()
    for module in sorted(_needed_by_the_agent()):
        if _in(module, "napdms_ops.backup"):
            continue  # copied as a whole directory
        path = _modules()[module].relative_to(ROOT).as_posix()
        assert path in dockerfile, f"the agent loads {module}; its Dockerfile does not copy {path}"
        assert f"!{path}" in context, f"the agent loads {module}; .dockerignore keeps {path} out"


def test_the_operator_cli_runs_none_of_the_agents_code():
    for module, targets in _graph().items():
        if _in(module, "napdms_ops") and not _in(module, "napdms_ops.backup"):
            agent = {t for t in targets if _in(t, "napdms_ops.backup")}
            assert not agent, (
                f"{module} imports the agent's {sorted(agent)}; talk to the agent through its CLI"
            )


_LABEL_LITERAL = re.compile(r"^napdms\.[a-z]")


def test_label_keys_are_spelled_only_in_their_home():
    home = ROOT / "policies/rules/names.py"
    for module, path in _modules().items():
        if path == home:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            strings = (
                [node]
                if isinstance(node, ast.Constant)
                else node.values
                if isinstance(node, ast.JoinedStr)
                else []
            )
            for piece in strings[:1]:
                if (
                    isinstance(piece, ast.Constant)
                    and isinstance(piece.value, str)
                    and _LABEL_LITERAL.match(piece.value)
                ):
                    pytest.fail(
                        f"{module}:{node.lineno} spells the label {piece.value!r}; "
                        "import it from policies.rules.names"
                    )

"""The package a newcomer installs with `pip install -e .`: its command, its one dependency list."""

import importlib
import subprocess
import sys
import tomllib

import typer

from tests.program import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_napdms_ops_command_is_the_cli():
    target = PYPROJECT["project"]["scripts"]["napdms-ops"]
    module, _, attribute = target.partition(":")
    app = getattr(importlib.import_module(module), attribute)
    assert isinstance(app, typer.Typer), f"napdms-ops runs {target}, not the typer app"


def test_dependencies_are_the_runtime_requirements():
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
    assert dynamic == ["requirements.txt"], f"pyproject.toml takes its dependencies from {dynamic}"


def test_the_package_holds_every_layer_the_cli_imports():
    included = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in ("components", "components.model", "napdms_ops.backup", "policies.rules"):
        assert any(
            package == pattern.rstrip("*") or package.startswith(pattern.rstrip("*"))
            for pattern in included
        ), f"pyproject.toml leaves {package} out of the package"


def test_the_cli_answers_from_outside_the_checkout(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "napdms_ops", "images", "--stack", "dev"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"napdms-ops images from {tmp_path}: {result.stderr}"
    assert "docker.io/library/busybox:1.37.0" in result.stdout.split(), (
        "dev images lack the init image"
    )

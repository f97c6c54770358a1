"""What the backup tests share: whether restic is on this machine, and a directory's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

needs_restic = pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed")
"""Skip a test that runs the real restic where it is missing (`.ci/run` installs it)."""


def tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` by its relative path, with its content."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }

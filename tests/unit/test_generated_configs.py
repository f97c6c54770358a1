"""Generated config files pass their own tool's validation (here: `caddy validate`)."""

import shutil
import subprocess

import pytest

from components.catalog import generated_files
from components.settings import load_stack
from tests.program import STACKS, stack_config


@pytest.mark.parametrize("stack", STACKS)
def test_caddyfile_is_valid_for_caddy(stack, tmp_path):
    caddy = shutil.which("caddy")
    assert caddy, "caddy is not installed: apt-get install caddy (.ci/run does)"
    context = load_stack(stack, stack_config(stack), set()).context
    path = tmp_path / "Caddyfile"
    path.write_text(generated_files("proxy", context)["Caddyfile"])
    result = subprocess.run(
        [caddy, "validate", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env={
            "HOME": str(tmp_path),
            "XDG_DATA_HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path),
        },
        timeout=60,
    )
    assert result.returncode == 0, f"caddy rejects the {stack} Caddyfile: {result.stderr[-800:]}"

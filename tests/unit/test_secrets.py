"""No secret value leaves Pulumi's secret handling: not in env, labels, names or plain outputs."""

import json

import pytest
import yaml

from components.model.operator_keys import BY_CONFIG_KEY
from tests.program import (
    ROOT,
    STACKS,
    is_secret,
    mock_password,
    run_program,
    stack_config,
    without_secrets,
)


def _password_values(program) -> list[str]:
    return [
        mock_password(p.name) for p in program.of_type("random:index/randomPassword:RandomPassword")
    ]


def test_generated_secret_values_appear_only_inside_secret_inputs(program):
    plain = json.dumps(
        [
            without_secrets(r.inputs)
            for r in program.resources
            if r.type != "random:index/randomPassword:RandomPassword"
        ]
    )
    leaked = [value for value in _password_values(program) if value in plain]
    assert leaked == [], f"{len(leaked)} secret value(s) stored in plain text"


def test_every_upload_carrying_a_secret_is_a_secret_input(program):
    for container in program.containers():
        files = [u["file"] for u in container.plain("uploads", [])]
        if any(f.startswith("/run/secrets/") for f in files):
            assert is_secret(container.inputs["uploads"]), (
                f"{container.name}: secret files stored in plain text"
            )


def test_environment_passes_secret_file_paths_never_values(program):
    values = _password_values(program)
    for container in program.containers():
        for pair in container.plain("envs", []):
            assert not any(v in pair for v in values), (
                f"{container.name}: secret value in {pair.split('=')[0]}"
            )


def test_grafana_admin_password_output_is_secret(program):
    assert is_secret(program.outputs["grafana_admin_password"]), (
        "grafana_admin_password is exported in plain text"
    )


def test_generated_passwords_mark_their_result_secret(program):
    for secret in program.of_type("napdms:secrets:GeneratedSecret"):
        children = [r for r in program.resources if r.parent == secret.urn]
        assert children and all(
            r.type == "random:index/randomPassword:RandomPassword" for r in children
        )


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_hold_no_secret_keys(stack):
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    plain_secrets = [
        key
        for key in config
        if key.split(":")[-1] in BY_CONFIG_KEY and not isinstance(config[key], dict)
    ]
    assert plain_secrets == [], f"Pulumi.{stack}.yaml holds {plain_secrets} in plain text"


def test_raising_a_rotation_counter_changes_only_that_secrets_keepers():
    config = stack_config("dev")
    rotated = run_program("dev", {**config, "secrets": {"rotation": {"redis-password": 1}}})
    keepers = {
        p.name: p.plain("keepers")
        for p in rotated.of_type("random:index/randomPassword:RandomPassword")
    }
    # NAP-DMS backend (blue-green) reads it, so it keeps its previous value in the even slot
    # and an odd counter replaces the odd one (`GeneratedSecret`).
    new = "redis-password-value-odd"
    assert keepers[new] == {"rotation": "1"}
    assert {name: k for name, k in keepers.items() if name != new} == {
        name: {"rotation": "0"} for name in keepers if name != new
    }


def test_program_runs_with_a_secret_config_key_set_encrypted():
    config = {**stack_config("dev"), "smtp_password": "from-encrypted-config"}
    program = run_program("dev", config, secret_keys=("smtp_password",))
    assert program.services(), "a secret smtp_password stopped the program"

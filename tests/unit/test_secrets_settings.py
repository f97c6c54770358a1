"""`secrets.max_age_days`: how old each secret may grow, 90 days unless the stack says, checked
like the rest of a stack file (one line: stack, key, fix)."""

from __future__ import annotations

import pytest

from components.settings import SettingsError, load_stack, read_stack_file
from components.settings.model import PlatformSettings


def _load(secrets: dict, stack: str = "dev"):
    values, secret_keys = read_stack_file(stack)
    return load_stack(stack, {**values, "secrets": secrets}, secret_keys)


def _problems(secrets: dict) -> list[str]:
    with pytest.raises(SettingsError) as error:
        _load(secrets)
    return str(error.value).splitlines()


def test_a_secret_without_its_own_maximum_age_is_due_after_90_days():
    assert _load({}).settings.secrets.max_age("redis-password") == 90


def test_a_secrets_own_maximum_age_is_used():
    stack = _load({"max_age_days": {"restic-password": 365}})
    assert stack.settings.secrets.max_age("restic-password") == 365


def test_an_unknown_secret_name_is_one_line_naming_the_stack_key_and_the_names_there_are():
    (line,) = _problems({"max_age_days": {"redis-pasword": 30}})
    assert line.startswith(
        "dev: secrets.max_age_days.redis-pasword: no service reads a secret of that name; "
        "use one of: postgres-password, "
    )
    assert "redis-password" in line


def test_a_previous_value_has_no_age_of_its_own():
    (line,) = _problems({"max_age_days": {"restic-password-previous": 30}})
    assert line.startswith("dev: secrets.max_age_days.restic-password-previous: no service")


@pytest.mark.parametrize(
    ("days", "reason"), [(0, "0 is too small; use 1 or more"), (3651, "3651 is too large")]
)
def test_a_maximum_age_outside_1_to_3650_days_is_refused(days, reason):
    (line,) = _problems({"max_age_days": {"redis-password": days}})
    assert line.startswith(f"dev: secrets.max_age_days.redis-password: {reason}")


def test_the_json_schema_bounds_the_maximum_ages():
    schema = PlatformSettings.model_json_schema()
    field = schema["$defs"]["SecretsSettings"]["properties"]["max_age_days"]
    assert field["additionalProperties"] == {"maximum": 3650, "minimum": 1, "type": "integer"}

"""`SecretsEngine`: an operator key set encrypted through the Automation API, and the stack's
state read for the secrets' times, or None where the Pulumi CLI cannot give it."""

from __future__ import annotations

from types import SimpleNamespace

from napdms_ops.secrets.engine import SecretsEngine


class _Handle:
    def __init__(self, exported=None, export_error: Exception | None = None):
        self.config: dict = {}
        self._exported = exported
        self._export_error = export_error

    def set_config(self, key, value, path=False):
        self.config[key] = value

    def export_stack(self):
        if self._export_error:
            raise self._export_error
        return self._exported


def _engine(handle) -> SecretsEngine:
    return SecretsEngine("dev", {}, select=lambda stack, project_dir, env: handle)


def test_an_operator_key_is_set_as_a_secret_in_the_projects_namespace():
    handle = _Handle()
    _engine(handle).set_secret("smtp_password", "n3w")
    ((key, value),) = handle.config.items()
    assert key == "nap-dms-platform:smtp_password"
    assert (value.value, value.secret) == ("n3w", True)


def test_the_state_gives_its_resources():
    resources = [{"urn": "urn:pulumi:dev::nap-dms-platform::pulumi:pulumi:Stack::x"}]
    exported = SimpleNamespace(version=3, deployment={"resources": resources})
    assert _engine(_Handle(exported)).state_resources() == resources


def test_without_the_pulumi_cli_there_is_no_state_rather_than_an_error():
    def missing(stack, project_dir, env):
        raise FileNotFoundError("pulumi: not found")

    assert SecretsEngine("dev", {}, select=missing).state_resources() is None


def test_an_export_the_cli_fails_gives_no_state():
    handle = _Handle(export_error=RuntimeError("stack 'dev' not found"))
    assert _engine(handle).state_resources() is None

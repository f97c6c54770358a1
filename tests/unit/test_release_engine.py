"""`AutomationEngine`: what it asks of the Automation API (no Pulumi CLI here), and config paths."""

import pytest
from pulumi.automation import CommandError

from components.settings import load_stack, read_stack_file
from napdms_ops.deploy import deploy_environment
from napdms_ops.release.engine import ApplyError, AutomationEngine, with_changes, without_paths
from tests.program import ROOT


class Handle:
    """Records what the engine calls on the selected stack."""

    def __init__(self, fail: str | None = None):
        self.calls = []
        self.fail = fail

    def set_all_config(self, config, path=False):
        self.calls.append(("set_all_config", {k: v.value for k, v in config.items()}, path))

    def remove_all_config(self, keys, *, path=False):
        self.calls.append(("remove_all_config", keys, path))

    def up(self, **kwargs):
        self.calls.append(("up", kwargs["message"]))
        kwargs["on_output"]("Updating (dev)")
        if self.fail:
            raise CommandError(self.fail)


def _engine(handle, selected=None):
    def select(stack, project_dir, env):
        if selected is not None:
            selected.append((stack, project_dir, env["PULUMI_BACKEND_URL"]))
        return handle

    return AutomationEngine("dev", deploy_environment("dev", {}), select=select)


def test_set_values_sets_namespaced_config_paths_in_one_call():
    handle = Handle()
    _engine(handle).set_values({"services.napdms-backend.colours.live": "green"})
    assert handle.calls == [
        ("set_all_config", {"nap-dms-platform:services.napdms-backend.colours.live": "green"}, True)
    ]


def test_remove_values_removes_namespaced_config_paths_in_one_call():
    handle = Handle()
    _engine(handle).remove_values(["services.napdms-backend.colours.blue.secrets"])
    assert handle.calls == [
        (
            "remove_all_config",
            ["nap-dms-platform:services.napdms-backend.colours.blue.secrets"],
            True,
        )
    ]


def test_without_paths_removes_a_nested_key_and_skips_one_that_is_not_there():
    values = {"services": {"web": {"colours": {"blue": {"secrets": {"k": 1}, "tag": "1.0"}}}}}
    assert without_paths(values, ["services.web.colours.blue.secrets", "services.x.tag"]) == {
        "services": {"web": {"colours": {"blue": {"tag": "1.0"}}}}
    }


def test_the_stack_is_selected_in_the_project_dir_with_the_local_backend():
    selected = []
    _engine(Handle(), selected).up("deploy")
    assert selected == [("dev", ROOT, "file://~")]


def test_up_passes_the_message():
    handle = Handle()
    _engine(handle).up("napdms-ops deploy gitea 1.24.7")
    assert handle.calls == [("up", "napdms-ops deploy gitea 1.24.7")]


def test_a_failed_up_is_an_apply_error_with_the_engines_last_line():
    handle = Handle(fail="code: 255\nstderr: error: update failed: container unhealthy")
    with pytest.raises(ApplyError, match="^stderr: error: update failed: container unhealthy$"):
        _engine(handle).up("x")


def test_values_are_the_stack_files():
    assert _engine(Handle()).values()["environment"] == "dev"


def test_with_changes_sets_nested_paths_without_touching_the_input():
    values = {"services": {"gitea": {"memory": "1g"}}}
    changed = with_changes(values, {"services.gitea.tag": "1.24.7", "domain": "x.org"})
    assert changed == {"services": {"gitea": {"memory": "1g", "tag": "1.24.7"}}, "domain": "x.org"}
    assert values == {"services": {"gitea": {"memory": "1g"}}}


def test_a_stack_that_cannot_be_selected_is_an_apply_error_with_the_fix():
    def select(stack, project_dir, env):
        raise FileNotFoundError("[Errno 2] No such file or directory: 'pulumi'")

    engine = AutomationEngine("dev", deploy_environment("dev", {}), select=select)
    with pytest.raises(ApplyError, match=r"^dev: .*'pulumi'.*napdms-ops up --stack dev"):
        engine.select()


def test_a_whole_number_tag_stored_as_a_number_by_config_set_path_reads_as_its_text():
    values = with_changes(read_stack_file("dev")[0], {"services.redis.tag": "7"})
    values["services"]["redis"]["tag"] = 7  # what `pulumi config set --path` writes
    stack = load_stack("dev", values, set())
    assert stack.services["redis"].image_ref.endswith("redis:7")


def test_without_pulumi_on_path_the_engine_runs_the_cli_that_up_installed(tmp_path, monkeypatch):
    from napdms_ops.workstation import pulumi_cli

    monkeypatch.setattr("pathlib.Path.home", lambda: tmp_path)
    root = pulumi_cli.pinned_cli_root()
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "pulumi").write_text("#!/bin/sh\n")
    (root / "bin" / "pulumi").chmod(0o755)
    selected = []
    monkeypatch.setattr(
        pulumi_cli, "select_stack", lambda stack, env, root, work_dir: selected.append(root)
    )
    AutomationEngine("dev", deploy_environment("dev", {"PATH": ""})).select()
    assert selected == [root]

"""Pulumi's view of drift, read from recorded engine event streams of a refresh-and-preview: what
each step means, how severe it is, and what never appears (environment values)."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.automation import CommandError
from pulumi.automation._cmd import CommandResult
from pulumi.automation.events import EngineEvent

from napdms_ops.drift.pulumi_view import (
    PulumiUnavailable,
    PulumiViewError,
    cli_root,
    findings_from_events,
    preview_findings,
    pulumi_findings,
)

PARENT = "urn:pulumi:dev::nap-dms-platform::napdms:platform:Platform$napdms:service:HardenedService"
CONTAINER = "docker:index/container:Container"
GITEA = f"{PARENT}${CONTAINER}::gitea-1"
REDIS = f"{PARENT}${CONTAINER}::redis-1"
VOLUME = f"{PARENT}$docker:index/volume:Volume::gitea-data"
PIDS = f"{PARENT}$command:local:Command::gitea-1-pids"
PROVIDER = "urn:pulumi:dev::nap-dms-platform::pulumi:providers:docker::local::04da6b54"

DECLARED = {
    "name": "napdms-dev-gitea-1",
    "image": "sha256:1111",
    "user": "1000:1000",
    "memory": 512,
    "cpus": "0.5",
    "envs": ["GITEA__server__DOMAIN=git.nap-dms.localhost", "USER_UID=1000"],
    "capabilities": {"drops": ["ALL"], "adds": []},
}


def _state(urn: str, kind: str, inputs: dict, outputs: dict | None = None) -> dict:
    return {
        "type": kind,
        "urn": urn,
        "id": "0a1b2c",
        "parent": PARENT,
        "provider": PROVIDER,
        "custom": True,
        "inputs": inputs,
        "outputs": outputs if outputs is not None else inputs,
    }


def _step(
    op: str,
    urn: str,
    kind: str = CONTAINER,
    live: dict | None = None,
    declared: dict | None = None,
    diff: dict[str, str] | None = None,
    keys: list[str] | None = None,
) -> dict:
    metadata: dict[str, Any] = {"op": op, "urn": urn, "type": kind, "provider": PROVIDER}
    if live is not None:
        metadata["old"] = _state(urn, kind, declared or live, live)
    if declared is not None:
        metadata["new"] = _state(urn, kind, declared)
    if diff:
        metadata["diffs"] = sorted({path.split("[")[0].split(".")[0] for path in diff})
        metadata["detailedDiff"] = {
            path: {"diffKind": kind, "inputDiff": True} for path, kind in diff.items()
        }
    if keys:
        metadata["keys"] = keys
    return metadata


def _stream(*steps: dict, summary: dict[str, int] | None = None) -> list[EngineEvent]:
    """The events a `preview --refresh` emits: the prelude, every refresh step (the refreshed
    state), then each preview step twice (before and after), then the summary."""
    refreshes = [_step("refresh", s["urn"], s["type"]) for s in steps]
    raw: list[dict] = [{"preludeEvent": {"config": {"nap-dms-platform:domain": "x"}}}]
    raw += [{"resourcePreEvent": {"metadata": r, "planning": True}} for r in refreshes]
    for step in steps:
        raw.append({"resourcePreEvent": {"metadata": step, "planning": True}})
        raw.append({"resOutputsEvent": {"metadata": step, "planning": True}})
    raw.append(
        {
            "summaryEvent": {
                "maybeCorrupt": False,
                "durationSeconds": 3,
                "resourceChanges": summary or {"same": len(steps)},
            }
        }
    )
    return [
        EngineEvent.from_json({"sequence": n, "timestamp": 1765000000 + n, **event})
        for n, event in enumerate(raw)
    ]


def _same() -> dict:
    return _step("same", REDIS, live={"image": "sha256:2222"}, declared={"image": "sha256:2222"})


def _update(path: str, live_value: Any) -> dict:
    key = path.split("[")[0]
    live = {**DECLARED, key: live_value}
    return _step("update", GITEA, live=live, declared=DECLARED, diff={path: "update"})


class FakeStack:
    """A selected stack whose preview replays `events` and then behaves as the CLI does with
    `expect_no_changes`: a CommandError when the preview proposed changes."""

    def __init__(self, events: list[EngineEvent], fail: CommandResult | None = None):
        self.events = events
        self.fail = fail
        self.calls: list[dict] = []

    def preview(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        for event in self.events:
            kwargs["on_event"](event)
        changed = any(
            op != "same"
            for e in self.events
            if e.summary_event
            for op in e.summary_event.resource_changes
        )
        if self.fail is not None:
            raise CommandError(self.fail)
        if changed:
            raise CommandError(
                CommandResult(
                    "Previewing update (dev)\n",
                    "error: no changes were expected but changes were proposed\n",
                    255,
                )
            )


def test_a_clean_stack_has_no_finding():
    stack = FakeStack(_stream(_same(), summary={"same": 1}))
    assert preview_findings("dev", stack) == []


def test_the_preview_is_read_only_and_expects_no_changes():
    stack = FakeStack(_stream(_same()))
    preview_findings("dev", stack)
    (call,) = stack.calls
    assert call["refresh"] is True
    assert call["expect_no_changes"] is True


def test_a_memory_limit_raised_by_hand_is_major():
    stack = FakeStack(_stream(_update("memory", 2048), summary={"same": 0, "update": 1}))
    (finding,) = preview_findings("dev", stack)
    assert (finding.source, finding.kind, finding.subject) == ("pulumi", "resource", GITEA)
    assert (finding.field, finding.severity) == ("memory", "major")
    assert (finding.declared, finding.live) == ("512", "2048")


@pytest.mark.parametrize("live", [0, None], ids=["zero", "absent"])
def test_a_memory_limit_removed_by_hand_is_major(live):
    (finding,) = findings_from_events(_stream(_update("memory", live)))
    assert finding.severity == "major"


def test_a_lowered_limit_is_minor_as_in_the_live_view():
    (finding,) = findings_from_events(_stream(_update("cpus", "0.1")))
    assert (finding.field, finding.severity) == ("cpus", "minor")


def test_an_environment_change_is_minor_and_names_variables_only():
    live_env = ["GITEA__server__DOMAIN=evil.example", "USER_UID=1000"]
    stack = FakeStack(_stream(_update("envs[0]", live_env), summary={"update": 1}))
    (finding,) = preview_findings("dev", stack)
    assert (finding.field, finding.severity) == ("envs[0]", "minor")
    assert finding.declared == finding.live == "GITEA__server__DOMAIN"
    assert "evil.example" not in finding.model_dump_json()


def test_an_image_swapped_by_hand_is_major():
    stack = FakeStack(_stream(_update("image", "sha256:9999"), summary={"update": 1}))
    (finding,) = preview_findings("dev", stack)
    assert (finding.field, finding.severity) == ("image", "major")
    assert (finding.declared, finding.live) == ("sha256:1111", "sha256:9999")


def test_an_added_capability_is_major_at_its_property_path():
    live = {**DECLARED, "capabilities": {"drops": ["ALL"], "adds": ["NET_ADMIN"]}}
    step = _step(
        "update", GITEA, live=live, declared=DECLARED, diff={"capabilities.adds[0]": "add"}
    )
    (finding,) = findings_from_events(_stream(step))
    assert (finding.field, finding.severity, finding.live) == (
        "capabilities.adds[0]",
        "major",
        "NET_ADMIN",
    )


def test_a_changed_pids_limit_command_is_major():
    step = _step(
        "update",
        PIDS,
        "command:local:Command",
        live={"create": "docker update --pids-limit 256 napdms-dev-gitea-1"},
        declared={"create": "docker update --pids-limit 128 napdms-dev-gitea-1"},
        diff={"create": "update"},
    )
    (finding,) = findings_from_events(_stream(step))
    assert (finding.field, finding.severity) == ("create", "major")


LABELS = [
    {"label": "napdms.exempt.host-mount", "value": "reads /proc"},
    {"label": "x", "value": "1"},
]


def _labels(path: str, live: list[dict]) -> dict:
    declared = {**DECLARED, "labels": LABELS}
    return _step(
        "update", GITEA, live={**declared, "labels": live}, declared=declared, diff={path: "update"}
    )


def test_a_label_change_is_minor_and_shows_the_label():
    (finding,) = findings_from_events(
        _stream(_labels("labels[1].value", [LABELS[0], {"label": "x", "value": "2"}]))
    )
    assert (finding.severity, finding.declared, finding.live) == ("minor", "1", "2")
    (finding,) = findings_from_events(
        _stream(_labels("labels[1]", [LABELS[0], {"label": "x", "value": "2"}]))
    )
    assert (finding.declared, finding.live) == ("x=1", "x=2")


def test_a_changed_exemption_record_is_major():
    edited = [{"label": "napdms.exempt.host-mount", "value": "because"}, LABELS[1]]
    (finding,) = findings_from_events(_stream(_labels("labels[0].value", edited)))
    assert finding.severity == "major"


def test_a_container_deleted_by_hand_is_major_as_a_create():
    stack = FakeStack(_stream(_step("create", GITEA, declared=DECLARED), summary={"create": 1}))
    (finding,) = preview_findings("dev", stack)
    assert (finding.field, finding.severity, finding.subject) == ("create", "major", GITEA)


def test_a_resource_no_longer_declared_is_major_as_a_delete():
    step = _step("delete", VOLUME, "docker:index/volume:Volume", live={"name": "x"})
    (finding,) = findings_from_events(_stream(step, summary={"delete": 1}))
    assert (finding.field, finding.severity) == ("delete", "major")


def test_a_replacement_is_one_major_finding_naming_its_keys():
    steps = [
        _step(
            op,
            GITEA,
            live=DECLARED,
            declared=DECLARED,
            diff={"name": "update-replace"},
            keys=["name"],
        )
        for op in ("create-replacement", "replace", "delete-replaced")
    ]
    (finding,) = findings_from_events(_stream(*steps, summary={"replace": 1}))
    assert (finding.field, finding.severity) == ("replace", "major")
    assert "name" in finding.why


def test_refresh_steps_and_unchanged_resources_are_not_findings():
    refresh = _step("refresh", GITEA, live=DECLARED, declared=DECLARED, diff={"memory": "update"})
    assert findings_from_events(_stream(refresh, _same(), summary={"same": 2})) == []


def test_a_failure_without_changes_is_an_error_naming_the_stack():
    stack = FakeStack(
        _stream(_same()),
        fail=CommandResult("", "error: failed to decrypt: incorrect passphrase\n", 255),
    )
    with pytest.raises(PulumiViewError, match=r"^prod: .*incorrect passphrase"):
        preview_findings("prod", stack)


def test_a_failure_before_the_summary_is_an_error_even_after_changes():
    events = [e for e in _stream(_update("image", "sha256:9")) if not e.summary_event]
    stack = FakeStack(events, fail=CommandResult("", "error: program crashed\n", 255))
    with pytest.raises(PulumiViewError, match="program crashed"):
        preview_findings("dev", stack)


def test_no_pulumi_cli_skips_the_view_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr("pathlib.Path.home", lambda: tmp_path)
    with pytest.raises(PulumiUnavailable, match="napdms-ops up --stack prod"):
        cli_root("prod", {"PATH": str(tmp_path)})


def test_a_stack_that_cannot_be_selected_is_an_error_with_the_fix(tmp_path):
    def select(stack, env, root):
        raise CommandError(CommandResult("", "error: no stack named 'dev' found\n", 255))

    with pytest.raises(PulumiViewError, match=r"dev: .*no stack named 'dev'.*napdms-ops up"):
        pulumi_findings("dev", {"PATH": ""}, select=select, root=lambda stack, env: None)


def test_the_stack_is_selected_with_the_cli_environment():
    seen = {}

    def select(stack, env, root):
        seen.update(stack=stack, env=env, root=root)
        return FakeStack(_stream(_same()))

    found = pulumi_findings("dev", {"PATH": "/bin"}, select=select, root=lambda stack, env: None)
    assert found == []
    assert seen["stack"] == "dev"
    assert seen["env"]["PULUMI_BACKEND_URL"] == "file://~"


def _executable(path):
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


def test_a_pulumi_cli_on_path_is_used_as_it_is(tmp_path):
    _executable(tmp_path / "bin" / "pulumi")
    assert cli_root("dev", {"PATH": str(tmp_path / "bin")}) is None


def test_the_cli_that_up_installed_is_used_when_none_is_on_path(monkeypatch, tmp_path):
    from napdms_ops.deploy import PULUMI_CLI_VERSION

    monkeypatch.setattr("pathlib.Path.home", lambda: tmp_path)
    root = tmp_path / ".pulumi" / "versions" / PULUMI_CLI_VERSION
    _executable(root / "bin" / "pulumi")
    assert cli_root("dev", {"PATH": ""}) == root

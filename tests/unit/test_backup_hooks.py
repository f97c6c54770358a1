"""The backup hooks are a registry derived from the plan's source models: one list of kinds,
one contract, one way to record what a hook did."""

import time
import typing

import pytest

from components.model.plan import (
    DUMP_HOOKS,
    HOOKS,
    SOURCE_MODELS,
    DumpSource,
    RedisSource,
    dump_source,
)
from components.model.spec import BackupHook
from napdms_ops.backup import hooks
from napdms_ops.backup.hooks import Hook, HookError
from napdms_ops.backup.manifest import Part
from napdms_ops.backup.restic import BackupSummary


@pytest.mark.parametrize("name", HOOKS)
def test_every_kind_of_source_has_a_hook_keeping_the_contract(name):
    assert isinstance(hooks.hook(name), Hook), (
        f"napdms_ops/backup/hooks/{name}.py lacks backup or verify"
    )


@pytest.mark.parametrize("name", ["postgresql", "mongodb"])
def test_a_dump_hooks_load_takes_the_common_arguments(name):
    parameters = list(typing.get_type_hints(hooks.hook(name).load))[:4]
    assert parameters == ["source", "record", "into", "env"], f"hooks/{name}.py load{parameters}"


@pytest.mark.parametrize("name", HOOKS)
def test_no_hook_defines_a_restore_the_registry_would_ignore(name):
    assert not hasattr(hooks.hook(name), "restore"), f"hooks/{name}.py: restore extracts parts"


def test_the_catalog_offers_exactly_the_dump_hooks():
    kinds = typing.get_args(BackupHook.model_fields["kind"].annotation)
    assert kinds == DUMP_HOOKS, f"BackupHook.kind offers {kinds}"


def test_dump_hooks_are_the_sources_that_reach_a_server():
    dumping = tuple(
        m.model_fields["hook"].default for m in SOURCE_MODELS if issubclass(m, DumpSource)
    )
    assert dumping == DUMP_HOOKS and "files" not in DUMP_HOOKS, f"dump hooks {DUMP_HOOKS}"


def test_an_unknown_hook_names_the_known_ones():
    with pytest.raises(HookError, match=f"known hooks: {', '.join(HOOKS)}$"):
        hooks.hook("no-such-database")


def test_a_dump_source_refuses_a_field_its_kind_does_not_have():
    with pytest.raises(ValueError, match="user"):
        dump_source("redis", service="redis", host="redis", port=6379, user="admin")


def test_a_catalog_hook_refuses_a_user_its_kind_cannot_use():
    with pytest.raises(ValueError, match="a redis hook has no user"):
        BackupHook(kind="redis", port=6379, user="admin")


def test_record_fills_what_every_hook_reports():
    summary = BackupSummary(
        snapshot_id="abc123", files=1, bytes_processed=2048, bytes_added=512, seconds=0.1
    )
    started = time.monotonic()
    record = hooks.record(
        RedisSource(service="redis", host="redis"),
        [hooks.part(summary, "/redis/dump.rdb")],
        started,
    )
    assert (record.service, record.hook, record.status) == ("redis", "redis", "ok"), (
        f"record {record}"
    )
    assert record.parts == [
        Part(snapshot="abc123", path="/redis/dump.rdb", files=1, bytes=2048, bytes_added=512)
    ]
    assert record.seconds >= 0, f"record took {record.seconds} s"

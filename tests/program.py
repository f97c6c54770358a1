"""The program under mocks with the test fixtures: the stack files' config plus `OPERATOR_CONFIG`.

How the unit tests, the live replay and the benchmarks see what the program declares. The
machinery (`Program`, `Declared`, the mocks, `declare`) lives in `napdms_ops.declared`, which the
ops CLI's drift check uses too; its names are re-exported here for the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.settings import read_stack_file
from napdms_ops.declared import (
    MAIN,
    PROJECT,
    Declared,
    Program,
    declare,
    is_secret,
    labels_of,
    mock_password,
    unwrap,
    without_secrets,
)

__all__ = [
    "OPERATOR_CONFIG",
    "PROJECT",
    "ROOT",
    "STACKS",
    "Declared",
    "Program",
    "is_secret",
    "labels_of",
    "mock_password",
    "run_program",
    "stack_config",
    "unwrap",
    "without_secrets",
]

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")


OPERATOR_CONFIG: dict[str, str] = {
    "backup_ssh_key": (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "not a key: test fixture\n"
        "-----END OPENSSH PRIVATE KEY-----"
    ),
    "smtp_password": "smtp-password-test-fixture",
    "alert_webhook_url": "https://chat.nap-dms.example.org/hooks/fixture/token-test-fixture",
}
"""Encrypted config an operator sets before the first `up` (`pulumi config set --secret`): stack
files in git hold no secret, so a run of a stack file gets these, as secrets."""


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` block of Pulumi.<stack>.yaml, keys without the project namespace."""
    return read_stack_file(stack)[0]


def run_program(
    stack: str,
    config: Mapping[str, Any] | None = None,
    secret_keys: tuple[str, ...] = (),
    main: Path = MAIN,
) -> Program:
    """Run `main` (the real program by default) for `stack` under mocks; `config` replaces the
    stack file's values and `OPERATOR_CONFIG`."""
    if config is None:
        values = {**stack_config(stack), **OPERATOR_CONFIG}
        secret_keys = (*secret_keys, *OPERATOR_CONFIG)
    else:
        values = config
    return declare(stack, values, secret_keys, main)

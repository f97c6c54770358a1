"""Secrets the operator sets in the stack's encrypted config because pulumi-random cannot make
them: keys another system issues (the ASUSTOR's sftp login, the S3 bucket) and the SMTP password.

One table: the settings loader refuses them in plain text, the program reads them, the backup
agent's plan names their files, the README tells how to set them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorKey:
    """One encrypted config key the operator sets with `pulumi config set --secret`."""

    config_key: str
    """The config key (`pulumi config set --secret <config_key>`)."""
    holds: str
    """What it holds, for error messages."""
    secret: str | None = None
    """The platform secret it becomes (delivered as `/run/secrets/<secret>`), if a service reads
    it."""


SMTP_PASSWORD = OperatorKey("smtp_password", "the SMTP relay's password for alert mail")
BACKUP_SSH_KEY = OperatorKey(
    "backup_ssh_key",
    "the private key the backup agent logs in to the ASUSTOR's sftp with",
    "backup-ssh-key",
)
S3_ACCESS_KEY = OperatorKey(
    "s3_access_key_id", "the offsite S3 bucket's access key id", "backup-s3-access-key"
)
S3_SECRET_KEY = OperatorKey(
    "s3_secret_access_key", "the offsite S3 bucket's secret key", "backup-s3-secret-key"
)

OPERATOR_KEYS: tuple[OperatorKey, ...] = (
    SMTP_PASSWORD,
    BACKUP_SSH_KEY,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
)
"""Every config key that must be stored encrypted."""

BY_CONFIG_KEY: Mapping[str, OperatorKey] = {key.config_key: key for key in OPERATOR_KEYS}
BY_SECRET: Mapping[str, OperatorKey] = {key.secret: key for key in OPERATOR_KEYS if key.secret}
"""The platform secrets the operator supplies instead of pulumi-random, by secret name."""

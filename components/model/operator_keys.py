"""Secrets the operator sets in the stack's encrypted config because pulumi-random cannot make
them: keys another system issues (the ASUSTOR's sftp login, the S3 bucket) and the SMTP password.

One table: the settings loader refuses them in plain text, the program reads them, the backup
agent's plan names their files, the README tells how to set them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal


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
    form: Literal["private-key", "token", "line", "url"] = "line"
    """What a usable value looks like: a PEM or OpenSSH private key, one word without spaces, an
    http(s) URL, or one line of text."""

    def problem(self, value: object) -> str | None:
        """What is wrong with a decrypted `value`, without quoting it; None when it fits. A value
        still encrypted (`{secure: ...}`, as a stack file holds it) cannot be checked here."""
        if isinstance(value, dict) and set(value) == {"secure"}:
            return None
        if not isinstance(value, str) or not value.strip():
            return f"holds no text, but must hold {self.holds}"
        text = value.strip()
        if self.form == "private-key":
            if text.startswith(("ssh-", "ecdsa-", "sk-")):
                return "holds a public key, but must hold the private key, the file without .pub"
            lines = text.splitlines()
            if not (
                _PEM_BEGIN.fullmatch(lines[0]) and _PEM_END.fullmatch(lines[-1]) and len(lines) >= 3
            ):
                return "is not a private key file (-----BEGIN ... PRIVATE KEY----- to -----END)"
        elif self.form == "token" and any(c.isspace() or not c.isprintable() for c in text):
            return "holds spaces, line breaks or control characters, but must be one word"
        elif self.form == "url" and not _URL.fullmatch(value):
            # Checked as stored, not stripped: it is written into a config file as it is.
            return (
                "is not an http(s) URL without spaces or quotes, but must be one, e.g. "
                "https://chat.example.org/hooks/<id>/<token>"
            )
        elif self.form == "line" and any(c in "\r\n" or not c.isprintable() for c in text):
            return "holds line breaks or control characters, but must be one line"
        return None


_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/?#&=+%:@!$,;*()-]*)?")
"""A URL that can stand between quotes in a YAML file as it is."""
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")


SMTP_PASSWORD = OperatorKey(
    "smtp_password", "the SMTP relay's password for alert mail", "smtp-password"
)
ALERT_WEBHOOK_URL = OperatorKey(
    "alert_webhook_url",
    "the URL of the Rocket.Chat incoming webhook alerts are posted to",
    "alert-webhook-url",
    form="url",
)
BACKUP_SSH_KEY = OperatorKey(
    "backup_ssh_key",
    "the private key the backup agent logs in to the ASUSTOR's sftp with",
    "backup-ssh-key",
    form="private-key",
)
S3_ACCESS_KEY = OperatorKey(
    "s3_access_key_id", "the offsite S3 bucket's access key id", "backup-s3-access-key", "token"
)
S3_SECRET_KEY = OperatorKey(
    "s3_secret_access_key", "the offsite S3 bucket's secret key", "backup-s3-secret-key", "token"
)

OPERATOR_KEYS: tuple[OperatorKey, ...] = (
    SMTP_PASSWORD,
    ALERT_WEBHOOK_URL,
    BACKUP_SSH_KEY,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
)
"""Every config key that must be stored encrypted."""

BY_CONFIG_KEY: Mapping[str, OperatorKey] = {key.config_key: key for key in OPERATOR_KEYS}
BY_SECRET: Mapping[str, OperatorKey] = {key.secret: key for key in OPERATOR_KEYS if key.secret}
"""The platform secrets the operator supplies instead of pulumi-random, by secret name."""

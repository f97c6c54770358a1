"""Who holds a secret besides its file, and so what its rotation must also change.

Applying a rotated secret (`up`) rewrites its file in every holder's secrets volume, which
replaces the holder's init container and with it the holder's replicas: they start with the new
value. That is enough for a secret only the services read (Redis' password, application keys,
Grafana's admin password: `Restart`). It is not for a secret another system keeps its own copy
of, which a restart never changes:

- a database login (`DatabaseRole`): PostgreSQL creates each role from its file once, on the
  first start of an empty data directory, so a replaced server still checks the old password
  while its clients present the new one; the role's password is changed in the database;
- the restic password (`ResticKey`): the repository stays encrypted under the old key until the
  backup agent adds the new one and removes the old (`napdms_ops.backup.rekey`);
- Grafana's admin password (`ResetCommand`): Grafana takes it from its file only when it creates
  the admin user, so it is reset in Grafana from the new file.

Keys that encrypt data at rest (n8n's credentials key, Gitea's SECRET_KEY) are refused: a new
value would leave what the old one encrypted unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.catalog import backup_agent, mongodb, postgres
from components.model.spec import SECRETS_DIR
from components.settings.stack import Stack

RESTIC_PASSWORD = "restic-password"
DB_PASSWORD_SUFFIX = "-db-password"
"""PostgreSQL's first-start script makes a role `<app>` of each `<app>-db-password`."""


class NotRotatable(Exception):
    """This secret cannot be rotated by the command; the message says why and what to do."""


@dataclass(frozen=True)
class Restart:
    """The holders read the secret only from their files: `up` restarts them with the new one."""


@dataclass(frozen=True)
class DatabaseRole:
    """A login `role` a database server keeps its own copy of."""

    engine: str
    """`postgresql` or `mongodb`."""
    service: str
    """The database service (`postgres`, `mongodb`)."""
    role: str
    database: str
    """The database the role logs in to (MongoDB: where the user is defined)."""
    file: str
    """The secret's file inside the database's container, holding the new value after `up`."""


@dataclass(frozen=True)
class ResticKey:
    """The backup repositories' key: the agent moves them to the new password."""

    service: str = backup_agent.SPEC.name


@dataclass(frozen=True)
class ResetCommand:
    """A command run in the holder's container after `up`, that sets the login from the new
    file itself (the value never on its command line)."""

    service: str
    argv: tuple[str, ...]


Orchestration = Restart | DatabaseRole | ResticKey | ResetCommand

GRAFANA_RESET = ResetCommand(
    "grafana",
    (
        "sh",
        "-c",
        "grafana cli admin reset-admin-password --password-from-stdin "
        "< /run/secrets/grafana-admin-password",
    ),
)
ENCRYPTS_DATA = {
    "n8n-encryption-key": "n8n encrypts the credentials it stores with it",
    "gitea-secret-key": "Gitea encrypts two-factor secrets and OAuth2 app secrets with it",
}
"""Keys whose rotation would leave data unreadable, and what."""


def orchestration(stack: Stack, name: str) -> Orchestration:
    """What rotating secret `name` of `stack` involves besides `up`; raises `NotRotatable`."""
    if name == RESTIC_PASSWORD:
        return ResticKey()
    path = f"{SECRETS_DIR}/{name}"
    server = stack.services.get(postgres.SPEC.name)
    reads = server is not None and any(use.secret == name for use in server.secrets)
    if reads and name == "postgres-password":
        superuser = server.env.get("POSTGRES_USER", "postgres")
        return DatabaseRole("postgresql", server.name, superuser, "postgres", path)
    if reads and name.endswith(DB_PASSWORD_SUFFIX):
        app = name.removesuffix(DB_PASSWORD_SUFFIX)
        return DatabaseRole("postgresql", server.name, app, app, path)
    if name == mongodb.ROCKETCHAT_PASSWORD.secret:
        return DatabaseRole(
            "mongodb",
            mongodb.SPEC.name,
            mongodb.ROCKETCHAT_USER,
            mongodb.ROCKETCHAT_DB,
            mongodb.ROCKETCHAT_PASSWORD.path,
        )
    if name == mongodb.ROOT_PASSWORD.secret:
        # Changing it needs a login with the old password, which no file keeps after `up`
        # (the program keeps a previous value only for secrets a service reads as
        # `<name>-previous`).
        raise NotRotatable(
            f"{stack.name}: secrets rotate {name}: MongoDB checks the root password it was "
            "created with, and after `up` no file holds that old one to log in with; change it "
            "in mongosh (`db.getSiblingDB('admin').changeUserPassword('root', ...)`) to the new "
            "file's value right after raising the counter, or keep a "
            f"`{name}-previous` in the catalog first"
        )
    if name in ENCRYPTS_DATA:
        raise NotRotatable(
            f"{stack.name}: secrets rotate {name}: {ENCRYPTS_DATA[name]}, and a new key cannot "
            "read what the old one encrypted; re-encrypt that data first (export it decrypted), "
            f"then raise `secrets.rotation.{name}` by hand and run `up`"
        )
    if name == "grafana-admin-password" and GRAFANA_RESET.service in stack.services:
        return GRAFANA_RESET
    return Restart()


def replica_names(stack: Stack, service: str) -> list[str]:
    """Docker names of `service`'s long-running containers (both colours of a coloured one)."""
    spec = stack.services[service]
    prefix = f"{stack.name_prefix}-{service}"
    numbers = range(1, spec.replicas + 1)
    if spec.colours:
        return [f"{prefix}-{colour}-{n}" for colour in ("blue", "green") for n in numbers]
    return [f"{prefix}-{n}" for n in numbers]

"""What a container shows the world: published ports and the values in its environment."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .facts import ContainerFacts
from .rule import container_rule

_SECRET_NAME = re.compile(
    r"(^|_)(PASS|PWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|SECRET_?KEY|CREDENTIALS?|AUTH|"
    r"ENCRYPTION_?KEY|DSN)(_|$)"
    # Glued to a prefix too: PGPASSWORD, MONGOPASSWORD, APITOKEN, CLIENTSECRET.
    r"|(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN)(_|$)"
    # Any *_KEY: SECRET_KEY_BASE is caught above, N8N_ENCRYPTION_KEY, JWT_KEY, STRIPE_KEY here.
    r"|(^|_)KEYS?$",
    re.IGNORECASE,
)
_PUBLIC_KEY_NAME = re.compile(r"(^|_)(GPG|PGP|PUBLIC|PUB)_KEYS?$|PUBKEYS?$", re.IGNORECASE)
"""Names of keys that are not secrets: a GPG key id the image verified its download with."""
_REFERENCE_SUFFIXES = ("_FILE", "__FILE", "_PATH", "_DIR")
_PASSWORD_PARAMETER = re.compile(
    r"(^|[\s?&;])(password|passwd|pwd|pass|secret|token)=(?!/)[^&\s;]+", re.IGNORECASE
)
"""A password given as a parameter: `...?password=x`, libpq's `host=db password=x`."""


@container_rule(
    id="port-all-interfaces",
    title="Published ports are bound to one interface",
    severity="medium",
    cis="5.14",
    fix=(
        "set the port's ip to the host's LAN address (the stack's bind_address); "
        "only the proxy's 80/443 face every interface"
    ),
)
def port_all_interfaces(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if c.publish_all:
        yield "publishes every exposed port on every interface (publish_all_ports)"
    for port in c.ports:
        if port.all_interfaces:
            yield f"publishes {port.host_port}/{port.protocol} on every interface of the host"


@container_rule(
    id="literal-secret-env",
    title="No secret is passed as a literal environment value",
    severity="high",
    fix=(
        "deliver it as a file (the catalog's secrets: /run/secrets/<name>, and the image's *_FILE "
        "variable); environment values show in docker inspect, crash reports and child processes"
    ),
)
def literal_secret_env(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for name, value in c.env:
        name, value = name.strip(), value.strip()
        if not value or value.startswith("/"):
            continue  # unset, or a file (/run/secrets/<name>)
        if _password_in_url(value):
            yield f"{name} carries a password inside a URL"
        elif _PASSWORD_PARAMETER.search(value):
            yield f"{name} carries a password parameter"
        elif is_secret_name(name):
            yield f"{name} holds a literal value"


def is_secret_name(name: str) -> bool:
    """True for an environment variable named like a secret (`PGPASSWORD`, `*_PASSWORD`,
    `*_TOKEN`, `*_SECRET`, `*_KEY`, ...) that is not a reference to a file (`*_FILE`)."""
    name = name.strip()
    return (
        _SECRET_NAME.search(name) is not None
        and not name.upper().endswith(_REFERENCE_SUFFIXES)
        and _PUBLIC_KEY_NAME.search(name) is None
    )


def _password_in_url(value: str) -> bool:
    """`scheme://user:password@host` (an empty user too: `redis://:password@redis`), also with
    several hosts (`mongodb://u:p@a,b/db`)."""
    for word in value.split():
        if "://" not in word or "@" not in word:
            continue
        try:
            password = urlsplit(word).password
        except ValueError:
            password = None
        if password:
            return True
    return False

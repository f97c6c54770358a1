"""What a container shows the world: published ports and the values in its environment."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .facts import ContainerFacts
from .rule import container_rule

_SECRET_NAME = re.compile(
    r"(^|_)(PASSWORD|PASSWD|PASS|PWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|SECRET_?KEY|"
    r"CREDENTIALS?|AUTH|ENCRYPTION_?KEY|DSN)(_|$)",
    re.IGNORECASE,
)
_REFERENCE_SUFFIXES = ("_FILE", "__FILE", "_PATH", "_DIR")
_CREDENTIALS_IN_URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


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
        if not value or value.startswith("/"):
            continue
        if _CREDENTIALS_IN_URL.match(value):
            yield f"{name} carries a password inside a URL"
        elif _SECRET_NAME.search(name) and not name.upper().endswith(_REFERENCE_SUFFIXES):
            yield f"{name} holds a literal value"

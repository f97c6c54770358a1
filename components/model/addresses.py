"""Where a stack file points the platform: Docker endpoints, ssh logins and options, mail
addresses. Each check refuses what would hand control to someone else, and says what to write.

These strings leave the program: ssh's command line (a user or host starting with `-` is read as
an option, `ProxyCommand` runs a command), the Caddyfile and Alertmanager's config (a quote, brace
or line break in an address ends the value and starts new directives).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"
"""A DNS name (or an IPv4 address, which has the same form)."""
USER = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}"
"""A login name as NAS systems allow it."""
EMAIL = rf"[A-Za-z0-9._%+-]+@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}"
"""An e-mail address without quoting: the Caddyfile and Alertmanager take it as one token."""

_SSH_FLAGS = set("1246AaCfGgKkMNnqsTtVvXxYy")
_SSH_FLAGS_WITH_VALUE = set("BbcDEeFIiJLlmOopQRSWw")
_SSH_COMMAND_OPTIONS = {
    "proxycommand": "runs a command on this machine for every connection",
    "localcommand": "runs a command on this machine after connecting",
    "permitlocalcommand": "lets LocalCommand run a command on this machine",
    "knownhostscommand": "runs a command on this machine to find host keys",
    "remotecommand": "replaces the command the Docker endpoint runs on the host",
    "pkcs11provider": "loads a library into ssh",
    "securitykeyprovider": "loads a library into ssh",
    "include": "reads another config file",
    "match": "can run a command (Match exec)",
}
_SSH_HOST_KEY_FILES = {"userknownhostsfile", "globalknownhostsfile"}


def quoted(value: str) -> str:
    """`value` for a message: in double quotes, escaped, and cut when long."""
    return json.dumps(value if len(value) <= 80 else value[:72] + "...(cut)")


def printable(text: str) -> str:
    """`text` with line breaks and other control characters written as escapes (`\\n`), so a
    value inside a message cannot split it into lines or forge one."""
    return "".join(char if char.isprintable() else json.dumps(char)[1:-1] for char in text)


def login_problem(user: str, host: str) -> str | None:
    """What is wrong with `user@host` as an ssh login, or None."""
    for what, value in (("user", user), ("host", host)):
        if value.startswith("-"):
            return f'the {what} {quoted(value)} starts with "-", which ssh reads as an option'
    if not re.fullmatch(USER, user):
        return f"{quoted(user)} is not a user name"
    if not re.fullmatch(HOSTNAME, host):
        return f"{quoted(host)} is not a host name"
    return None


def docker_endpoint_problem(value: str) -> str | None:
    """What is wrong with a Docker endpoint (`hosts.<host>.docker_host`), or None."""
    example = 'use e.g. "ssh://deploy@qnap.example.org"'
    if value.lower().startswith(("tcp://", "http://", "https://")):
        return (
            f"{quoted(value)} reaches the Docker API over TCP without TLS, so anyone on the "
            f"network who reaches the port controls the host; {example} (the API over ssh)"
        )
    if value.startswith("unix://"):
        if re.fullmatch(r"unix:///[A-Za-z0-9._/-]+", value):
            return None
        return f'{quoted(value)} is not a socket path; use e.g. "unix:///var/run/docker.sock"'
    match = re.fullmatch(r"ssh://(?P<user>[^@/\s]+)@(?P<host>[^:/\s]+)(?::[0-9]{1,5})?", value)
    if match is None:
        return f"{quoted(value)} is not a Docker endpoint; {example}"
    problem = login_problem(match["user"], match["host"])
    return f"{quoted(value)}: {problem}; {example}" if problem else None


def ssh_options_problem(args: list[str]) -> str | None:
    """The first of `args` (extra ssh arguments) that weakens host-key checking or runs a
    command, as a problem with its fix, or None. Flags may be joined (`-oKey=value`, `-qo`), an
    option's keyword is case-insensitive and its value follows `=` or spaces."""
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-") or arg in ("-", "--"):
            return (
                f"{quoted(arg)} is not an ssh option; write options as -o Key=value "
                "(two entries: -o, Key=value)"
            )
        for position, flag in enumerate(arg[1:], start=1):
            if flag in _SSH_FLAGS:
                continue
            if flag not in _SSH_FLAGS_WITH_VALUE:
                return f"-{flag} is not an ssh option; remove it"
            value = arg[position + 1 :]
            if not value:
                index += 1
                if index == len(args):
                    return f"-{flag} needs a value; add it as the next entry or remove -{flag}"
                value = args[index]
            problem = _ssh_flag_problem(flag, value)
            if problem:
                return problem
            break
        index += 1
    return None


def _ssh_flag_problem(flag: str, value: str) -> str | None:
    if flag == "F":
        return (
            "-F reads another ssh config file, which can switch host-key checking off or run "
            "commands; remove it and list the options here"
        )
    if flag != "o":
        return None
    match = re.fullmatch(r"\s*([A-Za-z0-9]+)\s*(?:=\s*|\s+)(.*?)\s*", value, re.DOTALL)
    if match is None:
        return f"-o {quoted(value)} is not Key=value; write e.g. -o ServerAliveInterval=15"
    keyword, setting = match[1].lower(), match[2].strip("\"'").lower()
    written = f"-o {value.strip()}"
    if keyword in _SSH_COMMAND_OPTIONS and not (
        keyword == "permitlocalcommand" and setting in ("no", "false")
    ):
        jump = " (for a jump host use -J <host>)" if keyword == "proxycommand" else ""
        return f"{quoted(written)} {_SSH_COMMAND_OPTIONS[keyword]}; remove it{jump}"
    weakens = (keyword == "stricthostkeychecking" and setting not in ("yes", "ask", "true")) or (
        keyword in _SSH_HOST_KEY_FILES and setting in ("/dev/null", "none")
    )
    if weakens:
        return (
            f"{quoted(written)} weakens host-key checking, so a machine posing as the host "
            "gets the connection; remove it and put the host's key in ~/.ssh/known_hosts "
            "(ssh-keyscan, checked by hand)"
        )
    return None


def check_email(value: str) -> str:
    """An e-mail address the Caddyfile and Alertmanager can take as one token."""
    if not re.fullmatch(EMAIL, value):
        raise ValueError(
            f"{quoted(value)} is not a plain e-mail address (no quotes, braces, spaces or line "
            "breaks: it is written into the Caddyfile and Alertmanager's config); "
            'use e.g. "ops@example.org"'
        )
    return value


def check_hostname(value: str) -> str:
    """A DNS name or IP address a service connects to (the SMTP relay)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if value.startswith("-") or not re.fullmatch(HOSTNAME, value) or len(value) > 253:
        raise ValueError(
            f'{quoted(value)} is not a host name or IP address; use e.g. "smtp.example.org"'
        )
    return value


Email = Annotated[
    str, AfterValidator(check_email), WithJsonSchema({"type": "string", "pattern": f"^{EMAIL}$"})
]
"""An e-mail address as it may reach generated config files."""
Hostname = Annotated[
    str,
    AfterValidator(check_hostname),
    WithJsonSchema({"type": "string", "examples": ["smtp.example.org"]}),
]
"""A host name or IP address."""

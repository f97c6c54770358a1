"""Run the real `__main__.py` under Pulumi mocks with a stack file's config, and record it all.

This is how the unit tests, the live replay and the benchmarks see what the program declares:
every registered resource with its inputs (secrets still wrapped as secrets), its provider,
its parent, and the stack outputs. The Pulumi internals a whole run needs stay behind
`tests/pulumi_seam.py`; this module uses the SDK's public API only.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from components.settings import read_stack_file
from tests.pulumi_seam import run_under_mocks

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "nap-dms-platform"
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


@dataclass
class Declared:
    """One resource as the program registered it."""

    type: str
    name: str
    inputs: dict[str, Any]
    """Inputs as the engine receives them; secret values stay wrapped (see `is_secret`)."""
    provider: str
    parent: str
    urn: str
    protect: bool
    dependencies: list[str]
    """URNs this resource waits for (`depends_on` and inputs from other resources)."""

    def plain(self, key: str, default: Any = None) -> Any:
        """An input with secret wrappers removed."""
        return unwrap(self.inputs.get(key, default))


@dataclass
class Program:
    """Everything one run of the program declared."""

    stack: str
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    """Stack outputs; secret ones stay wrapped."""

    def of_type(self, type_: str) -> list[Declared]:
        """Resources of one type token, in registration order."""
        return [r for r in self.resources if r.type == type_]

    def by_urn(self, urn: str) -> Declared:
        """The resource with this URN."""
        return next(r for r in self.resources if r.urn == urn)

    def containers(self) -> list[Declared]:
        """Every docker.Container, long-running and init alike."""
        return self.of_type("docker:index/container:Container")

    def services(self) -> list[Declared]:
        """Long-running service containers (not the one-shot init containers)."""
        return [c for c in self.containers() if labels_of(c).get("napdms.role") != "init"]


def is_secret(value: Any) -> bool:
    """True for a value the engine would encrypt in state."""
    return rpc.is_rpc_secret(value)


def without_secrets(value: Any) -> Any:
    """`value` with every secret-wrapped part removed: what would be stored in plain text."""
    if is_secret(value):
        return None
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def unwrap(value: Any) -> Any:
    """Remove secret wrappers anywhere inside `value`."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def labels_of(resource: Declared) -> dict[str, str]:
    """A container's or volume's labels as a dict."""
    return {item["label"]: item["value"] for item in resource.plain("labels", [])}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def mock_password(text: str, size: int = 32) -> str:
    """The value the mocks give the RandomPassword named `text`."""
    alphabet = string.ascii_letters + string.digits
    return "".join(
        alphabet[b % len(alphabet)] for b in hashlib.sha256(text.encode()).digest()[:size]
    )


class _Mocks(pulumi_mocks.Mocks):
    """Return inputs plus the few outputs the providers compute, deterministically."""

    def __init__(self, program: Program):
        self.program = program

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            ref = unwrap(args.inputs["name"])
            repo = ref.split("@")[0].rsplit(":", 1)[0] if "/" in ref or ":" in ref else ref
            state["repoDigest"] = f"{repo}@sha256:{_digest(ref)}"
            state["imageId"] = f"sha256:{_digest('id' + ref)}"
        elif args.typ == "docker:index/image:Image":
            # A local build without push: the provider reports the built image's id as repoDigest.
            state["repoDigest"] = (
                f"sha256:{_digest(json.dumps(unwrap(args.inputs), sort_keys=True))}"
            )
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = mock_password(args.name)
        return f"{args.name}-id", state

    def call(self, args: pulumi_mocks.MockCallArgs):
        return {}


class _Monitor(pulumi_mocks.MockMonitor):
    """Mock monitor that also records each resource's parent and provider."""

    def __init__(self, mocks: _Mocks, program: Program):
        super().__init__(mocks)
        self.program = program

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.program.resources.append(
                Declared(
                    type=request.type,
                    name=request.name,
                    inputs=rpc.deserialize_properties(request.object),
                    provider=request.provider,
                    parent=request.parent,
                    urn=response.urn,
                    protect=request.protect,
                    dependencies=list(request.dependencies),
                )
            )
        return response


def run_program(
    stack: str,
    config: Mapping[str, Any] | None = None,
    secret_keys: tuple[str, ...] = (),
    main: Path = ROOT / "__main__.py",
) -> Program:
    """Run `main` (the real program by default) for `stack` under mocks; `config` replaces the
    stack file's values and `OPERATOR_CONFIG`."""
    if config is None:
        values = {**stack_config(stack), **OPERATOR_CONFIG}
        secret_keys = (*secret_keys, *OPERATOR_CONFIG)
    else:
        values = config
    program = Program(stack=stack)
    pulumi.runtime.set_all_config(
        {
            f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value)
            for key, value in values.items()
        },
        [f"{PROJECT}:{key}" for key in secret_keys],
    )
    mocks = _Mocks(program)
    exports = run_under_mocks(
        lambda: runpy.run_path(str(main), run_name="__main__"),
        mocks,
        _Monitor(mocks, program),
        project=PROJECT,
        stack=stack,
    )
    for name, export in exports.items():
        program.outputs[name] = rpc.wrap_rpc_secret(export.value) if export.secret else export.value
    return program

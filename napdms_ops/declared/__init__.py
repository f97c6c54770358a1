"""What a stack declares: the real `__main__.py` run under Pulumi mocks, each registration kept.

This is how the tests, the live replay, the benchmarks and the ops CLI's drift check see the
resource graph without the Pulumi CLI: every registered resource with its inputs (secrets still
wrapped as secrets), its provider, its parent, and the stack outputs. The Pulumi internals a
whole run needs stay behind `napdms_ops/declared/pulumi_seam.py`; this module uses the SDK's
public API only. The Pulumi runtime is process-global: run one program at a time.
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

from components.model.operator_keys import OPERATOR_KEYS
from components.settings import read_stack_file
from components.settings.loader import PROJECT_DIR
from napdms_ops.declared.pulumi_seam import run_under_mocks
from policies.rules.names import INIT_ROLE, ROLE_LABEL

PROJECT = "nap-dms-platform"
MAIN = PROJECT_DIR / "__main__.py"

PLACEHOLDERS: dict[str, str] = {
    "private-key": (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "placeholder: the encrypted value is not read\n"
        "-----END OPENSSH PRIVATE KEY-----"
    ),
    "token": "placeholder-not-read",
    "line": "placeholder, the encrypted value is not read",
    "url": "https://placeholder.invalid/the-encrypted-value-is-not-read",
}
"""A value of each operator-key form (`OperatorKey.form`): what the program gets, as a secret,
in place of an encrypted key only the Pulumi CLI can decrypt. Each fits its form, so the settings
accept it; a secret's value never reaches a name, label or plain input, so the graph is the same."""


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
        return [c for c in self.containers() if labels_of(c).get(ROLE_LABEL) != INIT_ROLE]


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
    """A container's, volume's or network's labels as a dict."""
    return {item["label"]: item["value"] for item in resource.plain("labels", [])}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def mock_repo_digest(ref: str) -> str:
    """The `repoDigest` the mocks give a RemoteImage pulling `ref`: what its containers' `image`
    reads under mocks, where the real one comes from the registry at `up`."""
    repo = ref.split("@")[0].rsplit(":", 1)[0] if "/" in ref or ":" in ref else ref
    return f"{repo}@sha256:{_digest(ref)}"


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
            state["repoDigest"] = mock_repo_digest(ref)
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


def declare(
    stack: str,
    values: Mapping[str, Any],
    secret_keys: tuple[str, ...] | frozenset[str] | set[str] = (),
    main: Path = MAIN,
) -> Program:
    """Run `main` (the real program by default) for `stack` under mocks with config `values`
    (keys without the project namespace; `secret_keys` of them marked secret), and return all it
    declared. A settings error surfaces as the program raises it (`pulumi.RunError`)."""
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


def declare_stack(stack: str, project_dir: Path = PROJECT_DIR) -> Program:
    """What `Pulumi.<stack>.yaml` declares, as the ops CLI sees it without the Pulumi CLI: the
    stack file's values, and every operator key (`OPERATOR_KEYS`) as a secret placeholder of its
    form, whether the file holds it encrypted or not. The program reads only the keys its settings
    need, and only as secrets, so the placeholders change no name, label or plain input."""
    values, encrypted = read_stack_file(stack, project_dir)
    placeholders = {key.config_key: PLACEHOLDERS[key.form] for key in OPERATOR_KEYS}
    # Any other encrypted key stays marked, so the settings refuse it as `pulumi up` would.
    secret_keys = frozenset(encrypted) | frozenset(placeholders)
    return declare(stack, {**values, **placeholders}, secret_keys, project_dir / "__main__.py")

"""Speak to the policy pack the way the Pulumi engine does.

`PackProcess` starts `policies/__main__.py`, reads the port it prints and opens the analyzer
gRPC service. `configure` sends a stack's `policies/config/<stack>.json` as the CLI's
`--policy-pack-config` would (a level and settings per policy, checked against each policy's
config schema). `analyze` and `analyze_stack` send what the program declared under mocks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
import jsonschema
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from tests.program import Declared, Program

POLICIES = Path(__file__).resolve().parent.parent.parent / "policies"
_LEVELS = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "disabled": analyzer_pb2.DISABLED,
}
_LEVEL_NAMES = {number: name for name, number in _LEVELS.items()}


@dataclass(frozen=True)
class Diagnostic:
    """One violation the pack reported."""

    policy: str
    level: str
    """`advisory` or `mandatory`."""
    urn: str
    message: str


class PackProcess:
    """The pack as a running analyzer plugin; use as a context manager."""

    def __init__(self, pack_dir: Path = POLICIES):
        self.pack_dir = pack_dir
        self.process: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None
        self.stub: analyzer_pb2_grpc.AnalyzerStub | None = None

    def __enter__(self) -> PackProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-u", "__main__.py"],
            cwd=self.pack_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.process.kill()
            raise RuntimeError(
                f"policy pack printed {line!r} instead of a port: {self.process.stderr.read()}"
            )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)
        return self

    def __exit__(self, *exc) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process.stdout.close()
            self.process.stderr.close()

    def info(self) -> analyzer_pb2.AnalyzerInfo:
        """GetAnalyzerInfo: the pack's name and its policies."""
        return self.stub.GetAnalyzerInfo(empty_pb2.Empty())

    def plugin_version(self) -> str:
        """GetPluginInfo: the pulumi-policy SDK version serving the pack."""
        return self.stub.GetPluginInfo(empty_pb2.Empty()).version

    def configure(self, stack: str, document: dict | None = None) -> None:
        """Send a policy config (the stack's file unless `document` is given), as the CLI does:
        every policy gets a level (the file's, or its default) and its settings, validated
        against the policy's config schema."""
        if document is None:
            document = json.loads((self.pack_dir / "config" / f"{stack}.json").read_text())
        default = document.get("all")
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for policy in self.info().policies:
            entry = document.get(policy.name, default)
            level = _LEVEL_NAMES[policy.enforcementLevel]
            settings: dict = {}
            if isinstance(entry, str):
                level = entry
            elif isinstance(entry, dict):
                settings = {k: v for k, v in entry.items() if k != "enforcementLevel"}
                level = entry.get("enforcementLevel", level)
            schema = json_format.MessageToDict(policy.configSchema)
            jsonschema.validate(
                settings, {"type": "object", **schema, "additionalProperties": False}
            )
            config = analyzer_pb2.PolicyConfig(enforcementLevel=_LEVELS[level])
            config.properties.update(settings)
            request.policyConfig[policy.name].CopyFrom(config)
        self.stub.Configure(request)
        self.stub.ConfigureStack(
            analyzer_pb2.AnalyzerStackConfigureRequest(
                stack=stack, project="nap-dms-platform", dry_run=True
            )
        )

    def analyze(self, resource: Declared) -> list[Diagnostic]:
        """Analyze: one resource, as the engine sends each before it is created or updated."""
        response = self.stub.Analyze(
            analyzer_pb2.AnalyzeRequest(
                type=resource.type,
                properties=_struct(resource.inputs),
                urn=resource.urn,
                name=resource.name,
                provider=_provider(resource),
            )
        )
        return _diagnostics(response, resource.urn)

    def analyze_program(self, program: Program) -> list[Diagnostic]:
        """Everything the engine asks during an update: each resource, then the whole stack."""
        found: list[Diagnostic] = []
        for resource in program.resources:
            found += self.analyze(resource)
        return found + self.analyze_stack(program.resources)

    def analyze_stack(self, resources: Iterable[Declared]) -> list[Diagnostic]:
        """AnalyzeStack: every resource of the stack at once, each with its provider's inputs
        (as the engine sends them: the docker provider's `host` says which daemon)."""
        resources = list(resources)
        providers = {r.urn: r.inputs for r in resources if r.type.startswith("pulumi:providers:")}
        response = self.stub.AnalyzeStack(
            analyzer_pb2.AnalyzeStackRequest(
                resources=[
                    analyzer_pb2.AnalyzerResource(
                        type=r.type,
                        properties=_struct(r.inputs),
                        urn=r.urn,
                        name=r.name,
                        provider=_provider(r, providers),
                        parent=r.parent,
                        dependencies=r.dependencies,
                    )
                    for r in resources
                ]
            )
        )
        return _diagnostics(response, "")


def _struct(inputs: dict) -> struct_pb2.Struct:
    # Secret values keep their wrapper, as the engine sends them.
    struct = struct_pb2.Struct()
    struct.update(inputs)
    return struct


def _provider(
    resource: Declared, providers: dict[str, dict] | None = None
) -> analyzer_pb2.AnalyzerProviderResource | None:
    if not resource.provider:
        return None
    urn = resource.provider.rsplit("::", 1)[0]
    return analyzer_pb2.AnalyzerProviderResource(
        type="pulumi:providers:docker",
        urn=urn,
        name=urn.rsplit("::", 1)[-1],
        properties=_struct((providers or {}).get(urn, {})),
    )


def _diagnostics(response: analyzer_pb2.AnalyzeResponse, urn: str) -> list[Diagnostic]:
    return [
        Diagnostic(d.policyName, _LEVEL_NAMES[d.enforcementLevel], d.urn or urn, d.message)
        for d in response.diagnostics
    ]

"""The CrossGuard policies: one per rule of `rules`, plus one advisory policy for exemptions.

Each container rule becomes a `ResourceValidationPolicy` on `docker.Container`, each stack rule a
`StackValidationPolicy`. A finding the stack's config grants an exemption from (the rule's
`exempt` setting, recorded on the container by a `napdms.exempt.<rule-id>` label) is not a
violation of its rule; the `exemptions` policy (advisory) reports it with its reason instead, so
nothing is waived silently. A label nobody granted is the `unauthorised-exemption` rule's finding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyComplianceFramework,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from rules import (
    CONTAINER_RULES,
    RULES_BY_ID,
    STACK_RULES,
    Finding,
    Rule,
    StackFacts,
    Subject,
    check_container,
    from_pulumi,
    stack_findings,
)
from rules.grants import SELF_GRANT_RULE, TABLE_SETTING, rule_grants
from rules.levels import EXEMPTIONS_POLICY

PACK_NAME = "napdms-hardening"
_SEVERITY = {
    "low": Severity.LOW,
    "medium": Severity.MEDIUM,
    "high": Severity.HIGH,
    "critical": Severity.CRITICAL,
}


def policies() -> list:
    """Every policy of the pack, mandatory unless the stack's config file says otherwise."""
    made: list = [_container_policy(rule) for rule in CONTAINER_RULES]
    made += [_stack_policy(rule) for rule in STACK_RULES]
    made.append(
        StackValidationPolicy(
            name=EXEMPTIONS_POLICY,
            description="Documented exemptions from the hardening rules, each with its reason",
            enforcement_level=EnforcementLevel.ADVISORY,
            severity=Severity.LOW,
            remediation_steps=(
                "review the reason; remove the exemption from the catalog once the service no "
                "longer needs it"
            ),
            validate=_report_exemptions,
            config_schema=PolicyConfigSchema(
                properties={
                    TABLE_SETTING: RULES_BY_ID[SELF_GRANT_RULE].config_schema[TABLE_SETTING]
                }
            ),
        )
    )
    return made


def _container_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type != from_pulumi.CONTAINER:
            return
        facts = from_pulumi.container(_plain(args.props), args.name, _host(args.provider))
        for finding in check_container(facts, rule, args.get_config()):
            if not finding.exempt_reason:
                report(finding.message, None)

    return ResourceValidationPolicy(validate=validate, **_metadata(rule))


def _stack_policy(rule: Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        stack, urns = _stack_facts(args.resources)
        for subject, finding in stack_findings(stack, rule, args.get_config()):
            if not finding.exempt_reason:
                report(finding.message, urns.get(id(subject)))

    return StackValidationPolicy(validate=validate, **_metadata(rule))


def _report_exemptions(args: StackValidationArgs, report: ReportViolation) -> None:
    stack, urns = _stack_facts(args.resources)
    table = args.get_config().get(TABLE_SETTING) or {}
    findings: list[tuple[Subject, Finding]] = []
    for rule in CONTAINER_RULES:
        grants = rule_grants(table, rule.id)
        findings += [
            (container, finding)
            for container in stack.containers
            for finding in check_container(container, rule, grants)
        ]
    for rule in STACK_RULES:
        findings += stack_findings(stack, rule, rule_grants(table, rule.id))
    for subject, finding in findings:
        if finding.exempt_reason:
            report(finding.message, urns.get(id(subject)))


def _metadata(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.id,
        "description": rule.title,
        "enforcement_level": EnforcementLevel.MANDATORY,
        "severity": _SEVERITY[rule.severity],
        "remediation_steps": rule.fix,
        "framework": (
            PolicyComplianceFramework(
                name="CIS Docker Benchmark", version="1.6.0", reference=rule.cis
            )
            if rule.cis
            else None
        ),
        "config_schema": PolicyConfigSchema(properties=dict(rule.config_schema))
        if rule.config_schema
        else None,
    }


def _stack_facts(resources: Sequence[PolicyResource]) -> tuple[StackFacts, dict[int, str]]:
    """Facts of the stack's Docker resources, and the URN of each by the facts' `id()` (Docker
    names repeat across hosts)."""
    readers: dict[str, Callable[[Mapping[str, Any], str, str], Any]] = {
        from_pulumi.CONTAINER: from_pulumi.container,
        from_pulumi.VOLUME: from_pulumi.volume,
        from_pulumi.NETWORK: from_pulumi.network,
    }
    found: dict[str, list] = {kind: [] for kind in readers}
    urns: dict[int, str] = {}
    # A container's PIDs limit is set by a command beside it (pulumi-docker has no field for it).
    pids = from_pulumi.pids_limits_from_commands(
        _plain(r.props) for r in resources if r.resource_type == from_pulumi.COMMAND
    )
    for resource in resources:
        read = readers.get(resource.resource_type)
        if read is None:
            continue
        facts = read(_plain(resource.props), resource.name, _host(resource.provider))
        if resource.resource_type == from_pulumi.CONTAINER:
            endpoint = from_pulumi.docker_endpoint(
                _plain(resource.provider.props) if resource.provider is not None else None
            )
            facts = replace(facts, pids_limit=pids.get((endpoint, facts.name), 0))
        found[resource.resource_type].append(facts)
        urns[id(facts)] = resource.urn
    return (
        StackFacts(
            containers=tuple(found[from_pulumi.CONTAINER]),
            volumes=tuple(found[from_pulumi.VOLUME]),
            networks=tuple(found[from_pulumi.NETWORK]),
        ),
        urns,
    )


def _host(provider: Any | None) -> str:
    # Ports collide per Docker daemon, and each daemon is one provider resource.
    return provider.urn if provider is not None else ""


def _plain(value: Any) -> Any:
    """The property values without the SDK's unknown-checking proxies: the adapters decide what
    an unknown value (still a sentinel string here) means, rather than the whole policy failing."""
    if isinstance(value, Mapping):
        raw = value if isinstance(value, dict) else value["__target"]
        return {key: _plain(item) for key, item in raw.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        raw = value if isinstance(value, list) else value["__target"]
        return [_plain(item) for item in raw]
    return value

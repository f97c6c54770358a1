"""Grafana's provisioning, generated from the catalog: every enabled service on the overview,
a dashboard per monitor kind present, valid PromQL (checked by `promtool`), parseable files,
stable output, and only datasource uids that are provisioned."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from components.catalog import generated_files, loki
from components.catalog.grafana import DASHBOARDS_DIR
from components.monitoring.dashboards import KINDS, kind_module
from components.settings import load_stack
from tests.catalog_entries import fake_service, with_service
from tests.program import STACKS, stack_config

DATASOURCES = "datasources/napdms.yaml"
PROVIDERS = "dashboards/napdms.yaml"
_GRAFANA_VARIABLE = re.compile(r"\$(__\w+|\{__\w+\})")


def _context(stack: str):
    return load_stack(stack, stack_config(stack), set()).context


def _files(context) -> dict[str, str]:
    return generated_files("grafana", context)


def _dashboards(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Dashboard name (file stem) -> parsed JSON."""
    prefix = f"{DASHBOARDS_DIR}/"
    return {
        name.removeprefix(prefix).removesuffix(".json"): json.loads(content)
        for name, content in files.items()
        if name.startswith(prefix)
    }


def _panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in document["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _targets(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in _panels(document):
        yield from panel.get("targets", [])


def _uids(value: Any) -> Iterator[str]:
    """Every datasource uid a document names, wherever it sits."""
    if isinstance(value, dict):
        source = value.get("datasource")
        if isinstance(source, dict) and "uid" in source:
            yield source["uid"]
        for item in value.values():
            yield from _uids(item)
    elif isinstance(value, list):
        for item in value:
            yield from _uids(item)


def _exprs(document: dict[str, Any], uid: str) -> list[str]:
    return [t["expr"] for t in _targets(document) if t["datasource"]["uid"] == uid]


@pytest.fixture(scope="module", params=STACKS)
def stack_files(request):
    """(stack, its context, Grafana's generated files)."""
    context = _context(request.param)
    return request.param, context, _files(context)


def test_every_enabled_service_has_a_row_with_its_own_queries_on_the_overview(stack_files):
    stack, context, files = stack_files
    overview = _dashboards(files)["overview"]
    rows = {p["title"] for p in overview["panels"] if p["type"] == "row"}
    queries = " ".join(_exprs(overview, "prometheus"))
    assert context.services
    for name in context.services:
        assert name in rows, f"{stack}: no overview row for {name}"
        assert f'service="{name}"' in queries, f"{stack}: no query about {name}"


def test_every_monitor_kind_present_gets_its_dashboard(stack_files):
    stack, context, files = stack_files
    present = {kind for spec in context.services.values() for kind in spec.monitors}
    assert present
    assert set(_dashboards(files)) == {"overview", *present}, stack


@pytest.mark.parametrize("kind", KINDS)
def test_every_monitor_kind_has_a_dashboard_module(kind):
    module = kind_module(kind)
    assert module is not None, f"components/monitoring/dashboards/{kind}.py is missing"
    assert module.TITLE and callable(module.panels)


def _with_new_entry(**declared):
    """The dev stack's context with a service no catalog module declares."""
    return with_service(_context("dev"), fake_service(**declared))


def test_a_new_catalog_entry_gets_its_status_latency_restarts_and_public_panels():
    overview = _dashboards(_files(_with_new_entry()))["overview"]
    titled = {p["title"]: p for p in _panels(overview)}
    assert "fake-wiki" in titled, "no row for the new service"
    status = [t["expr"] for t in titled["fake-wiki status"]["targets"]]
    assert status == [
        'min(up{job="fake-wiki"})',
        'min(probe_success{job="probe", service="fake-wiki"})',
        'min(probe_success{job="probe-public", service="fake-wiki"})',
    ]
    latency = " ".join(t["expr"] for t in titled["fake-wiki response time"]["targets"])
    assert 'probe_duration_seconds{job="probe", service="fake-wiki"}' in latency
    assert 'probe_duration_seconds{job="probe-public", service="fake-wiki"}' in latency
    assert "fake-wiki public URL availability" in titled
    restarts = titled["fake-wiki restarts (1h)"]["targets"][0]["expr"]
    assert restarts == 'changes(process_start_time_seconds{job="fake-wiki"}[1h])'


def test_a_new_entry_declaring_a_monitor_kind_is_on_that_kinds_dashboard():
    boards = _dashboards(_files(_with_new_entry(monitors=["postgresql"])))
    assert "postgresql" in boards, "no dashboard for the kind the new entry declares"
    queries = _exprs(boards["postgresql"], "prometheus")
    assert any("fake-wiki" in q for q in queries), "the new entry is not on it"


def test_every_promql_expression_passes_promtool(stack_files, tmp_path):
    stack, _, files = stack_files
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: apt-get install prometheus"
    exprs = sorted(
        {
            _GRAFANA_VARIABLE.sub("5m", expr)
            for document in _dashboards(files).values()
            for expr in _exprs(document, "prometheus")
        }
    )
    assert len(exprs) > 20
    # promtool checks expressions only inside rules: each becomes one recording rule.
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{stack}: promtool rejects a panel query: {result.stderr}"


def test_provisioning_files_parse_as_grafana_reads_them(stack_files):
    stack, _, files = stack_files
    datasources = yaml.safe_load(files[DATASOURCES])
    providers = yaml.safe_load(files[PROVIDERS])
    assert datasources["apiVersion"] == providers["apiVersion"] == 1
    assert {d["uid"] for d in datasources["datasources"]} == {"prometheus", "loki", "alertmanager"}
    [provider] = providers["providers"]
    assert provider["options"]["path"].endswith(f"/{DASHBOARDS_DIR}")
    for name, document in _dashboards(files).items():
        assert document["uid"] == f"napdms-{name}", stack
        ids = [p["id"] for p in _panels(document)]
        assert len(ids) == len(set(ids)), f"{stack} {name}: panel ids repeat"


def test_queries_of_a_panel_have_distinct_ref_ids(stack_files):
    stack, _, files = stack_files
    for name, document in _dashboards(files).items():
        for panel in _panels(document):
            refs = [t["refId"] for t in panel.get("targets", [])]
            assert all(refs) and len(refs) == len(set(refs)), f"{stack} {name} {panel['title']}"


def test_generated_files_are_identical_on_a_second_run(stack_files):
    stack, _, files = stack_files
    assert _files(_context(stack)) == files


def test_dashboards_name_only_provisioned_datasources(stack_files):
    stack, _, files = stack_files
    provisioned = {d["uid"] for d in yaml.safe_load(files[DATASOURCES])["datasources"]}
    for name, document in _dashboards(files).items():
        named = set(_uids(document))
        assert named, f"{stack} {name}: no datasource at all"
        assert named <= provisioned, f"{stack} {name} names {sorted(named - provisioned)}"


def test_the_error_log_panels_count_the_lines_lokis_alert_counts(stack_files):
    stack, _, files = stack_files
    queries = _exprs(_dashboards(files)["logs"], "loki")
    assert queries
    for query in queries:
        assert f"|~ `{loki.ERROR_PATTERN}`" in query, f"{stack}: {query}"


def test_datasources_follow_the_enabled_services():
    context = _context("dev")
    without_loki = dataclasses.replace(
        context, services={n: s for n, s in context.services.items() if n != "loki"}
    )
    provisioned = yaml.safe_load(_files(without_loki)[DATASOURCES])["datasources"]
    assert {d["uid"] for d in provisioned} == {"prometheus", "alertmanager"}

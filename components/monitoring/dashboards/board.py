"""What every dashboard is built from: the datasources' fixed uids, panel and query constructors,
and the layout that turns a list of panels into a Grafana dashboard document.

Panels get their grid position and id from their place in the list, and a dashboard its uid from
its name, so the same stack renders byte-identical files on every run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import attr
from grafanalib import core

from components.model.spec import MonitorKind, ServiceSpec

PROMETHEUS_UID = "prometheus"
LOKI_UID = "loki"
ALERTMANAGER_UID = "alertmanager"

PROMETHEUS = {"type": "prometheus", "uid": PROMETHEUS_UID}
"""How a panel names the Prometheus datasource Grafana provisioning creates."""
LOKI = {"type": "loki", "uid": LOKI_UID}
"""How a panel names the Loki datasource."""

GRID_WIDTH = 24
"""Grafana's dashboard is 24 columns wide."""
_HEIGHT = 7
_ROW_HEIGHT = 1
_UP_DOWN = [
    {
        "type": "value",
        "options": {
            "0": {"color": "red", "index": 0, "text": "DOWN"},
            "1": {"color": "green", "index": 1, "text": "UP"},
        },
    }
]
_RED_FROM_ONE = [{"color": "green", "value": None}, {"color": "red", "value": 1}]
_RED_BELOW_ONE = [{"color": "red", "value": None}, {"color": "green", "value": 1}]


class StackView(Protocol):
    """What the dashboards read of a stack (a `CatalogContext` is one)."""

    stack: str
    services: Mapping[str, ServiceSpec]


def services_with(context: StackView, kind: MonitorKind) -> list[ServiceSpec]:
    """The enabled services that declare `kind`, by name."""
    return sorted(
        (s for s in context.services.values() if kind in s.monitors), key=lambda s: s.name
    )


def jobs(services: Iterable[ServiceSpec]) -> str:
    """A `job=~` regex of the services that Prometheus scrapes (their job is their name); `none`
    when none is scraped, so the panel stays empty instead of failing to parse."""
    return "|".join(s.name for s in services if s.metrics) or "none"


def prom(expr: str, legend: str = "", instant: bool = False, table: bool = False) -> core.Target:
    """A PromQL query against the provisioned Prometheus."""
    return core.Target(
        expr=expr,
        legendFormat=legend,
        instant=instant or table,
        format="table" if table else core.TIME_SERIES_TARGET_FORMAT,
        intervalFactor=1,
        datasource=PROMETHEUS,
    )


def logql(expr: str, legend: str = "") -> core.Target:
    """A LogQL query against the provisioned Loki."""
    return core.Target(expr=expr, legendFormat=legend, intervalFactor=1, datasource=LOKI)


def _sized(width: int, height: int = _HEIGHT) -> core.GridPos:
    return core.GridPos(h=height, w=width, x=0, y=0)


def timeseries(
    title: str, targets: Sequence[core.Target], unit: str = "short", width: int = 8
) -> core.TimeSeries:
    """A graph over time, one line per series."""
    return core.TimeSeries(
        title=title,
        dataSource=_datasource_of(targets),
        targets=list(targets),
        unit=unit,
        gridPos=_sized(width),
    )


def stat(
    title: str,
    targets: Sequence[core.Target],
    unit: str = "none",
    width: int = 4,
    thresholds: list[dict[str, Any]] | None = None,
    mappings: list[dict[str, Any]] | None = None,
) -> core.Stat:
    """The latest value of each series, coloured by `thresholds`."""
    return core.Stat(
        title=title,
        dataSource=_datasource_of(targets),
        targets=list(targets),
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="none",
        colorMode="background",
        thresholds=thresholds or [{"color": "green", "value": None}],
        mappings=mappings or [],
        gridPos=_sized(width),
    )


def up_down(title: str, targets: Sequence[core.Target], width: int = 4) -> core.Stat:
    """UP (1) in green or DOWN (0) in red, per series."""
    return stat(title, targets, width=width, thresholds=_RED_BELOW_ONE, mappings=_UP_DOWN)


def alarm_count(title: str, targets: Sequence[core.Target], width: int = 4) -> core.Stat:
    """A count that should be zero: red from one."""
    return stat(title, targets, width=width, thresholds=_RED_FROM_ONE)


def table(
    title: str, targets: Sequence[core.Target], width: int = GRID_WIDTH, height: int = _HEIGHT
) -> core.Table:
    """Instant query results as rows."""
    return core.Table(
        title=title,
        dataSource=_datasource_of(targets),
        targets=list(targets),
        gridPos=_sized(width, height),
    )


def logs(title: str, targets: Sequence[core.Target], width: int = GRID_WIDTH) -> core.Logs:
    """Log lines, newest first."""
    return core.Logs(
        title=title,
        dataSource=_datasource_of(targets),
        targets=list(targets),
        showTime=True,
        showLabels=True,
        wrapLogMessages=True,
        gridPos=_sized(width, 2 * _HEIGHT),
    )


def row(title: str) -> core.RowPanel:
    """A full-width heading that starts a new line of panels."""
    return core.RowPanel(title=title, gridPos=_sized(GRID_WIDTH, _ROW_HEIGHT))


def note(title: str, text: str, width: int = 8) -> core.Text:
    """Plain text, for a service that exposes nothing to graph."""
    return core.Text(title=title, content=text, mode="markdown", gridPos=_sized(width, 3))


def _datasource_of(targets: Sequence[core.Target]) -> dict[str, str]:
    sources = {json.dumps(t.datasource, sort_keys=True) for t in targets}
    if len(sources) != 1:
        raise ValueError(f"a panel reads one datasource, not {sorted(sources)}")
    return json.loads(sources.pop())


def dashboard(name: str, title: str, stack: str, panels: Sequence[core.Panel]) -> dict[str, Any]:
    """The Grafana dashboard document `name` (also its uid), panels laid out left to right and
    numbered in list order, their queries lettered A, B, ...; a row always starts a new line."""
    placed, x, y, line_height = [], 0, 0, 0
    for number, panel in enumerate(panels, start=1):
        width, height = panel.gridPos.w, panel.gridPos.h
        if isinstance(panel, core.RowPanel) or x + width > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        placed.append(
            attr.evolve(
                panel,
                id=number,
                gridPos=core.GridPos(h=height, w=width, x=x, y=y),
                # Grafana keeps one result per refId: queries of a panel need their own.
                targets=[
                    attr.evolve(target, refId=chr(ord("A") + index))
                    for index, target in enumerate(panel.targets)
                ],
            )
        )
        x, line_height = x + width, max(line_height, height)
        if isinstance(panel, core.RowPanel):
            x, y, line_height = 0, y + height, 0
    board = core.Dashboard(
        title=f"NAP-DMS {stack}: {title}",
        uid=f"napdms-{name}",
        tags=["napdms", stack],
        panels=placed,
        refresh="30s",
        time=core.Time("now-6h", "now"),
        timezone="browser",
        editable=False,
        schemaVersion=39,
    )
    return json.loads(json.dumps(board.to_json_data(), default=lambda part: part.to_json_data()))


def rendered(document: Mapping[str, Any]) -> str:
    """A document as file content: sorted keys, so equal dashboards are equal files."""
    return json.dumps(document, sort_keys=True, indent=2) + "\n"

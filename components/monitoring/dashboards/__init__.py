"""Grafana dashboards generated from the catalog, with grafanalib.

`overview` shows every enabled service; each monitor kind (`MonitorKind`) has a module of its own,
`<kind>.py`, with `TITLE` and `panels(context) -> list[Panel]`, called by the kind's name
(borgmatic's hooks style). A kind gets its dashboard when a service of the stack declares it; a
kind without a module gets none.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import get_args

from components.model.spec import MonitorKind
from components.monitoring.dashboards.board import StackView, dashboard, rendered

KINDS: tuple[MonitorKind, ...] = get_args(MonitorKind)
"""Every monitor kind, in the catalog model's order."""
OVERVIEW = "overview"


def kind_module(kind: str) -> ModuleType | None:
    """The module that draws `kind`'s dashboard, or None if it has none."""
    name = f"{__name__}.{kind}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as missing:
        if missing.name != name:
            raise
        return None


def present_kinds(context: StackView) -> list[MonitorKind]:
    """The monitor kinds some enabled service declares, in `KINDS` order."""
    declared = {kind for spec in context.services.values() for kind in spec.monitors}
    return [kind for kind in KINDS if kind in declared]


def dashboards(context: StackView) -> dict[str, str]:
    """Dashboard file name -> JSON: the overview and one per present kind that has a module."""
    files = {}
    for name in [OVERVIEW, *present_kinds(context)]:
        module = kind_module(name)
        if module is None:
            continue
        document = dashboard(name, module.TITLE, context.stack, module.panels(context))
        files[f"{name}.json"] = rendered(document)
    return files

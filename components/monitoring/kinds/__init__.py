"""Alerts of a kind of service beyond every service's own, one module per kind (borgmatic's
hooks): each has `alerts(context, services) -> list[Alert]`, where `services` are the enabled
services that list the kind in their `monitors`. `alerts_of` calls them by the kind's name."""

from __future__ import annotations

import importlib

from components.model.context import CatalogContext
from components.monitoring.alert import Alert


def alerts_of(kind: str, context: CatalogContext, services: list[str]) -> list[Alert]:
    """The alerts of `kind` for `services`."""
    module = importlib.import_module(f"components.monitoring.kinds.{kind}")
    return module.alerts(context, services)

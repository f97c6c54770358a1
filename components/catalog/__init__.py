"""The service catalog: one module per service, each exposing `SPEC` (a `ServiceSpec`).

A module may also define `files(context) -> dict[str, str]`, the config files it needs
generated from the settings (file name -> content, uploaded into its `config_dir`). Adding a
service is adding one module here and its name to `_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from components.model.spec import ServiceSpec

if TYPE_CHECKING:
    from components.model.context import CatalogContext

_MODULES = (
    "postgres",
    "redis",
    "mongodb",
    "napdms_backend",
    "napdms_frontend",
    "gitea",
    "n8n",
    "rocketchat",
    "proxy",
    "prometheus",
    "alertmanager",
    "grafana",
    "cadvisor",
    "node_exporter",
    "blackbox",
    "loki",
    "log_shipper",
    "watcher_alertmanager",
    "watcher",
    "backup_agent",
)


def _load() -> dict[str, ModuleType]:
    modules = {}
    for module_name in _MODULES:
        module = importlib.import_module(f"components.catalog.{module_name}")
        spec: ServiceSpec = module.SPEC
        if spec.name in modules:
            raise ValueError(f"catalog: two modules declare service {spec.name!r}")
        modules[spec.name] = module
    return modules


_BY_NAME = _load()

CATALOG: Mapping[str, ServiceSpec] = {name: m.SPEC for name, m in _BY_NAME.items()}
"""Every service the platform knows, by name, in catalog order."""


def generated_files(service: str, context: CatalogContext) -> dict[str, str]:
    """Config files `service` needs, rendered for this stack (empty if it needs none)."""
    render = getattr(_BY_NAME[service], "files", None)
    return render(context) if render else {}

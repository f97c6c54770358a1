"""The edge of the program: the running stack's config, as the Pulumi engine hands it over.

Read once by `__main__.py`; everything below takes the validated `Stack`, never `pulumi.Config`.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi


def read_project_config(project: str) -> tuple[dict[str, Any], set[str]]:
    """All config values of `project` (key without namespace -> decoded value) and the secret keys.

    Pulumi hands structured values over as JSON text; scalars stay as typed by the operator.
    """
    prefix = f"{project}:"
    raw: dict[str, Any] = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    values = {
        key[len(prefix) :]: _decode(value) for key, value in raw.items() if key.startswith(prefix)
    }
    marked = set(pulumi.runtime.get_config_secret_keys_env())
    secret_keys = {
        key[len(prefix) :]
        for key in raw
        if key.startswith(prefix) and (key in marked or pulumi.runtime.is_config_secret(key))
    }
    return values, secret_keys


def _decode(value: Any) -> Any:
    # Only objects and lists arrive as JSON text; a top-level scalar is always the operator's
    # text ("123" or "NaN" stay text, as `pulumi config set` stored them).
    if not isinstance(value, str) or not value.lstrip().startswith(("{", "[")):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):  # the settings then report "not a mapping" in one line
        return value

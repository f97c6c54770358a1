"""The edge: turn raw Pulumi config into `PlatformSettings`, or into one precise line per mistake.

Every error line reads `<stack>: <key.path>: <what is wrong>; <how to fix it>`, so an operator
at night sees which stack file, which key and what to type, and nothing has been registered.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from components.model.operator_keys import BY_CONFIG_KEY
from components.settings.model import _PROBLEMS_MARK, PlatformSettings

PROJECT_DIR = Path(__file__).resolve().parents[2]


class SettingsError(Exception):
    """A stack file that cannot be deployed; `lines` holds one complete message per mistake."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def read_stack_file(stack: str, project_dir: Path = PROJECT_DIR) -> tuple[dict[str, Any], set[str]]:
    """The `<project>:*` values of `Pulumi.<stack>.yaml` (keys without the namespace) and the keys
    stored encrypted (`{secure: ...}`), the two things `load_settings` takes.

    The engine normally hands these over (`components.config.read_project_config`); without it
    the stack file is the source. Encrypted values stay undecrypted: no image depends on a secret.
    """
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"]
    document = yaml.safe_load((project_dir / f"Pulumi.{stack}.yaml").read_text()) or {}
    prefix = f"{project}:"
    values = {
        key[len(prefix) :]: value
        for key, value in (document.get("config") or {}).items()
        if key.startswith(prefix)
    }
    secret_keys = {
        key for key, value in values.items() if isinstance(value, dict) and set(value) == {"secure"}
    }
    return values, secret_keys


def load_settings(stack: str, values: Mapping[str, Any], secret_keys: set[str]) -> PlatformSettings:
    """Validate a stack's config values; raise `SettingsError` naming stack, key and fix."""
    lines = [
        f"{stack}: {key}: stored in plain text but holds {operator_key.holds}; "
        f"set it with `pulumi config set --secret {key} --stack {stack}`"
        for key, operator_key in BY_CONFIG_KEY.items()
        if key in values and key not in secret_keys
    ]
    settings_input = {key: value for key, value in values.items() if key not in BY_CONFIG_KEY}
    try:
        settings = PlatformSettings.model_validate(settings_input)
    except ValidationError as error:
        lines += [line for detail in error.errors() for line in _explain(stack, detail)]
        settings = None
    if lines:
        raise SettingsError(lines)
    return settings


def _explain(stack: str, detail: Mapping[str, Any]) -> list[str]:
    loc = [str(part) for part in detail["loc"]]
    kind, message, value = detail["type"], detail["msg"], detail.get("input")
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        if message.startswith(_PROBLEMS_MARK):
            return [f"{stack}: {line}" for line in message[len(_PROBLEMS_MARK) :].splitlines()]
    is_key = loc and loc[-1] == "[key]"
    path = ".".join(part for part in loc if part != "[key]") or "(top level)"
    return [
        f"{stack}: {path}: {_reason(kind, message, value, detail.get('ctx') or {}, loc, is_key)}"
    ]


def _reason(
    kind: str, message: str, value: Any, ctx: Mapping[str, Any], loc: list[str], is_key: bool
) -> str:
    shown = (
        json.dumps(value)
        if isinstance(value, (str, int, float, bool)) or value is None
        else repr(value)
    )
    if kind == "extra_forbidden":
        return _unknown_key(loc[-1], _field_names(loc[:-1]))
    if kind == "literal_error" and is_key:
        choices = _choices(ctx)
        return _unknown_key(str(value), choices, what="service")
    if kind == "literal_error":
        return f"{shown} is not allowed; use one of: {', '.join(_choices(ctx))}"
    if kind == "missing":
        return "required key is missing; add it to this stack's Pulumi.<stack>.yaml"
    if kind == "greater_than_equal":
        return f"{shown} is too small; use {ctx['ge']} or more"
    if kind == "less_than_equal":
        return f"{shown} is too large; use {ctx['le']} or less"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} entry; add one"
    if kind == "string_pattern_mismatch":
        return f"{shown} does not have the expected form ({ctx['pattern']})"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{shown} is not a whole number; use e.g. 2"
    if kind in ("bool_parsing", "bool_type"):
        return f"{shown} is not true or false"
    if kind in ("dict_type", "model_type"):
        return f"{shown} is not a mapping; write the keys below it, indented"
    if kind == "list_type":
        return f"{shown} is not a list; write it as [a, b] or one '- item' per line"
    if kind == "string_type":
        return f"{shown} is not text; quote it"
    if kind == "value_error":
        return message
    return f"{shown}: {message}"


def _choices(ctx: Mapping[str, Any]) -> list[str]:
    return [
        choice.strip().strip("'")
        for choice in str(ctx.get("expected", "")).replace(" or ", ",").split(",")
        if choice.strip()
    ]


def _unknown_key(key: str, valid: list[str], what: str = "key") -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f'did you mean "{close[0]}"?' if close else f"use one of: {', '.join(valid)}"
    return f"unknown {what}; {hint}"


def _field_names(loc: list[str]) -> list[str]:
    """Field names of the model found at `loc` inside `PlatformSettings` (for typo hints)."""
    annotation: Any = PlatformSettings
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    model = _as_model(annotation)
    return list(model.model_fields) if model else []


def _step(annotation: Any, part: str) -> Any | None:
    model = _as_model(annotation)
    if model is not None:
        field = model.model_fields.get(part)
        return field.annotation if field else None
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin is list:
        return typing.get_args(annotation)[0]
    return None


def _as_model(annotation: Any) -> type[BaseModel] | None:
    is_optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    for candidate in (annotation, *(typing.get_args(annotation) if is_optional else ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None

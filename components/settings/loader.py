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

from pydantic import BaseModel, ValidationError

from components.model.addresses import printable
from components.model.operator_keys import BY_CONFIG_KEY
from components.settings.model import _PROBLEMS_MARK, PlatformSettings
from components.settings.stack_file import StackFileError, read_yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]


class SettingsError(Exception):
    """A stack file that cannot be deployed; `lines` holds one complete message per mistake."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def read_stack_file(stack: str, project_dir: Path | None = None) -> tuple[dict[str, Any], set[str]]:
    """The `<project>:*` values of `Pulumi.<stack>.yaml` (keys without the namespace) and the keys
    stored encrypted (`{secure: ...}`, also deeper inside a value), the two things `load_settings`
    takes.

    The engine normally hands these over (`components.config.read_project_config`); without it
    the stack file is the source. Encrypted values stay undecrypted: no image depends on a secret.
    Raises `SettingsError` for a file that is not plain YAML data (`stack_file`).
    """
    project_dir = PROJECT_DIR if project_dir is None else project_dir
    try:
        project_file = read_yaml(project_dir / "Pulumi.yaml")
        project = project_file.get("name") if isinstance(project_file, dict) else None
        if not isinstance(project, str) or not project:
            raise StackFileError("Pulumi.yaml", "has no project name; add name: <project>")
        prefix = f"{project}:"

        def key_path(keys: list[str]) -> str:
            if len(keys) > 1 and keys[0] == "config" and keys[1].startswith(prefix):
                keys = [keys[1][len(prefix) :], *keys[2:]]
            return ".".join(keys)

        document = read_yaml(project_dir / f"Pulumi.{stack}.yaml", key_path)
    except StackFileError as error:
        raise SettingsError([f"{stack}: {error}"]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SettingsError(
            [
                f"{stack}: Pulumi.{stack}.yaml: holds {_kind(document)}, not a mapping; "
                "start the file with config: and the settings below it, indented"
            ]
        )
    config = document.get("config")
    if config is not None and not isinstance(config, dict):
        raise SettingsError(
            [
                f"{stack}: config: {_kind(config)}, not a mapping; write each "
                f"{project}:<key>: <value> below config:, indented"
            ]
        )
    values = {
        key[len(prefix) :]: value for key, value in (config or {}).items() if key.startswith(prefix)
    }
    secret_keys = {key for key, value in values.items() if _holds_encrypted(value)}
    return values, secret_keys


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a single value" if value is not None else "nothing"


def _holds_encrypted(value: Any) -> bool:
    """Whether `value` is, or contains, a `{secure: <ciphertext>}` value."""
    if isinstance(value, dict):
        return set(value) == {"secure"} or any(_holds_encrypted(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_encrypted(v) for v in value)
    return False


def load_settings(stack: str, values: Mapping[str, Any], secret_keys: set[str]) -> PlatformSettings:
    """Validate a stack's config values; raise `SettingsError` naming stack, key and fix.

    No line ever shows a value stored encrypted: an operator key's value is checked for its form
    only, and any other key stored encrypted is refused before the settings are validated, because
    the program would write it in plain text (names, labels, env, generated files)."""
    lines = [
        f"{stack}: {key}: stored in plain text but holds {operator_key.holds}; "
        f"set it with `pulumi config set --secret {key} --stack {stack}`"
        for key, operator_key in BY_CONFIG_KEY.items()
        if key in values and key not in secret_keys
    ]
    lines += [
        f"{stack}: {key}: {problem} (the value is not shown); set it again with "
        f"`pulumi config set --secret {key} --stack {stack}`"
        for key, operator_key in BY_CONFIG_KEY.items()
        if key in values and key in secret_keys
        for problem in [operator_key.problem(values[key])]
        if problem
    ]
    encrypted = sorted(key for key in secret_keys if key in values and key not in BY_CONFIG_KEY)
    lines += [
        f"{stack}: {key}: stored encrypted, but the program writes this setting in plain text "
        "(resource names, labels, environment, generated files), where it would not stay secret; "
        f"write it in Pulumi.{stack}.yaml without --secret"
        for key in encrypted
    ]
    if encrypted:
        # Validating the rest could quote the encrypted value back (a cross-field line): stop here.
        raise SettingsError(lines)
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
    path = printable(".".join(part for part in loc if part != "[key]") or "(top level)")
    reason = _reason(kind, message, value, detail.get("ctx") or {}, loc, is_key)
    return [f"{stack}: {path}: {printable(reason)}"]


def _reason(
    kind: str, message: str, value: Any, ctx: Mapping[str, Any], loc: list[str], is_key: bool
) -> str:
    shown = (
        json.dumps(value)
        if isinstance(value, (str, int, float, bool)) or value is None
        else repr(value)
    )
    if len(shown) > 80:
        shown = shown[:72] + "...(cut)"
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
        return f"{shown} does not have the expected form; write it to match {ctx['pattern']}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{shown} is not a whole number; use e.g. 2"
    if kind in ("bool_parsing", "bool_type"):
        return f"{shown} is not true or false; write true or false, without quotes"
    if kind in ("dict_type", "model_type"):
        return f"{shown} is not a mapping; write the keys below it, indented"
    if kind == "list_type":
        return f"{shown} is not a list; write it as [a, b] or one '- item' per line"
    if kind == "string_type":
        return f"{shown} is not text; quote it"
    if kind in ("too_long", "string_too_long"):
        return f"is too long; use at most {ctx.get('max_length')} entries or characters"
    if kind == "value_error":
        return message
    return f"{shown}: {message}; see `napdms-ops schema` for what this key takes"


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

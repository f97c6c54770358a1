"""Read `Pulumi.yaml` and `Pulumi.<stack>.yaml` strictly: plain YAML data or one line per mistake.

PyYAML's own loaders accept what a stack file must never hold: a key written twice (the last one
silently wins), anchors and aliases (a few hundred bytes that expand into gigabytes, "billion
laughs"), and tags that build Python objects. This reader walks PyYAML's event stream itself
(no node graph, no constructor) and builds only str, int, float, bool, None, dict and list, the
way the Pulumi CLI reads the same file (YAML 1.2 core schema: `no` and `on` stay text). It refuses
anchors and aliases outright, so nothing expands; with the size, depth and node limits below its
time and memory are linear in the file's size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml import events

STACKS = ("dev", "staging", "prod")
"""The stacks this project has a `Pulumi.<stack>.yaml` for."""

MAX_BYTES = 256 * 1024
"""Largest stack file read (the real ones are a few KiB)."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and lists."""
MAX_NODES = 20_000
"""Most values in one file."""

_STR, _MAP, _SEQ = (f"tag:yaml.org,2002:{name}" for name in ("str", "map", "seq"))
# YAML 1.2 core schema, as the Pulumi CLI (Go, yaml.v3) resolves plain scalars.
_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT = {
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), float("inf")),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), float("-inf")),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), float("nan")),
}


class StackFileError(ValueError):
    """The file cannot be read as plain YAML data; `where` is its key path or `<file>:<line>`."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def read_yaml(path: Path, key_path: Callable[[list[str]], str] | None = None) -> Any:
    """The one document in `path` as plain data. Raises `StackFileError`; `key_path` renders the
    keys leading to a bad value (default: joined with dots)."""
    name = path.name
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise StackFileError(
            name, f"cannot read it ({error.strerror}); check the stack name and the file"
        ) from None
    if len(data) > MAX_BYTES:
        raise StackFileError(
            name, f"larger than {MAX_BYTES // 1024} KiB; a stack file is a few KiB of settings"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise StackFileError(
            f"{name}:{line}",
            f"byte 0x{data[error.start]:02x} is not UTF-8; save the file as UTF-8",
        ) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if "\t" in line:
            raise StackFileError(
                f"{name}:{number}", "holds a tab character; indent and separate with spaces"
            )
    return _Reader(name, text, key_path or ".".join).document()


class _Reader:
    """Builds plain data from PyYAML's events (parsing only: no composer, no constructor)."""

    def __init__(self, name: str, text: str, key_path: Callable[[list[str]], str]):
        self._name = name
        self._text = text
        self._key_path = key_path
        self._nodes = 0

    def document(self) -> Any:
        try:
            # The loader is used as a parser only: events, never its composer or constructor.
            self._parser = yaml.SafeLoader(self._text)
            self._expect(events.StreamStartEvent)
            if self._parser.check_event(events.StreamEndEvent):
                return None
            self._expect(events.DocumentStartEvent)
            value = self._value([])
            self._expect(events.DocumentEndEvent)
            if not self._parser.check_event(events.StreamEndEvent):
                event = self._parser.peek_event()
                raise StackFileError(
                    self._at(event), "a second YAML document (---); keep one document per file"
                )
            return value
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            where = f"{self._name}:{mark.line + 1}" if mark else self._name
            problem = " ".join(str(error.problem or error.context).split())
            raise StackFileError(where, f"{problem}; fix the YAML syntax there") from None
        except yaml.reader.ReaderError as error:
            line = self._text[: error.position].count("\n") + 1
            raise StackFileError(
                f"{self._name}:{line}",
                f"character #x{error.character:04x} is not allowed in YAML; remove it",
            ) from None
        except yaml.YAMLError as error:
            problem = " ".join(str(error).split())
            raise StackFileError(self._name, f"{problem}; fix the YAML syntax") from None

    def _expect(self, kind: type) -> events.Event:
        event = self._parser.get_event()
        if not isinstance(event, kind):
            raise StackFileError(self._at(event), "unexpected YAML structure; fix the file")
        return event

    def _at(self, event: events.Event) -> str:
        return f"{self._name}:{event.start_mark.line + 1}"

    def _where(self, keys: list[str], event: events.Event) -> str:
        return self._key_path(keys) if keys else self._at(event)

    def _value(self, keys: list[str]) -> Any:
        event = self._parser.get_event()
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise StackFileError(
                self._where(keys, event), f"more than {MAX_NODES} values; a stack file is small"
            )
        if isinstance(event, events.AliasEvent) or getattr(event, "anchor", None):
            mark = "*" if isinstance(event, events.AliasEvent) else "&"
            raise StackFileError(
                self._where(keys, event),
                f"YAML anchor or alias ({mark}{event.anchor}) is not allowed, since it can expand "
                "a small file into a huge one; write the value out",
            )
        tag = getattr(event, "tag", None)
        if tag not in (None, "!", _STR, _MAP, _SEQ):
            raise StackFileError(
                self._where(keys, event),
                f"YAML tag {_short(tag)} is not allowed; remove it and write a plain value",
            )
        if isinstance(event, events.ScalarEvent):
            if tag == _STR or tag == "!" or event.style is not None:
                return event.value
            return _plain_scalar(event.value)
        if len(keys) >= MAX_DEPTH:
            raise StackFileError(
                self._where(keys, event), f"nested deeper than {MAX_DEPTH} levels; flatten it"
            )
        if isinstance(event, events.SequenceStartEvent):
            if tag == _MAP:
                raise StackFileError(self._where(keys, event), "a list tagged !!map; untag it")
            items = []
            while not self._parser.check_event(events.SequenceEndEvent):
                items.append(self._value([*keys, str(len(items))]))
            self._parser.get_event()
            return items
        if isinstance(event, events.MappingStartEvent):
            if tag == _SEQ:
                raise StackFileError(self._where(keys, event), "a mapping tagged !!seq; untag it")
            mapping: dict[str, Any] = {}
            lines: dict[str, int] = {}
            while not self._parser.check_event(events.MappingEndEvent):
                key_event = self._parser.peek_event()
                if not isinstance(key_event, (events.ScalarEvent, events.AliasEvent)):
                    raise StackFileError(
                        self._where(keys, key_event),
                        "a key that is a list or mapping; write plain keys",
                    )
                self._value(keys)  # refuses an anchored, aliased or tagged key
                key = key_event.value
                line = key_event.start_mark.line + 1
                if key in mapping:
                    raise StackFileError(
                        self._key_path([*keys, key]),
                        f"set twice (lines {lines[key]} and {line}); keep one",
                    )
                lines[key] = line
                mapping[key] = self._value([*keys, key])
            self._parser.get_event()
            return mapping
        raise StackFileError(self._at(event), "unexpected YAML structure; fix the file")


def _plain_scalar(text: str) -> Any:
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    try:
        if _INT.fullmatch(text):
            return int(text)
        if _OCT.fullmatch(text):
            return int(text[2:], 8)
        if _HEX.fullmatch(text):
            return int(text[2:], 16)
    except ValueError:  # more digits than Python converts: no setting is such a number
        return text
    if _FLOAT.fullmatch(text):
        return float(text)
    if text in _SPECIAL_FLOAT:
        return _SPECIAL_FLOAT[text]
    return text


def _short(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return f"!!{tag[len(prefix) :]}" if tag.startswith(prefix) else tag

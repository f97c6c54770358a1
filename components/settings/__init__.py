"""Typed stack settings: parsed once from the stack's config, validated and resolved into a
`Stack` before any resource exists."""

from components.settings.loader import SettingsError, load_settings, read_stack_file
from components.settings.model import PlatformSettings
from components.settings.stack import Stack, load_stack, read_stack
from components.settings.stack_file import STACKS

__all__ = [
    "STACKS",
    "PlatformSettings",
    "SettingsError",
    "Stack",
    "load_settings",
    "load_stack",
    "read_stack",
    "read_stack_file",
]

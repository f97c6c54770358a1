"""Typed stack settings: parsed once from Pulumi config, validated before any resource exists."""

from components.settings.loader import SECRET_KEYS, SettingsError, load_settings, read_project_config, read_stack_file
from components.settings.model import PlatformSettings

__all__ = ["PlatformSettings", "SECRET_KEYS", "SettingsError", "load_settings", "read_project_config", "read_stack_file"]

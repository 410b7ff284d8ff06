"""Config files: a YAML mapping of flag names to values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swiftkit.core.errors import ConfigError


def load_yaml_config(path: str) -> dict[str, Any]:
    """A YAML file of flag values -> a flat dict; errors name the file."""
    import yaml  # defers yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of flag names to values")
    return data

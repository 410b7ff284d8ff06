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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {' '.join(str(exc).split())}") from exc
    except RecursionError as exc:  # PyYAML's composer recurses once per nesting level
        raise ConfigError(f"config file {path!r} is nested too deeply to read; flag values are flat "
                          "(a value is at most a list or a mapping)") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of flag names to values")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"config file {path!r}: key {key!r} is not a flag name (keys are names such as "
                              "learning_rate)")
    return data

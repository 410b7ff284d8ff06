"""Where shipped data lives: registry YAML folders, in a wheel or in a source checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent  # the swiftkit package


def data_dir(name: str) -> Path:
    """The shipped folder ``name`` (``model_registry`` or ``dataset_registry``)."""
    for candidate in (_PKG / "_registry_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"swiftkit's {name}/ folder is missing from the installation ({_PKG})")

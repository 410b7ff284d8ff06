"""Fixtures for the model tests: the built-in model registry, filled by the built-in plugin."""

from __future__ import annotations

import pytest

from swiftkit.core.registry import Registry
from swiftkit.models import plugin


@pytest.fixture(scope="session")
def model_registry() -> Registry:
    """Only the built-in model cards, independent of other plugins being importable."""
    registry = Registry("model")
    plugin.swiftkit_register_models(registry)
    return registry

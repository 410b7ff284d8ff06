"""Fixtures for the template tests: the built-in template registry and tokenizers per style."""

from __future__ import annotations

import pytest

from swiftkit.core.registry import Registry
from swiftkit.templates import plugin


@pytest.fixture(scope="session")
def template_registry() -> Registry:
    """Only the built-in templates, filled by the built-in plugin."""
    registry = Registry("template")
    plugin.swiftkit_register_templates(registry)
    return registry

"""The installed transformers, trl and peft are inside the ranges pyproject.toml declares (capped at
the newest minor the suite runs on)."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"
CAPPED = ("transformers", "trl", "peft")


def _requirements() -> dict[str, Requirement]:
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    return {r.name: r for r in map(Requirement, deps)}


@pytest.mark.parametrize("name", CAPPED)
def test_capped_dependency_has_an_upper_bound_and_the_installed_version_is_inside(name):
    req = _requirements()[name]
    assert any(spec.operator == "<" for spec in req.specifier), f"{name}: no upper bound in pyproject.toml"
    assert req.specifier.contains(version(name), prereleases=True), (
        f"{name} {version(name)} is installed, outside {req.specifier} (pyproject.toml)")

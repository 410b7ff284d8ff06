"""The recipe protocol: what the command table (and so the CLI and the Python API) calls.

Every command is one recipe class, and recipes are siblings: none inherits another's
implementation. Shared steps are plain functions (:mod:`swiftkit.recipes.steps`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Recipe(Protocol):
    """``Recipe(config, host)``, then ``setup()`` (build every part, checking every input before
    anything is written) and ``run()`` (the work; returns a JSON-serialisable result dict, whose
    ``exit_code``, when present, is the command's exit status)."""

    def __init__(self, config, host) -> None: ...

    def setup(self) -> None: ...

    def run(self) -> dict: ...

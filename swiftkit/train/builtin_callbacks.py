"""Built-in trainer callbacks selected by ``--callbacks`` (the ``swiftkit_get_callback`` hook).

Each entry is ``name -> build(config) -> transformers.TrainerCallback``; transformers is imported inside.
"""

from __future__ import annotations

BUILTIN_CALLBACKS: dict = {}

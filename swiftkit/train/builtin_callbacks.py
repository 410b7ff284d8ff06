"""Built-in trainer callbacks selected by ``--callbacks`` (the ``swiftkit_get_callback`` hook).

Each entry is ``name -> build(config) -> transformers.TrainerCallback``; transformers is imported inside.
"""

from __future__ import annotations

from swiftkit.train.lisa import build_lisa

BUILTIN_CALLBACKS: dict = {
    "lisa": build_lisa,
}

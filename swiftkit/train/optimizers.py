"""Built-in optimizers selected by ``--optimizer`` (the ``swiftkit_get_optimizer`` hook).

Each entry is ``name -> build(model, config) -> torch.optim.Optimizer``; torch is imported inside.
"""

from __future__ import annotations

BUILTIN_OPTIMIZERS: dict = {}

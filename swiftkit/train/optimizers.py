"""Built-in optimizers selected by ``--optimizer`` (the ``swiftkit_get_optimizer`` hook), and the helpers
they share: which parameters take weight decay, and the optimizer class ``--optim`` names.

Each entry is ``name -> build(model, config) -> torch.optim.Optimizer``; torch and transformers are
imported inside. The trainer's learning-rate schedule drives whatever is returned: a schedule scales
every param group's starting ``lr`` by the same factor, so the ratios between groups (LoRA+) hold.

- ``lorap``: LoRA+ (:mod:`swiftkit.train.optim_lorap`), also selected by ``--lorap_lr_ratio``.
- ``galore``: GaLore (:mod:`swiftkit.train.optim_galore`), also selected by ``--optim galore_adamw``,
  ``galore_adafactor`` or ``galore_adamw_8bit``.
"""

from __future__ import annotations

from swiftkit.train.optim_galore import build_galore
from swiftkit.train.optim_lorap import build_lorap
from swiftkit.train.optim_names import optimizer_name

__all__ = ["BUILTIN_OPTIMIZERS", "optimizer_name"]

BUILTIN_OPTIMIZERS: dict = {"lorap": build_lorap, "galore": build_galore}

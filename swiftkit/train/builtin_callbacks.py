"""Built-in trainer callbacks selected by ``--callbacks`` (the ``swiftkit_get_callback`` hook).

Each entry is ``name -> build(config) -> transformers.TrainerCallback``; transformers is imported inside.
Flags switch some on as if named (``--early_stop_interval``, ``--neftune_noise_alpha``,
``--load_best_model_at_end``: see ``recipes.parts.callback_names``); their builders and flag checks are in
:mod:`swiftkit.train.callback_setup`.
"""

from __future__ import annotations

from swiftkit.train.callback_setup import (
    build_early_stop,
    build_graceful_exit,
    build_neftune,
    build_perf_log,
    build_save_best,
)
from swiftkit.train.lisa import build_lisa
from swiftkit.train.tuners import TUNER_CALLBACKS

BUILTIN_CALLBACKS: dict = {
    "early_stop": build_early_stop,
    "neftune": build_neftune,
    "graceful_exit": build_graceful_exit,
    "perf_log": build_perf_log,
    "save_best": build_save_best,
    "lisa": build_lisa,
    **TUNER_CALLBACKS,  # added by the recipe for the tuners that need them (adalora, adapter_conversion)
}

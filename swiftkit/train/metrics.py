"""Built-in evaluation metrics selected by ``--metric`` (the ``swiftkit_get_metrics`` hook).

Each entry is ``name -> build(config) -> compute_metrics(EvalPrediction) -> dict``.
"""

from __future__ import annotations

BUILTIN_METRICS: dict = {}

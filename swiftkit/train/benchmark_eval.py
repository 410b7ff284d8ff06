"""``--eval_benchmarks`` in training: benchmark scores merged into every evaluation's metrics.

:func:`attach_benchmark_eval` wraps one trainer's ``evaluation_loop`` (any ``transformers.Trainer``,
TRL's included) so that after the eval loss is computed, ``score(model)`` runs on the model being
trained (the same object, in eval mode; no second copy) and its values join the metrics as
``eval_<benchmark>_<metric>``. They are then logged with the eval loss (logging.jsonl, TensorBoard and
every tracker, the plots) and may be ``--metric_for_best_model``.
"""

from __future__ import annotations

import sys
import time


def attach_benchmark_eval(trainer, score) -> None:
    """Make every evaluation of ``trainer`` also run ``score(model) -> {name: value}``."""
    loop = trainer.evaluation_loop

    def evaluation_loop(dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        output = loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if description == "Evaluation":
            start = time.time()
            scores = score(trainer.model)
            output.metrics.update({f"{metric_key_prefix}_{key}": value for key, value in scores.items()})
            shown = ", ".join(f"{k}={v:.4g}" for k, v in scores.items())
            print(f"[swiftkit] step {trainer.state.global_step} benchmarks: {shown} ({time.time() - start:.1f} s)",
                  file=sys.stderr)
        return output

    trainer.evaluation_loop = evaluation_loop

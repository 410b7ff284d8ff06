"""``early_stop`` (``--early_stop_interval N``): stop training once the compared evaluation metric has
not improved for N evaluations in a row.

The metric is ``--metric_for_best_model`` (the eval loss by default), better when larger if
``--greater_is_better`` (by default: larger is better for everything but a loss). "Improved" means
strictly better than every earlier evaluation of the run. The count is read from the run's own log
history (which a resumed run restores from its checkpoint), so a resumed run stops where one that
never stopped would. Training ends after the step of that evaluation, and like a run that reaches
--max_steps it ends with a checkpoint of that step (unless --save_strategy best: then the last
checkpoint is the best one already).
"""

from __future__ import annotations

import sys

from transformers import TrainerCallback

from swiftkit.train.errors import TrainError


def evaluations_since_best(values: list[float], greater_is_better: bool) -> int:
    """How many evaluations came after the first one holding the best value (0: the last is the best)."""
    best_at, best = 0, values[0]
    for i, value in enumerate(values[1:], start=1):
        if (value > best) if greater_is_better else (value < best):
            best_at, best = i, value
    return len(values) - 1 - best_at


class EarlyStop(TrainerCallback):
    """Sets ``should_training_stop`` at the evaluation that makes ``patience`` evaluations without
    an improvement of ``key`` (an eval-log key such as ``eval_loss``)."""

    def __init__(self, patience: int, key: str = "eval_loss", greater_is_better: bool = False):
        self.patience = patience
        self.key = key
        self.greater_is_better = greater_is_better

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.key not in (metrics or {}):
            logged = ", ".join(sorted(k for k in metrics or {} if k.startswith("eval_"))) or "nothing"
            raise TrainError(f"early_stop compares {self.key}, which the evaluation at step {state.global_step} did "
                             f"not log (it logged {logged}): set --metric_for_best_model to one of those")
        values = [h[self.key] for h in state.log_history if self.key in h]
        since = evaluations_since_best(values, self.greater_is_better)
        if since >= self.patience:
            control.should_training_stop = True
            if args.save_strategy != "best":  # the stopped run's final state, as at --max_steps
                control.should_save = True
            print(f"[swiftkit] early_stop: {self.key} has not improved for {since} evaluations (best "
                  f"{max(values) if self.greater_is_better else min(values):.6g}); training stops at step "
                  f"{state.global_step}", file=sys.stderr)

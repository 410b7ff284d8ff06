"""``save_best`` (``--load_best_model_at_end``): keep the checkpoint with the best evaluation metric and
end the run holding its weights.

transformers does the work (``load_best_model_at_end``); swiftkit makes the flags agree
(:func:`swiftkit.train.callback_setup.training_overrides`): by default checkpoints are saved only at
an evaluation that improves ``--metric_for_best_model`` (``--save_strategy best``), so the run's last
checkpoint, the one ``--adapters RUN`` and ``swiftkit infer/export`` pick, is the best one, and the
model left in memory when training ends (transformers reloads the best checkpoint) equals it. With an
explicit ``--save_strategy steps|epoch`` saves follow the evaluations and later checkpoints are kept
too; the best is reloaded at the end all the same, and train_result.json names it
(``best_checkpoint``). This callback says which checkpoint that is when training ends.
"""

from __future__ import annotations

import sys
from pathlib import Path

from transformers import TrainerCallback


class SaveBest(TrainerCallback):
    """Reports the best checkpoint (``key``: the eval-log key compared) when training ends."""

    def __init__(self, key: str = "eval_loss"):
        self.key = key

    def on_train_end(self, args, state, control, **kwargs):
        best = state.best_model_checkpoint
        if best is None:
            print(f"[swiftkit] save_best: no checkpoint was saved at an evaluation of {self.key}; the model is "
                  "the last step's", file=sys.stderr)
            return
        print(f"[swiftkit] save_best: the best checkpoint is {Path(best).name} ({self.key} {state.best_metric:.6g}); "
              "the model ends with its weights", file=sys.stderr)

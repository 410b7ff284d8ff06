"""--save_strategy no: no checkpoints while training, and the trained model still written once at the end.

transformers saves nothing at all under ``save_strategy="no"``; :class:`FinalSave` asks for one save
after the last optimizer step, so the run ends with a complete ``checkpoint-N`` (weights, and the
trainer state unless --save_only_model) that ``--adapters RUN`` and ``swiftkit export`` read as
usual. It must come before :class:`~swiftkit.train.checkpointing.CheckpointGuard` in the callbacks.
"""

from __future__ import annotations

from transformers import TrainerCallback


class FinalSave(TrainerCallback):
    """Under ``save_strategy="no"``, save once when the last step ends."""

    def on_step_end(self, args, state, control, **kwargs):
        if args.save_strategy == "no" and state.max_steps > 0 and state.global_step >= state.max_steps:
            control.should_save = True

"""Checkpoint folders are complete or absent: the callback that keeps them so.

transformers writes a checkpoint's files one after another into ``checkpoint-N/`` and
``trainer_state.json`` last (:func:`swiftkit.core.checkpoints.is_complete` relies on that). A save
that fails half-way (an exception, a full disk) would leave a folder of that name with some of its
files; a save into a folder an earlier run left behind would mix old files with new ones.
:class:`CheckpointGuard` removes both: the old folder before the save starts, the partial one when
training fails before the save finished (:meth:`CheckpointGuard.discard_unfinished`, called by the
recipe's training step). Saves transformers decides after an evaluation (``--save_strategy best``,
early stopping) are not announced to callbacks before they start; a failed one is found as the
current step's folder without a readable ``trainer_state.json`` and removed too. A process killed
mid-save leaves a folder without a readable ``trainer_state.json``, which every command skips as
incomplete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import TrainerCallback

from swiftkit.core.checkpoints import is_complete


class CheckpointGuard(TrainerCallback):
    """Watches checkpoint saves of a run folder: which one is being written, and when it is done."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.saving: Path | None = None  # the checkpoint folder whose save began and has not finished
        self.step = 0  # the last optimizer step seen

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        # transformers decides at the end of a step whether to save (DefaultFlowCallback, which runs first)
        if control.should_save and args.should_save:
            self.saving = self.run_dir / f"checkpoint-{state.global_step}"
            shutil.rmtree(self.saving, ignore_errors=True)  # an earlier run's: nothing old mixes in

    def on_save(self, args, state, control, **kwargs):
        self.saving = None

    def discard_unfinished(self) -> Path | None:
        """Remove the checkpoint folder of a save that began and did not finish; the folder, or None."""
        folder, self.saving = self.saving, None
        if folder is None:  # a save decided after an evaluation: this step's folder, if it is incomplete
            current = self.run_dir / f"checkpoint-{self.step}"
            folder = current if self.step and current.exists() and not is_complete(current) else None
        if folder is None or not folder.exists():
            return None
        shutil.rmtree(folder, ignore_errors=True)
        return folder


def checkpoint_guard(trainer) -> CheckpointGuard | None:
    """The trainer's :class:`CheckpointGuard` (None when its callbacks have none)."""
    handler = getattr(trainer, "callback_handler", None)  # a plugin's trainer class may lack one
    return next((c for c in getattr(handler, "callbacks", []) if isinstance(c, CheckpointGuard)), None)

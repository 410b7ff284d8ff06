"""``graceful_exit``: on SIGTERM or SIGINT (Ctrl-C), finish the step under way, save a complete
checkpoint, and end the run normally, with a message saying how to resume it.

The first signal only asks: training goes on until the end of the current optimizer step (a signal
that arrives after that step's optimizer update, e.g. during an evaluation or a save, is acted on
at the next step), then transformers saves ``checkpoint-N`` the usual way (weights, optimizer,
scheduler, RNG state, trainer state; swiftkit adds args.json), so ``--resume_from_checkpoint`` continues
the run exactly. No evaluation runs at that step (it may take long while a scheduler's grace period
runs out, and under ``--save_strategy best`` it would decide whether to save; the resumed run evaluates
on schedule). The run then ends as a finished one (exit status 0, train_result.json written). A
second signal does what the process did before training started (Ctrl-C raises KeyboardInterrupt,
SIGTERM terminates).

The handlers are installed when training begins and the previous ones put back when it ends. Signals
reach only the main thread: a run trained in another thread keeps the default behaviour (and says
so). A handler left behind by a run that raised (its train end never came) passes signals on.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from transformers import Trainer, TrainerCallback

from swiftkit.core.checkpoints import last_complete

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _log(message: str) -> None:
    print(f"[swiftkit] graceful_exit: {message}", file=sys.stderr, flush=True)


def _training_loop_code(frame):
    """The code object of the trainer method that runs the training loop, found up the call stack."""
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), Trainer):
            return frame.f_code
        frame = frame.f_back
    return None


class GracefulExit(TrainerCallback):
    """Turns SIGTERM/SIGINT into "save a checkpoint after this step, then stop"."""

    def __init__(self, command: str = "sft"):
        self.command = command
        self.previous: dict = {}
        self.loop_code = None
        self.received: int | None = None
        self.stop_step: int | None = None
        self.run_dir: str | None = None

    # -- signals -----------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):
        self.run_dir, self.received, self.stop_step = args.output_dir, None, None
        if threading.current_thread() is not threading.main_thread():
            _log("training runs outside the main thread, where signals arrive: SIGTERM/SIGINT stop it at once")
            return
        self.loop_code = _training_loop_code(sys._getframe())
        for sig in SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)

    def _in_training(self, frame) -> bool:
        while frame is not None:
            if frame.f_code is self.loop_code:
                return True
            frame = frame.f_back
        return False

    def _handle(self, signum, frame):
        if self.received is None and self.loop_code is not None and self._in_training(frame):
            self.received = signum
            _log(f"{signal.Signals(signum).name} received: training stops after the current step, once a checkpoint "
                 "is saved (send it again to stop at once)")
            return
        previous = self.previous.get(signum, signal.SIG_DFL)
        self._restore()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL, or a handler not installed from Python
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def _restore(self) -> None:
        for sig, handler in self.previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    # -- stopping ----------------------------------------------------------------------------------

    def on_optimizer_step(self, args, state, control, **kwargs):
        # Before on_step_end: the checkpoint guard, which acts there, sees the save coming.
        if self.received is not None and self.stop_step is None:
            self.stop_step = state.global_step + 1  # the step this update completes
            control.should_save = True
            control.should_training_stop = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_step == state.global_step:
            control.should_evaluate = False  # save and stop; under save_strategy best an evaluation would veto the save

    def on_train_end(self, args, state, control, **kwargs):
        self._restore()
        if self.stop_step is None:
            return
        run = Path(self.run_dir or args.output_dir)
        name, saved = signal.Signals(self.received).name, last_complete(run)
        resume = f"swiftkit {self.command} --resume_from_checkpoint {run} (and the same flags)"
        if saved is not None and saved.name == f"checkpoint-{state.global_step}":
            _log(f"stopped by {name} at step {state.global_step}; {saved.name} is saved. Continue the run with: "
                 f"{resume}")
        elif saved is not None:  # no save at this step
            _log(f"stopped by {name} at step {state.global_step}, whose checkpoint was not saved; the last complete "
                 f"one is {saved.name}: {resume} repeats the steps after it")
        else:
            _log(f"stopped by {name} at step {state.global_step}; no complete checkpoint was saved")

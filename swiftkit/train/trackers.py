"""Experiment trackers for ``--report_to``: which ones a run uses, and the callback that feeds them.

swiftkit drives every tracker itself through the tracker's Python API (transformers is always told
``report_to="none"``): transformers' integration callbacks take their settings from environment
variables (``WANDB_MODE``, ``MLFLOW_TRACKING_URI``, ...), and swiftkit's settings are flags.
:class:`TrackersCallback` starts each tracker's run once the first optimizer step is done (the run's
``args.json`` values as its config, ``args.json`` and ``manifest.json`` attached as files), logs the
numbers of every log event at the optimizer step (``train/loss``, ``train/learning_rate``,
``train/grad_norm``, ``eval/loss``, ...) and closes the runs when training ends. Runs that training
left open (an exception) are closed as failed when the callback is collected or the process exits.

What each call does in tensorboard, wandb, swanlab and mlflow is in
:mod:`swiftkit.train.tracker_backends`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import numbers
import weakref
from pathlib import Path

from transformers import TrainerCallback

from swiftkit.config.groups import TRACKERS
from swiftkit.core.errors import ConfigError
from swiftkit.train.errors import TrainError
from swiftkit.train.tracker_backends import BACKENDS

MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "swanlab": "swanlab", "mlflow": "mlflow"}
INSTALL = {"tensorboard": "pip install tensorboard", "wandb": "pip install 'swiftkit[trackers]'",
           "swanlab": "pip install 'swiftkit[trackers]'", "mlflow": "pip install 'swiftkit[trackers]'"}
RUN_FILES = ("args.json", "manifest.json")  # attached to every tracker's run


def is_installed(name: str) -> bool:
    """Whether tracker ``name``'s package can be found (without importing it)."""
    try:
        return importlib.util.find_spec(MODULES[name]) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module blocked in sys.modules
        return False


def selected_trackers(report_to, *, excluded=()) -> list[str]:
    """The trackers ``--report_to`` names, in order: ``none`` is no tracker, ``all`` every tracker
    whose package is installed; ``excluded`` are left out of ``all``."""
    names = list(dict.fromkeys(report_to))
    if "all" in names:
        names = [n for n in names if n != "all"] + [n for n in TRACKERS if n not in excluded and is_installed(n)]
    return [n for n in dict.fromkeys(names) if n != "none"]


def require_package(name: str) -> None:
    """Import tracker ``name``'s package; a missing one is a one-line :class:`ConfigError`."""
    module = MODULES[name]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != module:
            raise
        raise ConfigError(f"--report_to {name} needs the {module} package: {INSTALL[name]}") from None


def tracker_metrics(logs: dict | None) -> dict[str, float]:
    """The numbers of one log event under the trackers' names: ``eval_loss`` -> ``eval/loss``, ``loss``
    -> ``train/loss`` (strings and booleans are left out)."""
    metrics = {}
    for key, value in (logs or {}).items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars too
            continue
        metrics[f"eval/{key[len('eval_'):]}" if key.startswith("eval_") else f"train/{key}"] = float(value)
    return metrics


def _close_failed(runs) -> None:
    """Close tracker runs that training left open, as failed (best effort: the process may be exiting
    and a tracker's own exit hooks may have closed its run already)."""
    for run in runs:
        with contextlib.suppress(Exception):
            run.finish(False)


class TrackersCallback(TrainerCallback):
    """Feeds the ``--report_to`` trackers' runs from the trainer's events, on the main process.

    ``runs`` maps each tracker's name to its :class:`~swiftkit.train.tracker_backends.TrackerRun`. The
    runs start when the first optimizer step ends, so a run that fails before it (and leaves no run
    folder behind) leaves no tracker run either; a tracker that cannot start stops training with one
    line, its siblings closed as failed."""

    def __init__(self, runs: dict):
        self.runs = runs
        self._open = None  # closes the runs as failed unless training ends

    def _start(self, args, state) -> None:
        if self._open is not None or not state.is_world_process_zero or state.global_step < 1:
            return
        run_dir = Path(args.output_dir).resolve()  # the run folder: args.json and manifest.json are in it
        config = json.loads((run_dir / "args.json").read_text(encoding="utf-8"))
        files = [run_dir / name for name in RUN_FILES if (run_dir / name).is_file()]
        started = []
        for name, run in self.runs.items():
            try:
                run.start(run_dir, config, files)
            except Exception as exc:
                _close_failed(started)
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise TrainError(f"--report_to {name}: starting its run failed: {first_line}") from exc
            started.append(run)
        self._open = weakref.finalize(self, _close_failed, started)

    def on_step_end(self, args, state, control, **kwargs):
        self._start(args, state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._start(args, state)
        metrics = tracker_metrics(logs)
        if self._open is not None and metrics:
            for run in self.runs.values():
                run.log(metrics, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self._open is not None:
            self._open.detach()
            self._open = None
            for run in self.runs.values():
                run.finish(True)


def tracker_callbacks(training, *, excluded=()) -> list[TrackersCallback]:
    """The callback feeding the trackers of ``--report_to`` (none: an empty list); ``training`` is the
    config's TrainingArgs. Each tracker's package is imported now: a missing one, or a tracker that
    cannot go online, is a :class:`ConfigError` before any weights load. Nothing is written until
    training has made its first step, into the trainer's output_dir (the run folder)."""
    runs = {}
    for name in selected_trackers(training.report_to, excluded=excluded):
        require_package(name)
        runs[name] = BACKENDS[name](mode=training.tracker_mode, project=training.tracker_project)
        runs[name].check()
    return [TrackersCallback(runs)] if runs else []

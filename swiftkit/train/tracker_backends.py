"""What ``--report_to`` does in each tracker, through the tracker's own Python API.

Each class is one tracker run: ``check()`` (before weights load), ``start(run_dir, config, files)``,
``log(metrics, step)`` and ``finish(ok)`` (a second call does nothing). With ``--tracker_mode offline``
(the default) everything stays under the run folder:

==============  ==============================  ===============================================
tracker         where                           read it with
==============  ==============================  ===============================================
tensorboard     ``runs/`` (event files)         ``tensorboard --logdir <run>/runs``
wandb           ``wandb/offline-run-*/``        ``wandb sync <run>/wandb/offline-run-*``
swanlab         ``swanlog/run-*/``              ``swanlab sync <run>/swanlog/run-*``
mlflow          ``mlruns/`` (a file store)      ``mlflow ui --backend-store-uri <run>/mlruns``
==============  ==============================  ===============================================

``online`` leaves tensorboard local, starts wandb and swanlab runs in their online mode (as the user
is logged in with ``wandb login`` / ``swanlab login``) and logs to the tracking server MLflow is set to.
The trackers are imported inside the methods: only a run that reports to one pays for it.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

from swiftkit.core._compat import allow_mlflow_file_store
from swiftkit.core.errors import ConfigError

MLFLOW_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
MLFLOW_MAX_BATCH_PARAMS = 100  # MLflow's limit on params in one log_batch call


def flat_params(config: dict) -> dict[str, str | int | float | bool]:
    """Config values as scalar params (for trackers that take no nesting): lists, mappings and None
    as their JSON text."""
    return {key: value if isinstance(value, (str, int, float, bool))
            else json.dumps(value, ensure_ascii=False, default=str) for key, value in config.items()}


class TrackerRun:
    """Settings every tracker run takes; subclasses implement the four steps."""

    def __init__(self, mode: str = "offline", project: str = "swiftkit"):
        self.mode = mode
        self.project = project

    def check(self) -> None:
        """Raise a ConfigError now if this tracker cannot run as configured."""


class HostedRun(TrackerRun):
    """A run of a tracker with its own run object (wandb, swanlab): files saved with it, metrics logged to it."""

    run = None

    def attach(self, run, run_dir: Path, files: list[Path]) -> None:
        self.run = run
        for path in files:
            run.save(str(path), base_path=str(run_dir), policy="now")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)


class TensorBoardRun(TrackerRun):
    """Event files in ``<run>/runs``: scalars, the config in the HParams tab, the run files as text."""

    writer = None

    def start(self, run_dir: Path, config: dict, files: list[Path]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # defers torch
        from torch.utils.tensorboard.summary import hparams  # defers torch

        self.writer = SummaryWriter(log_dir=str(run_dir / "runs"))
        experiment, session_start, self.session_end = hparams(flat_params(config), {"train/loss": 0, "eval/loss": 0})
        for summary in (experiment, session_start):
            self.writer.file_writer.add_summary(summary)
        for path in files:  # markdown: an indented block shows the JSON as it is
            self.writer.add_text(path.name, textwrap.indent(path.read_text(encoding="utf-8"), "    "))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)

    def finish(self, ok: bool) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            if ok:
                writer.file_writer.add_summary(self.session_end)
            writer.close()


class WandbRun(HostedRun):
    """A wandb run under ``<run>/wandb``: ``offline`` (sync later with ``wandb sync``) or ``online``."""

    def check(self) -> None:
        """Online needs wandb's own login (``wandb login`` or its API key setting), checked now."""
        if self.mode != "online":
            return
        import wandb  # defers wandb

        if not wandb.login(verify=False, prompt=False):
            raise ConfigError("--report_to wandb --tracker_mode online: wandb is not logged in; run `wandb login` "
                              "first, or use --tracker_mode offline and `wandb sync` the run later")

    def start(self, run_dir: Path, config: dict, files: list[Path]) -> None:
        import wandb  # defers wandb

        # console="off": the run's output stays swiftkit's (wandb would otherwise wrap stdout/stderr).
        self.attach(wandb.init(mode=self.mode, dir=str(run_dir), project=self.project, name=run_dir.name,
                               config=config, reinit="create_new", settings=wandb.Settings(console="off")),
                    run_dir, files)

    def finish(self, ok: bool) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.finish(exit_code=0 if ok else 1)


class SwanlabRun(HostedRun):
    """A SwanLab run under ``<run>/swanlog``: ``offline`` (sync later with ``swanlab sync``) or ``online``."""

    def check(self) -> None:
        """Online needs swanlab's own login (``swanlab login`` or its API key setting), checked now."""
        if self.mode != "online":
            return
        import swanlab  # defers swanlab

        if not swanlab.Settings().api_key:
            raise ConfigError("--report_to swanlab --tracker_mode online: swanlab is not logged in; run `swanlab "
                              "login` first, or use --tracker_mode offline and `swanlab sync` the run later")

    def start(self, run_dir: Path, config: dict, files: list[Path]) -> None:
        import swanlab  # defers swanlab

        # proxy_type none: swanlab would otherwise copy the terminal's output into the run.
        settings = swanlab.Settings(terminal=swanlab.Settings.Terminal(proxy_type="none"))
        self.attach(swanlab.init(mode=self.mode, log_dir=str(run_dir / "swanlog"), project=self.project,
                                 name=run_dir.name, config=config, settings=settings, reinit=True), run_dir, files)

    def finish(self, ok: bool) -> None:
        run, self.run = self.run, None
        if run is not None and ok:
            run.finish()
        elif run is not None:
            run.finish(state="crashed", error="training stopped with an error")


class MlflowRun(TrackerRun):
    """An MLflow run: offline in a file store at ``<run>/mlruns``, online at MLflow's tracking URI."""

    client = None
    run_id = None

    def check(self) -> None:
        import mlflow  # defers mlflow

        if self.mode == "online" and not mlflow.is_tracking_uri_set():
            raise ConfigError("--report_to mlflow --tracker_mode online: MLflow has no tracking server set (it reads "
                              "MLFLOW_TRACKING_URI); set one, or use --tracker_mode offline for a store in the run "
                              "folder")

    def start(self, run_dir: Path, config: dict, files: list[Path]) -> None:
        import mlflow  # defers mlflow
        from mlflow.entities import Param  # defers mlflow

        uri = mlflow.get_tracking_uri() if self.mode == "online" else (run_dir / "mlruns").as_uri()
        allow_mlflow_file_store(uri)
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(self.project)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(self.project)
        run = self.client.create_run(experiment_id, run_name=run_dir.name, tags={"swiftkit.run_dir": str(run_dir)})
        self.run_id = run.info.run_id
        params = [Param(key, str(value)[:MLFLOW_MAX_PARAM_LENGTH]) for key, value in flat_params(config).items()]
        for start in range(0, len(params), MLFLOW_MAX_BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=params[start:start + MLFLOW_MAX_BATCH_PARAMS])
        for path in files:
            self.client.log_artifact(self.run_id, str(path))

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric  # defers mlflow

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step) for key, value in metrics.items()])

    def finish(self, ok: bool) -> None:
        run_id, self.run_id = self.run_id, None
        if run_id is not None:
            self.client.set_terminated(run_id, "FINISHED" if ok else "FAILED")


BACKENDS = {"tensorboard": TensorBoardRun, "wandb": WandbRun, "swanlab": SwanlabRun, "mlflow": MlflowRun}

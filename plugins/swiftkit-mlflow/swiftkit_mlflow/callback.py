"""A ``transformers.TrainerCallback`` that records one training run in MLflow.

At train begin it starts a run (experiment created when missing) and logs the swiftkit config as
params; every log event becomes metrics at the current optimizer step; at train end the run dir's
``args.json`` and ``loss.png`` are logged as artifacts and the run is marked FINISHED. A run left
open by a failed training is marked FAILED when the callback is collected or the process exits.
"""

from __future__ import annotations

import contextlib
import json
import time
import weakref
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from transformers import TrainerCallback

from swiftkit_mlflow._compat import allow_local_file_store

MAX_PARAM_VALUE_LENGTH = 6000  # MLflow's limit on a param value
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch call
ARTIFACTS = ("args.json", "loss.png")


def config_params(flat: dict) -> dict[str, str]:
    """Config values as MLflow params: strings (lists and dicts as JSON), None skipped, truncated."""
    params = {}
    for key, value in flat.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, dict)):
            text = json.dumps(value, ensure_ascii=False, default=str)
        else:
            text = str(value)
        params[key] = text[:MAX_PARAM_VALUE_LENGTH]
    return params


def numeric_metrics(logs: dict | None, step: int) -> list:
    """The numbers of one log event as MLflow metrics at ``step`` (strings and booleans skipped)."""
    now = int(time.time() * 1000)
    return [
        Metric(key, float(value), now, step)
        for key, value in (logs or {}).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


def _end_run(client, run_id: str, status: str) -> None:
    with contextlib.suppress(Exception):  # best effort while a failed process shuts down
        client.set_terminated(run_id, status)


class MlflowCallback(TrainerCallback):
    """Logs params, metrics and run files of a swiftkit training run to MLflow."""

    def __init__(self, config, tracking_uri: str | None = None, experiment: str = "swiftkit"):
        self.config = config
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = None
        self.run_id = None
        self._fail_open_run = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        run_dir = Path(args.output_dir).resolve()
        uri = self.tracking_uri or (run_dir / "mlruns").as_uri()
        allow_local_file_store(uri)
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(self.experiment)
        run = self.client.create_run(experiment_id, run_name=run_dir.name, tags={"swiftkit.run_dir": str(run_dir)})
        self.run_id = run.info.run_id
        self._fail_open_run = weakref.finalize(self, _end_run, self.client, self.run_id, "FAILED")
        params = [Param(k, v) for k, v in config_params(self.config.to_flat()).items()]
        for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + MAX_PARAMS_PER_BATCH])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run_id is None:
            return
        metrics = numeric_metrics(logs, state.global_step)
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_train_end(self, args, state, control, **kwargs):
        if self.run_id is None:
            return
        for name in ARTIFACTS:
            path = Path(args.output_dir) / name
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED")
        self._fail_open_run.detach()
        self.run_id = None

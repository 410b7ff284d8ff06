"""The MLflow plugin distribution (plugins/swiftkit-mlflow) installed with pip tracks a real sft run.

The distribution is pip-installed (without dependencies: mlflow-skinny comes with swiftkit's dev
extra) into the running interpreter's environment for this module and uninstalled afterwards.
swiftkit runs in subprocesses, because entry points are read per process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

from distributions import build_copy, install_offline, pip, write_train_file  # noqa: E402

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "plugins" / "swiftkit-mlflow"
DIST_NAME = "swiftkit-mlflow"
@pytest.fixture(scope="module")
def mlflow_dist(tmp_path_factory):
    # Build from a copy, so the build leaves no build/ or *.egg-info in the source tree.
    src = build_copy(PLUGIN_SRC, tmp_path_factory.mktemp("dist"))
    try:
        install_offline(src)
        yield src
    finally:
        pip("uninstall", "-y", DIST_NAME)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_train_file(tmp_path_factory.mktemp("data") / "train.jsonl")


def swiftkit(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swiftkit.cli.main", *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=300, check=False)


def test_sft_run_is_tracked_in_mlflow(mlflow_dist, tiny_model_dir, data_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    proc = swiftkit("sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data_file),
                    "--output_dir", str(out), "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
                    "--report_to", "none", "--logging_steps", "1", "--max_steps", "3", "--seed", "7",
                    "--callbacks", "mlflow", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = sorted(out.glob("v*-*"))
    logged = [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines() if line.strip()]
    jsonl_losses = [(r["step"], r["loss"]) for r in logged if "loss" in r]
    assert [step for step, _ in jsonl_losses] == [1, 2, 3]

    from mlflow.tracking import MlflowClient

    # Reading a local file store needs MLflow's opt-in (MLflow >= 3.13), as the plugin gives it.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("swiftkit")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == jsonl_losses
    assert run.data.params["lora_rank"] == "8"
    assert run.data.params["max_steps"] == "3"
    assert {"args.json", "loss.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_help_shows_plugin_flags_while_installed(mlflow_dist, tmp_path):
    proc = swiftkit("sft", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = " ".join(proc.stdout.split())  # argparse wraps help text
    assert "--mlflow_tracking_uri" in text
    assert "--mlflow_experiment" in text
    assert "default: a local file store in <run dir>/mlruns" in text

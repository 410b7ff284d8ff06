"""The MLflow plugin distribution (plugins/swiftkit-mlflow) installed with pip tracks a real sft run.

The distribution is pip-installed (without dependencies: mlflow-skinny comes with swiftkit's dev
extra) into the running interpreter's environment for this module and uninstalled afterwards.
swiftkit runs in subprocesses, because entry points are read per process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "plugins" / "swiftkit-mlflow"
DIST_NAME = "swiftkit-mlflow"
ROWS = [
    {"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"}]},
    {"query": "What is 1+1?", "response": "It is 2."},
    {"instruction": "Name a colour.", "input": "", "output": "Blue, like the sea and the sky."},
    {"query": "Write a poem about the sea.", "response": "The sea and the sky are one."},
]


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def mlflow_dist(tmp_path_factory):
    # Build from a copy, so the build leaves no build/ or *.egg-info in the source tree.
    src = tmp_path_factory.mktemp("dist") / DIST_NAME
    shutil.copytree(PLUGIN_SRC, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    try:
        _pip("install", "--no-index", "--no-build-isolation", "--no-deps", str(src))
        yield src
    finally:
        _pip("uninstall", "-y", DIST_NAME)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 2))
    return path


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

"""Tests of the MLflow callback against a real local file store, and of the plugin's hooks and metadata.

Run from this distribution's root: ``python -m pytest -q``.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient
from swiftkit_mlflow import plugin
from swiftkit_mlflow._compat import FILE_STORE_OPT_IN
from transformers import TrainerControl, TrainerState, TrainingArguments

from swiftkit.config import SftConfig
from swiftkit.config.plugin_fields import collect_plugin_fields

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def restore_file_store_opt_in(monkeypatch):
    """The callback opts into MLflow's file store process-wide; undo it after each test."""
    monkeypatch.delenv(FILE_STORE_OPT_IN, raising=False)


def plugin_host():
    """A swiftkit plugin host with only this plugin (checked against the hookspecs on registration)."""
    from swiftkit.core.plugins import PluginHost

    host = PluginHost.build(entry_points=False)
    host.register(plugin, "mlflow")
    return host


def make_config(**values) -> SftConfig:
    fields = collect_plugin_fields(plugin_host(), "sft", SftConfig.flat_fields())
    return SftConfig.from_flat({"model": "tiny", "dataset": ["train.jsonl"], **values}, plugin_fields=fields)


def run_dir_with_files(tmp_path: Path) -> Path:
    run_dir = tmp_path / "v0-run"
    run_dir.mkdir()
    (run_dir / "args.json").write_text(json.dumps({"lora_rank": 8}))
    (run_dir / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really an image")
    return run_dir


def train(callback, run_dir: Path, logs_by_step: dict[int, dict]) -> None:
    """Drive the callback through the events a Trainer sends, with real transformers objects."""
    args = TrainingArguments(output_dir=str(run_dir), report_to="none")
    state, control = TrainerState(), TrainerControl()
    callback.on_train_begin(args, state, control)
    for step, logs in logs_by_step.items():
        state.global_step = step
        callback.on_log(args, state, control, logs=logs)
    callback.on_train_end(args, state, control)


def only_run(uri: str, experiment: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {uri}"
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


def test_callback_logs_params_metrics_and_artifacts(tmp_path):
    run_dir = run_dir_with_files(tmp_path)
    cfg = make_config(lora_rank=16, system="s" * 7000)
    callback = plugin.swiftkit_get_callback(name="mlflow", config=cfg)
    train(callback, run_dir, {
        1: {"loss": 2.5, "learning_rate": 1e-3, "epoch": 0.25},
        2: {"loss": 2.25, "grad_norm": 0.75, "note": "text", "flag": True},
    })

    client, run = only_run((run_dir / "mlruns").as_uri(), "swiftkit")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "v0-run"
    params = run.data.params
    assert params["lora_rank"] == "16"
    assert params["dataset"] == '["train.jsonl"]'
    assert params["mlflow_experiment"] == "swiftkit"
    assert params["system"] == "s" * 6000  # truncated to MLflow's limit
    assert "mlflow_tracking_uri" not in params  # None values are skipped
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.5), (2, 2.25)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "grad_norm")] == [2]
    assert "note" not in run.data.metrics and "flag" not in run.data.metrics
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["args.json", "loss.png"]
    local = Path(client.download_artifacts(run.info.run_id, "args.json", str(tmp_path / "dl")))
    assert json.loads(local.read_text()) == {"lora_rank": 8}


def test_missing_loss_plot_is_not_an_error(tmp_path):
    run_dir = run_dir_with_files(tmp_path)
    (run_dir / "loss.png").unlink()
    train(plugin.swiftkit_get_callback(name="mlflow", config=make_config()), run_dir, {})
    client, run = only_run((run_dir / "mlruns").as_uri(), "swiftkit")
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["args.json"]


def test_tracking_uri_and_experiment_options(tmp_path):
    run_dir = run_dir_with_files(tmp_path)
    store = tmp_path / "shared-store"
    cfg = make_config(mlflow_tracking_uri=str(store), mlflow_experiment="ablation")
    for _ in range(2):  # a second run goes into the same, existing experiment
        train(plugin.swiftkit_get_callback(name="mlflow", config=cfg), run_dir, {1: {"loss": 1.0}})
    assert not (run_dir / "mlruns").exists()
    client = MlflowClient(tracking_uri=store.as_uri())
    exp = client.get_experiment_by_name("ablation")
    assert len(client.search_runs([exp.experiment_id])) == 2
    assert client.get_experiment_by_name("swiftkit") is None


def test_run_left_open_by_a_failure_is_marked_failed(tmp_path):
    run_dir = run_dir_with_files(tmp_path)
    callback = plugin.swiftkit_get_callback(name="mlflow", config=make_config())
    args = TrainingArguments(output_dir=str(run_dir), report_to="none")
    callback.on_train_begin(args, TrainerState(), TrainerControl())
    _, run = only_run((run_dir / "mlruns").as_uri(), "swiftkit")
    assert run.info.status == "RUNNING"
    del callback  # training raised: on_train_end never comes
    gc.collect()
    _, run = only_run((run_dir / "mlruns").as_uri(), "swiftkit")
    assert run.info.status == "FAILED"


def test_hook_answers_only_for_mlflow():
    cfg = make_config()
    for other in ("MLflow", "wandb", "early_stop", ""):
        assert plugin.swiftkit_get_callback(name=other, config=cfg) is None
    from transformers import TrainerCallback

    from swiftkit.core.choices import choose

    assert isinstance(choose(plugin_host(), "callback", "mlflow", config=cfg), TrainerCallback)


def test_fields_are_declared_for_sft_and_pt_only():
    host = plugin_host()
    for command in ("sft", "pt"):
        fields = collect_plugin_fields(host, command, SftConfig.flat_fields())
        assert {n: (f.type, f.default) for n, f in fields.items()} == {
            "mlflow_tracking_uri": (str, None), "mlflow_experiment": (str, "swiftkit")}
        assert all(f.help for f in fields.values())
    assert collect_plugin_fields(host, "infer", ()) == {}
    assert make_config(mlflow_experiment="x").plugin_options == {"mlflow_tracking_uri": None, "mlflow_experiment": "x"}


def test_missing_mlflow_is_a_clear_plugin_error():
    code = (
        "import sys; sys.modules['mlflow'] = None\n"  # makes `import mlflow` fail as if not installed
        "from swiftkit.core.plugins import PluginError\n"
        "from swiftkit_mlflow import plugin\n"
        "try:\n"
        "    plugin.swiftkit_get_callback(name='mlflow', config=None)\n"
        "except PluginError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "install swiftkit-mlflow's dependency: pip install mlflow-skinny" in out.stdout


def test_plugin_module_imports_neither_mlflow_nor_transformers():
    code = "import sys, swiftkit_mlflow.plugin; print(sorted({'mlflow', 'transformers', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_entry_point_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "swiftkit-mlflow"
    assert meta["project"]["entry-points"]["swiftkit"] == {"mlflow": "swiftkit_mlflow.plugin"}
    assert meta["tool"]["setuptools"]["packages"] == ["swiftkit_mlflow"]
    assert {"swiftkit", "mlflow-skinny>=2.10"} <= set(meta["project"]["dependencies"])

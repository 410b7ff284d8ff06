"""--report_to: tracker names, the metric names trackers get, and the errors before any weights load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from swiftkit.config import SftConfig
from swiftkit.core.errors import ConfigError
from swiftkit.recipes import parts
from swiftkit.train.trackers import TrackersCallback, is_installed, selected_trackers, tracker_metrics


def sft_config(**values) -> SftConfig:
    return SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], **values})


def test_names_resolve_in_order_without_repeats():
    assert selected_trackers(["none"]) == []
    assert selected_trackers(["wandb", "tensorboard", "wandb"]) == ["wandb", "tensorboard"]


def test_all_is_every_installed_tracker(monkeypatch):
    assert selected_trackers(["all"]) == ["tensorboard", "wandb", "swanlab", "mlflow"]  # the dev extra has all
    monkeypatch.setitem(sys.modules, "swanlab", None)  # as if it were not installed
    assert not is_installed("swanlab")
    assert selected_trackers(["all"]) == ["tensorboard", "wandb", "mlflow"]
    assert selected_trackers(["mlflow", "all"], excluded=("mlflow",)) == ["mlflow", "tensorboard", "wandb"]


def test_metric_names_follow_train_and_eval():
    import numpy as np

    logs = {"loss": 1.5, "grad_norm": 0.25, "learning_rate": 1e-4, "epoch": 0.5, "eval_loss": 2.0,
            "eval_runtime": 0.1, "rewards/chosen": -0.5, "note": "text", "flag": True, "count": 3,
            "kl": np.float32(0.125)}
    metrics = tracker_metrics(logs)
    assert metrics == {"train/loss": 1.5, "train/grad_norm": 0.25, "train/learning_rate": 1e-4, "train/epoch": 0.5,
                       "eval/loss": 2.0, "eval/runtime": 0.1, "train/rewards/chosen": -0.5, "train/count": 3.0,
                       "train/kl": 0.125}
    assert all(type(v) is float for v in metrics.values())
    assert tracker_metrics(None) == {}


@pytest.mark.parametrize("name, hint", [("wandbb", "'wandb'"), ("tensorbord", "'tensorboard'"),
                                        ("ml-flow", "'mlflow'")])
def test_unknown_tracker_names_the_closest(name, hint):
    with pytest.raises(ConfigError) as err:
        sft_config(report_to=["tensorboard", name])
    message = str(err.value)
    assert f"unknown --report_to {name!r} (did you mean {hint}?)" in message and "\n" not in message


def test_none_stands_alone():
    with pytest.raises(ConfigError, match="--report_to none cannot be combined"):
        sft_config(report_to=["none", "wandb"])


def test_tracker_settings_are_validated():
    with pytest.raises(ConfigError, match="--tracker_mode"):
        SftConfig.from_flat({"model": "m", "dataset": ["d"], "tracker_mode": "cloud"}, source="flag")
    assert sft_config().training.tracker_mode == "offline"


def test_one_callback_feeds_every_tracker_and_none_adds_nothing():
    (callback,) = parts.tracker_callbacks(sft_config(report_to=["tensorboard", "mlflow"]))
    assert isinstance(callback, TrackersCallback) and list(callback.runs) == ["tensorboard", "mlflow"]
    assert parts.tracker_callbacks(sft_config(report_to=["none"])) == []


def test_report_to_mlflow_and_the_mlflow_plugin_callback_exclude_each_other():
    with pytest.raises(ConfigError, match="--report_to mlflow and --callbacks mlflow both log"):
        parts.tracker_callbacks(sft_config(report_to=["mlflow"], callbacks=["mlflow"]))
    (callback,) = parts.tracker_callbacks(sft_config(report_to=["all"], callbacks=["mlflow"]))
    assert "mlflow" not in callback.runs


def test_mlflow_online_needs_a_tracking_server(monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not mlflow.is_tracking_uri_set()
    with pytest.raises(ConfigError, match="MLflow has no tracking server set"):
        parts.tracker_callbacks(sft_config(report_to=["mlflow"], tracker_mode="online"))


def test_transformers_gets_no_tracker_of_its_own(tmp_path):
    args = parts.training_arguments(sft_config(report_to=["wandb", "tensorboard"]), tmp_path, has_val=False)
    assert args["report_to"] == "none"


# A tracker package made unimportable in a fresh interpreter (sys.modules[name] = None is how Python
# marks a module as not importable); swiftkit's CLI then runs unchanged, with load_weights observed
# (it still runs) to show the error comes before any weights load.
MISSING = textwrap.dedent("""
    import sys
    for name in sys.argv[2:]:
        sys.modules[name] = None
    import swiftkit.recipes.steps as steps
    from swiftkit.cli.main import main

    real_load = steps.load_weights
    def observed(*args, **kwargs):
        print("LOADING WEIGHTS", file=sys.stderr)
        return real_load(*args, **kwargs)
    steps.load_weights = observed
    model, data, out = sys.argv[1].split("|")
    for tracker in ("tensorboard", "wandb", "swanlab", "mlflow"):
        code = main(["sft", "--model", model, "--dataset", data, "--output_dir", out, "--max_steps", "1",
                     "--report_to", tracker])
        print(f"EXIT {tracker} {code}", file=sys.stderr)
    # the same run without a tracker loads its weights (and trains): the observer sees it
    code = main(["sft", "--model", model, "--dataset", data, "--output_dir", out + "-none", "--max_steps", "1",
                 "--train_type", "full", "--save_strategy", "no", "--report_to", "none"])
    print(f"EXIT none {code}", file=sys.stderr)
""")


@pytest.mark.timeout(180)
def test_a_missing_tracker_package_is_one_line_before_weights_load(tiny_model_dir, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n')
    out = tmp_path / "out"
    argv = f"{tiny_model_dir('llama', 'chatml')}|{data}|{out}"
    proc = subprocess.run([sys.executable, "-c", MISSING, argv, "tensorboard", "wandb", "swanlab", "mlflow"],
                          capture_output=True, text=True, timeout=170, check=False)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line or line.startswith(("EXIT", "LOADING"))]
    assert errors == [
        "swiftkit sft: error: --report_to tensorboard needs the tensorboard package: pip install tensorboard",
        "EXIT tensorboard 2",
        "swiftkit sft: error: --report_to wandb needs the wandb package: pip install 'swiftkit[trackers]'",
        "EXIT wandb 2",
        "swiftkit sft: error: --report_to swanlab needs the swanlab package: pip install 'swiftkit[trackers]'",
        "EXIT swanlab 2",
        "swiftkit sft: error: --report_to mlflow needs the mlflow package: pip install 'swiftkit[trackers]'",
        "EXIT mlflow 2",
        "LOADING WEIGHTS",
        "EXIT none 0",
    ], proc.stderr[-3000:]
    assert not out.exists()


def test_mlflow_online_logs_where_mlflow_is_pointed_and_starts_after_the_first_step(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from transformers import TrainerControl, TrainerState, TrainingArguments

    server = (tmp_path / "server").as_uri()  # a tracking URI MLflow is set to (a file store stands in for a server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run_dir = tmp_path / "v0-20261202-120000"
    run_dir.mkdir()
    (run_dir / "args.json").write_text(json.dumps({"max_steps": 2, "report_to": ["mlflow"]}))
    (run_dir / "manifest.json").write_text(json.dumps({"seed": 42}))
    (callback,) = parts.tracker_callbacks(sft_config(report_to=["mlflow"], tracker_mode="online",
                                                     tracker_project="ablation"))
    args, state, control = TrainingArguments(output_dir=str(run_dir), report_to="none"), TrainerState(), TrainerControl()
    callback.on_train_begin(args, state, control)
    callback.on_log(args, state, control, logs={"loss": 9.0})  # before any optimizer step: no run yet
    assert not (tmp_path / "server").exists()
    for step, loss in ((1, 2.5), (2, 2.0)):
        state.global_step = step
        callback.on_step_end(args, state, control)
        callback.on_log(args, state, control, logs={"loss": loss, "learning_rate": 1e-3})
    callback.on_train_end(args, state, control)

    client = MlflowClient(tracking_uri=server)
    (run,) = client.search_runs([client.get_experiment_by_name("ablation").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == [(1, 2.5), (2, 2.0)]
    assert run.data.params == {"max_steps": "2", "report_to": '["mlflow"]'}
    assert not (run_dir / "mlruns").exists()


@pytest.mark.parametrize("tracker, login", [("wandb", "wandb login"), ("swanlab", "swanlab login")])
def test_online_without_the_trackers_login_stops_before_weights_load(tracker, login, tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "NETRC", "WANDB_CONFIG_DIR", "SWANLAB_API_KEY", "SWANLAB_ROOT", "SWANLAB_SAVE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no ~/.swanlab: nobody is logged in
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"--report_to {tracker} --tracker_mode online: {tracker} is not logged in; "
                                          f"run `{login}` first"):
        parts.tracker_callbacks(sft_config(report_to=[tracker], tracker_mode="online"))
    assert parts.tracker_callbacks(sft_config(report_to=[tracker]))  # offline needs no login

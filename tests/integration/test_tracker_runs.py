"""--report_to: what each tracker wrote under the run folder, read back with the tracker's own reader.

One tiny LoRA `swiftkit sft` run reports to tensorboard, wandb, swanlab and mlflow at once, in a
subprocess (wandb and swanlab start background workers; they end with it) whose environment asks
every tracker to go online (WANDB_MODE, SWANLAB_MODE, MLFLOW_TRACKING_URI): the flags win, nothing
leaves the run folder. Each test then reads one tracker's files and compares the loss it holds with
the run's logging.jsonl, and checks the config and the attached args.json / manifest.json.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_sft_cli import ROWS, read_jsonl, write_jsonl

from swiftkit.cli.main import main

TRACKERS = ("tensorboard", "wandb", "swanlab", "mlflow")
MAX_STEPS = 4


@dataclass
class Run:
    dir: Path
    losses: list[tuple[int, float]]  # (optimizer step, loss) from logging.jsonl
    eval_losses: list[tuple[int, float]]
    args: dict
    manifest: dict
    seconds: float


def logged(run_dir: Path, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in read_jsonl(run_dir / "logging.jsonl") if key in r]


def close_to(got: list[tuple[int, float]], want: list[tuple[int, float]], rel: float = 1e-6) -> bool:
    """Same steps, same values (tensorboard keeps float32)."""
    return [s for s, _ in got] == [s for s, _ in want] and [v for _, v in got] == pytest.approx([v for _, v in want], rel=rel)


@pytest.fixture(scope="module")
def tracked(tiny_model_dir, tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("trackers")
    data = write_jsonl(tmp / "train.jsonl", ROWS * 4)
    val = write_jsonl(tmp / "val.jsonl", ROWS)
    out = tmp / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SWANLAB_", "MLFLOW_"))}
    env.update(WANDB_MODE="online", SWANLAB_MODE="online", MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "swiftkit.cli.main", "sft", "--model", str(tiny_model_dir("llama", "chatml")),
         "--dataset", str(data), "--val_dataset", str(val), "--output_dir", str(out), "--max_steps", str(MAX_STEPS),
         "--logging_steps", "1", "--eval_steps", "2", "--save_steps", str(MAX_STEPS),
         "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--report_to", *TRACKERS],
        capture_output=True, text=True, cwd=tmp, env=env, timeout=240, check=False)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = out.glob("v*-*")
    losses, eval_losses = logged(run_dir, "loss"), logged(run_dir, "eval_loss")
    assert [s for s, _ in losses] == [1, 2, 3, 4] and [s for s, _ in eval_losses] == [2, 4]
    return Run(run_dir, losses, eval_losses, json.loads((run_dir / "args.json").read_text()),
               json.loads((run_dir / "manifest.json").read_text()), seconds)


@pytest.mark.timeout(240)
def test_every_tracker_wrote_only_under_the_run_folder(tracked):
    assert {p.name for p in tracked.dir.iterdir()} >= {"runs", "wandb", "swanlog", "mlruns"}
    assert not (tracked.dir.parent.parent / "wandb").exists() and not (tracked.dir.parent.parent / "mlruns").exists()
    print(f"4-tracker sft run (subprocess, {MAX_STEPS} steps): {tracked.seconds:.1f} s")


# -- tensorboard ---------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_tensorboard_events_hold_the_loss_config_and_run_files(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(tracked.dir / "runs"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert close_to([(e.step, e.value) for e in events.Scalars("train/loss")], tracked.losses)
    assert close_to([(e.step, e.value) for e in events.Scalars("eval/loss")], tracked.eval_losses)
    assert {"train/learning_rate", "train/grad_norm"} <= set(events.Tags()["scalars"])
    for name, want in (("args.json", tracked.args), ("manifest.json", tracked.manifest)):
        (text,) = events.Tensors(f"{name}/text_summary")
        assert json.loads(textwrap.dedent(text.tensor_proto.string_val[0].decode())) == want
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["max_steps"].number_value == MAX_STEPS and hparams["lora_rank"].number_value == 8
    assert json.loads(hparams["report_to"].string_value) == list(TRACKERS)
    assert "_hparams_/session_end_info" in content  # closed as a finished run


# -- wandb ---------------------------------------------------------------------------------------


def wandb_records(path: Path):
    """The records of a ``.wandb`` file, decoded with wandb's own protobuf classes.

    wandb 0.31 has no Python reader for it (the file is written by its wandb-core service): it is a
    LevelDB-style log (a 7-byte ``:W&B`` header, then 32 KiB blocks of chunks, each with a CRC-32
    seeded by its type, a length and a type: full, first, middle, last), one ``Record`` per entry."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # too little room left in the block for a header: padding
            pos += 32768 - pos % 32768
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            break
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc
        pending += chunk
        if kind in (1, 4):  # full or last chunk: one record complete
            yield Record.FromString(pending)
            pending = b""


def wandb_run(run_dir: Path):
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    return folder, list(wandb_records(log))


def wandb_history(records, key: str) -> list[tuple[int, float]]:
    out = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            if key in items:
                out.append((r.history.step.num, items[key]))
    return out


@pytest.mark.timeout(240)
def test_wandb_offline_run_holds_the_loss_config_and_run_files(tracked):
    folder, records = wandb_run(tracked.dir)
    assert close_to(wandb_history(records, "train/loss"), tracked.losses, rel=1e-12)
    assert close_to(wandb_history(records, "eval/loss"), tracked.eval_losses, rel=1e-12)
    assert wandb_history(records, "train/grad_norm") and wandb_history(records, "train/learning_rate")
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == tracked.dir.name and run.project == "swiftkit"
    config = {u.key: json.loads(u.value_json) for u in run.config.update if u.key != "_wandb"}
    assert config == tracked.args
    saved = {f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files}
    assert {"args.json", "manifest.json"} <= saved
    assert json.loads((folder / "files" / "manifest.json").read_text()) == tracked.manifest
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 0


# -- swanlab -------------------------------------------------------------------------------------


def swanlab_run(run_dir: Path):
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    (folder,) = (run_dir / "swanlog").glob("run-*")
    (log,) = folder.glob("run-*.swanlab")
    reader = DataStoreReader()
    reader.open(log)
    try:
        return folder, [Record.FromString(data) for data in reader]
    finally:
        reader.close()


@pytest.mark.timeout(240)
def test_swanlab_offline_run_holds_the_loss_config_and_run_files(tracked):
    import yaml

    folder, records = swanlab_run(tracked.dir)
    kinds = [r.WhichOneof("record_type") for r in records]

    def scalars(key):
        return [(r.scalar.step, r.scalar.value.number) for r, k in zip(records, kinds)
                if k == "scalar" and r.scalar.key == key]

    assert close_to(scalars("train/loss"), tracked.losses, rel=1e-12)
    assert close_to(scalars("eval/loss"), tracked.eval_losses, rel=1e-12)
    (start,) = [r.start for r, k in zip(records, kinds) if k == "start"]
    assert start.name == tracked.dir.name and start.project == "swiftkit"
    config = {k: v["value"] for k, v in yaml.safe_load((folder / "files" / "config.yaml").read_text()).items()}
    assert config["max_steps"] == MAX_STEPS and config["report_to"] == list(TRACKERS)
    assert config["plan"] == tracked.args["plan"]
    saved = {r.save.name for r, k in zip(records, kinds) if k == "save"}
    assert {"args.json", "manifest.json"} <= saved
    assert json.loads((folder / "files" / "args.json").read_text()) == tracked.args
    (finish,) = [r.finish for r, k in zip(records, kinds) if k == "finish"]
    assert finish.state == 1  # RUN_STATE_FINISHED


# -- mlflow --------------------------------------------------------------------------------------


def mlflow_client(run_dir: Path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.13 opens a file store only then
    return MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())


@pytest.mark.timeout(240)
def test_mlflow_file_store_holds_the_loss_params_and_run_files(tracked, monkeypatch, tmp_path):
    client = mlflow_client(tracked.dir, monkeypatch)
    experiment = client.get_experiment_by_name("swiftkit")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == tracked.dir.name

    def history(key):
        return [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key),
                                                 key=lambda m: m.step)]

    assert close_to(history("train/loss"), tracked.losses, rel=1e-12)
    assert close_to(history("eval/loss"), tracked.eval_losses, rel=1e-12)
    params = run.data.params
    assert params["max_steps"] == str(MAX_STEPS) and params["lora_rank"] == "8"
    assert json.loads(params["report_to"]) == list(TRACKERS) and params["resume_from_checkpoint"] == "null"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"args.json", "manifest.json"}
    local = client.download_artifacts(run.info.run_id, "manifest.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == tracked.manifest


# -- pt and rlhf, and runs that fail -------------------------------------------------------------


def tensorboard_losses(run_dir: Path, key: str = "train/loss") -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "runs"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(key)]


@pytest.mark.timeout(120)
def test_pt_reports_to_tensorboard(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(["The sea is calm and the sky is clear today."] * 8))
    assert main(["pt", "--model", str(tiny_model_dir("llama", None)), "--dataset", str(corpus), "--output_dir",
                 str(tmp_path / "out"), "--max_steps", "2", "--logging_steps", "1", "--save_steps", "2",
                 "--report_to", "tensorboard"]) == 0
    (run_dir,) = (tmp_path / "out").glob("v*-*")
    assert close_to(tensorboard_losses(run_dir), logged(run_dir, "loss"))


@pytest.mark.timeout(120)
def test_rlhf_dpo_reports_through_trls_trainer(tiny_model_dir, tmp_path):
    rows = [{"prompt": "Greet me", "chosen": "Hello friend, welcome!", "rejected": "Go away."},
            {"prompt": "Any advice?", "chosen": "Be kind and patient.", "rejected": "No."}] * 2
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert main(["rlhf", "--rlhf_type", "dpo", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset",
                 str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--logging_steps", "1",
                 "--save_steps", "2", "--per_device_train_batch_size", "2", "--report_to", "tensorboard"]) == 0
    (run_dir,) = (tmp_path / "out").glob("v*-*")
    assert close_to(tensorboard_losses(run_dir), logged(run_dir, "loss"))
    assert close_to(tensorboard_losses(run_dir, "train/rewards/chosen"), logged(run_dir, "rewards/chosen"))
    assert [p.name for p in (run_dir / "runs").iterdir()] == [p.name for p in (run_dir / "runs").glob("events.*")]


STOP_AT = '''
import swiftkit
from transformers import TrainerCallback

class StopAt(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == STEP:
            raise RuntimeError(f"stopped before step {STEP}")

@swiftkit.hookimpl
def swiftkit_get_callback(name, config):
    return StopAt() if name == "stop-at" else None

@swiftkit.hookimpl
def swiftkit_choice_names(kind):
    return ["stop-at"] if kind == "callback" else []
'''


def failing_argv(tiny_model_dir, tmp_path, step: int, trackers) -> tuple[list[str], Path]:
    """A tiny sft run whose --plugins callback raises before optimizer step ``step``."""
    plugin = tmp_path / "stop_at.py"
    plugin.write_text(f"STEP = {step}\n" + STOP_AT)
    data = write_jsonl(tmp_path / "train.jsonl", ROWS * 2)
    out = tmp_path / "out"
    return ["sft", "--plugins", str(plugin), "--callbacks", "stop-at", "--model", str(tiny_model_dir("llama", "chatml")),
            "--dataset", str(data), "--output_dir", str(out), "--max_steps", "4", "--logging_steps", "1",
            "--save_steps", "1", "--report_to", *trackers], out


@pytest.mark.timeout(240)
def test_a_run_that_fails_mid_way_leaves_every_tracker_run_closed_as_failed(tiny_model_dir, tmp_path, monkeypatch):
    argv, out = failing_argv(tiny_model_dir, tmp_path, 3, TRACKERS)
    proc = subprocess.run([sys.executable, "-m", "swiftkit.cli.main", *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=220, check=False)
    assert proc.returncode == 2 and "stopped before step 3" in proc.stderr, proc.stderr[-3000:]
    (run_dir,) = out.glob("v*-*")
    losses = logged(run_dir, "loss")
    assert [s for s, _ in losses] == [1, 2]  # the steps done before the failure, each logged once

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "runs"), size_guidance={"scalars": 0})
    events.Reload()
    assert close_to([(e.step, e.value) for e in events.Scalars("train/loss")], losses)
    assert "_hparams_/session_end_info" not in events.PluginTagToContent("hparams")  # not a finished session
    _, records = wandb_run(run_dir)
    assert close_to(wandb_history(records, "train/loss"), losses, rel=1e-12)
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [1]
    _, records = swanlab_run(run_dir)
    assert [r.finish.state for r in records if r.WhichOneof("record_type") == "finish"] == [2]  # RUN_STATE_CRASHED
    client = mlflow_client(run_dir, monkeypatch)
    (run,) = client.search_runs([client.get_experiment_by_name("swiftkit").experiment_id])
    assert run.info.status == "FAILED"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == losses


@pytest.mark.timeout(120)
def test_a_run_that_fails_before_its_first_step_leaves_no_tracker_files(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # kept from leaking into other tests
    argv, out = failing_argv(tiny_model_dir, tmp_path, 1, ["tensorboard", "mlflow"])
    assert main(argv) == 2
    gc.collect()  # the failed trainer and its callbacks are gone (a tracker run left open would close now)
    assert not out.exists()

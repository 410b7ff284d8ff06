"""Damaged checkpoint files (a truncated safetensors file, an unreadable trainer_state.json or args.json,
a garbage optimizer.pt) on resume, infer, export and deploy: one line naming the file and what to do,
exit status 2, no traceback unless --debug."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest_checkpoints import (
    copy_run,
    error_line,
    ppo_resume_argv,
    ppo_run,
    run_cli,
    sft_resume_argv,
)

from swiftkit.core.checkpoints import is_complete


@pytest.fixture
def run(lora_run):
    return lora_run


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def command_argv(command, target, run, prompts, tmp_path):
    if command == "resume":
        return sft_resume_argv(target, run)
    if command == "infer":
        return ["infer", "--adapters", target, "--val_dataset", prompts, "--max_new_tokens", "2"]
    return ["export", "--adapters", target, "--output_dir", tmp_path / "exported"]


def assert_one_line(rc, err, *names):
    assert rc == 2, err
    line = error_line(err)
    for name in names:
        assert str(name) in line, line
    return line


@pytest.mark.parametrize("command", ["resume", "infer", "export"])
def test_a_truncated_adapter_is_one_line(command, run, prompts, tmp_path, capsys):
    ckpt = run / "checkpoint-2"
    damaged = truncate(ckpt / "adapter_model.safetensors")
    rc, err = run_cli(command_argv(command, ckpt, run, prompts, tmp_path), capsys)
    line = assert_one_line(rc, err, damaged)
    assert "not a whole safetensors file" in line and "replace it with an intact copy" in line
    assert not (tmp_path / "exported").exists()


def test_debug_adds_the_traceback(run, prompts, tmp_path, capsys):
    truncate(run / "checkpoint-2" / "adapter_model.safetensors")
    rc, err = run_cli([*command_argv("infer", run / "checkpoint-2", run, prompts, tmp_path), "--debug"], capsys)
    assert rc == 2 and "Traceback" in err and "CheckpointError" in err


def test_deploy_with_a_truncated_adapter_is_one_line(run):
    damaged = truncate(run / "checkpoint-2" / "adapter_model.safetensors")
    proc = subprocess.run([sys.executable, "-m", "swiftkit.cli.main", "deploy", "--adapters",
                           str(run / "checkpoint-2"), "--port", "1"], capture_output=True, text=True, timeout=120)
    assert_one_line(proc.returncode, proc.stderr, damaged)


def test_a_garbage_optimizer_state_is_one_line(run, capsys):
    ckpt = run / "checkpoint-2"
    (ckpt / "optimizer.pt").write_bytes(b"not a torch file" * 64)
    rc, err = run_cli(sft_resume_argv(ckpt, run), capsys)
    assert_one_line(rc, err, ckpt / "optimizer.pt", "--resume_from_checkpoint")


def test_a_truncated_optimizer_state_is_one_line(run, capsys):
    ckpt = run / "checkpoint-2"
    truncate(ckpt / "optimizer.pt")
    rc, err = run_cli(sft_resume_argv(ckpt, run), capsys)
    assert "damaged" in assert_one_line(rc, err, ckpt / "optimizer.pt")


def test_a_corrupt_trainer_state_named_explicitly_is_refused(run, capsys):
    ckpt = run / "checkpoint-2"
    (ckpt / "trainer_state.json").write_text('{"global_step": 2, "log_hist')
    rc, err = run_cli(sft_resume_argv(ckpt, run), capsys)
    line = assert_one_line(rc, err, ckpt / "trainer_state.json", run / "checkpoint-1")
    assert "incomplete checkpoint" in line


def test_a_corrupt_trainer_state_in_the_run_means_the_checkpoint_before(run, capsys):
    (run / "checkpoint-2" / "trainer_state.json").write_text("")
    rc, err = run_cli(sft_resume_argv(run, run), capsys)
    assert rc == 0, err
    plan = json.loads((run / "args.json").read_text())["plan"]
    assert plan["resume_from"] == str(run / "checkpoint-1")
    assert is_complete(run / "checkpoint-2") and is_complete(run / "checkpoint-3")  # saved again, whole


@pytest.mark.parametrize("where", ["checkpoint", "run"])
@pytest.mark.parametrize("command", ["resume", "infer", "export"])
def test_a_corrupt_args_json_is_one_line(where, command, run, prompts, tmp_path, capsys):
    ckpt = run / "checkpoint-2"
    if where == "run":
        (ckpt / "args.json").unlink()  # the run folder's copy is then the one read
    damaged = (ckpt if where == "checkpoint" else run) / "args.json"
    damaged.write_text('{"model": "x", ')
    rc, err = run_cli(command_argv(command, ckpt, run, prompts, tmp_path), capsys)  # resume: no --model
    assert_one_line(rc, err, damaged)


def test_a_truncated_value_model_stops_a_ppo_resume(model_dir, runs_root, tmp_path, capsys):
    run = copy_run(ppo_run(model_dir, runs_root), tmp_path / "copy")
    damaged = truncate(run / "checkpoint-1" / "value_model" / "model.safetensors")
    rc, err = run_cli(ppo_resume_argv(run / "checkpoint-1", run), capsys)
    assert_one_line(rc, err, damaged)


def test_a_damaged_rollout_stops_a_ppo_resume(model_dir, runs_root, tmp_path, capsys):
    run = copy_run(ppo_run(model_dir, runs_root), tmp_path / "copy")
    damaged = truncate(run / "checkpoint-1" / "ppo_rollout.safetensors", keep=0.9)
    rc, err = run_cli(ppo_resume_argv(run / "checkpoint-1", run), capsys)
    assert_one_line(rc, err, damaged)

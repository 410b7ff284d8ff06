"""A checkpoint is untrusted input: a pickle planted in any file swiftkit (or transformers, peft)
reads from a checkpoint or run folder never runs.

Each test plants a payload (an object whose unpickling creates a marker file) in one file of a real
trained run, runs the real command that reads that file (resume of sft and ppo, infer, export and
deploy of a checkpoint, a full-weights model), and asserts the marker never appears, and what the
command did instead: stop with one line naming the file (exit 2), or go on without reading it.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch
from conftest_checkpoints import (
    copy_run,
    error_line,
    plant,
    ppo_resume_argv,
    ppo_run,
    run_cli,
    sft_resume_argv,
    sft_run,
)

# Files of a LoRA sft checkpoint and what resuming from it does when the file holds a pickle payload:
# "refused" (one line naming the file, exit 2) or "ignored" (the run goes on: nothing reads the file).
SFT_RESUME = {
    "adapter_model.safetensors": "refused",
    "adapter_config.json": "refused",
    "optimizer.pt": "refused",
    "scheduler.pt": "refused",
    "rng_state.pth": "refused",
    "scaler.pt": "refused",  # read when training with a gradient scaler (fp16)
    "trainer_state.json": "refused",
    "args.json": "refused",
    "tokenizer.json": "refused",
    "tokenizer_config.json": "refused",
    "training_args.bin": "ignored",  # transformers writes it for reference; nothing reads it
}
PPO_RESUME = {
    "value_model/model.safetensors": "refused",
    "value_model/config.json": "refused",
    "ppo_rollout.safetensors": "refused",
    "ppo_rollout.pt": "refused",  # the old pickled rollout file: never unpickled
}


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PWNED"


def test_the_payload_runs_when_unpickled(tmp_path, marker):
    """The planted files are live: an unsafe load would run them."""
    torch.load(plant(tmp_path / "optimizer.pt", marker), weights_only=False)
    assert marker.exists()
    marker.unlink()
    pickle.loads(plant(tmp_path / "trainer_state.json", marker).read_bytes())
    assert marker.exists()


def _assert_outcome(rc: int, err: str, expected: str, planted) -> None:
    if expected == "ignored":
        assert rc == 0, err
    else:
        assert rc == 2, err
        assert str(planted) in error_line(err)


@pytest.mark.parametrize("name", list(SFT_RESUME))
def test_sft_resume_never_unpickles(name, lora_run, marker, capsys):
    ckpt = lora_run / "checkpoint-2"
    planted = plant(ckpt / name, marker)
    rc, err = run_cli(sft_resume_argv(ckpt, lora_run), capsys)
    assert not marker.exists()
    _assert_outcome(rc, err, SFT_RESUME[name], planted)


def test_sft_resume_never_unpickles_the_run_folders_args_json(lora_run, marker, capsys):
    planted = plant(lora_run / "args.json", marker)
    (lora_run / "checkpoint-2" / "args.json").unlink()  # so the run folder's copy is the one read
    rc, err = run_cli(sft_resume_argv(lora_run / "checkpoint-2", lora_run), capsys)
    assert not marker.exists()
    _assert_outcome(rc, err, "refused", planted)


@pytest.fixture(scope="module")
def pristine_ppo(model_dir, runs_root):
    return ppo_run(model_dir, runs_root)


@pytest.mark.parametrize("name", list(PPO_RESUME))
def test_ppo_resume_never_unpickles(name, pristine_ppo, tmp_path, marker, capsys):
    run = copy_run(pristine_ppo, tmp_path / "copy")
    ckpt = run / "checkpoint-1"
    planted = plant(ckpt / name, marker)
    rc, err = run_cli(ppo_resume_argv(ckpt, run), capsys)
    assert not marker.exists()
    _assert_outcome(rc, err, PPO_RESUME[name], planted)


def _bin_adapter(ckpt, marker=None):
    """Turn the checkpoint's adapter into adapter_model.bin: a payload, or (marker None) its real tensors."""
    from safetensors.torch import load_file

    weights = load_file(ckpt / "adapter_model.safetensors")
    (ckpt / "adapter_model.safetensors").unlink()
    if marker is None:
        torch.save(weights, ckpt / "adapter_model.bin")
        return ckpt / "adapter_model.bin"
    return plant(ckpt / "adapter_model.bin", marker)


def test_a_real_bin_adapter_still_loads(lora_run, prompts, capsys):
    """Control: adapter_model.bin holding tensors is read (safely) and used."""
    ckpt = lora_run / "checkpoint-2"
    _bin_adapter(ckpt)
    rc, err = run_cli(["infer", "--adapters", ckpt, "--val_dataset", prompts, "--max_new_tokens", "2"], capsys)
    assert rc == 0, err


@pytest.mark.parametrize("command", ["infer", "export"])
def test_infer_and_export_never_unpickle_a_bin_adapter(command, lora_run, prompts, marker, tmp_path, capsys):
    ckpt = lora_run / "checkpoint-2"
    planted = _bin_adapter(ckpt, marker)
    extra = ["--val_dataset", prompts, "--max_new_tokens", "2"] if command == "infer" else \
        ["--output_dir", tmp_path / "exported"]
    rc, err = run_cli([command, "--adapters", ckpt, *extra], capsys)
    assert not marker.exists()
    _assert_outcome(rc, err, "refused", planted)
    assert not (tmp_path / "exported").exists()


def test_deploy_never_unpickles_a_bin_adapter(lora_run, marker):
    ckpt = lora_run / "checkpoint-2"
    planted = _bin_adapter(ckpt, marker)
    proc = subprocess.run([sys.executable, "-m", "swiftkit.cli.main", "deploy", "--adapters", str(ckpt),
                           "--port", "1"], capture_output=True, text=True, timeout=120)
    assert not marker.exists()
    assert proc.returncode == 2, proc.stderr
    assert str(planted) in error_line(proc.stderr)


@pytest.fixture(scope="module")
def pristine_full(model_dir, runs_root):
    return sft_run(model_dir, runs_root, "--train_type", "full")


def _bin_weights(folder, marker):
    (folder / "model.safetensors").unlink()
    return plant(folder / "pytorch_model.bin", marker)


def test_full_weights_checkpoint_never_unpickles(pristine_full, prompts, tmp_path, marker, capsys):
    run = copy_run(pristine_full, tmp_path / "copy")
    ckpt = run / "checkpoint-2"
    planted = _bin_weights(ckpt, marker)
    for argv in (["infer", "--adapters", ckpt, "--val_dataset", prompts, "--max_new_tokens", "2"],
                 ["export", "--adapters", ckpt, "--output_dir", tmp_path / "exported"],
                 sft_resume_argv(ckpt, run)):
        rc, err = run_cli(argv, capsys)
        assert not marker.exists()
        _assert_outcome(rc, err, "refused", planted)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json"])
def test_infer_of_a_full_weights_checkpoint_never_unpickles(name, pristine_full, prompts, tmp_path, marker, capsys):
    run = copy_run(pristine_full, tmp_path / "copy")
    planted = plant(run / "checkpoint-2" / name, marker)
    rc, err = run_cli(["infer", "--adapters", run / "checkpoint-2", "--val_dataset", prompts, "--max_new_tokens", "2"],
                      capsys)
    assert not marker.exists()
    _assert_outcome(rc, err, "refused", planted)


def test_a_base_model_folder_never_unpickles(model_dir, prompts, tmp_path, marker, capsys):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(model_dir, base)
    _bin_weights(base, marker)
    planted = base / "pytorch_model.bin"
    rc, err = run_cli(["infer", "--model", base, "--val_dataset", prompts, "--max_new_tokens", "2"], capsys)
    assert not marker.exists()
    _assert_outcome(rc, err, "refused", planted)  # checked before transformers sees it: the line names it



def test_the_libraries_own_loaders_refuse_it_too(lora_run, model_dir, marker, tmp_path):
    """Checked, not assumed: without swiftkit's check in front, peft 0.21 and the transformers 5.24
    Trainer load these files with weights_only=True and refuse the payload."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    ckpt = lora_run / "checkpoint-2"
    _bin_adapter(ckpt, marker)
    with pytest.raises(pickle.UnpicklingError):
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(ckpt))
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                      args=TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none", use_cpu=True))
    trainer.create_optimizer_and_scheduler(num_training_steps=2)
    plant(ckpt / "optimizer.pt", marker)
    with pytest.raises(pickle.UnpicklingError):
        trainer._load_optimizer_and_scheduler(str(ckpt))  # private: the Trainer's own resume step
    (ckpt / "optimizer.pt").unlink()
    plant(ckpt / "rng_state.pth", marker)
    with pytest.raises(pickle.UnpicklingError):
        trainer._load_rng_state(str(ckpt))
    assert not marker.exists()

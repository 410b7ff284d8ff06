"""A run that fails while saving a checkpoint (an exception, a full disk) leaves no ``checkpoint-N``
folder that looks complete: the partial folder is removed, the earlier checkpoints stay, and the
run resumes from the last complete one. PPO writes its value model and rollout before the
trainer state that marks a checkpoint complete."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest_checkpoints import (
    PPO_FLAGS,
    ROWS,
    SFT_FLAGS,
    error_line,
    mount_tmpfs,
    ppo_run,
    reward_of,
    run_cli,
    write_jsonl,
)

from swiftkit.core.checkpoints import is_complete

# A --callbacks plugin that makes the disk of the run folder full just before the save of step FILL_AT
# (another process filling the disk), leaving LEAVE bytes so the step's log line still fits.
FILL_DISK = '''
import os
import shutil

import swiftkit
from transformers import TrainerCallback

FILL_AT, LEAVE = {fill_at}, {leave}


class FillDisk(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step != FILL_AT:
            return
        with open(os.path.join(args.output_dir, "..", "filler"), "wb") as fh:
            try:
                while shutil.disk_usage(args.output_dir).free > LEAVE:
                    fh.write(b"\\0" * 4096)
                    fh.flush()
            except OSError:
                pass


@swiftkit.hookimpl
def swiftkit_choice_names(kind):
    return {{"callback": ["fill-disk"], "trainer": ["fails-saving"]}}.get(kind, [])


@swiftkit.hookimpl
def swiftkit_get_callback(name, config):
    return FillDisk() if name == "fill-disk" else None


@swiftkit.hookimpl
def swiftkit_get_trainer(name, config):
    if name != "fails-saving":
        return None
    from swiftkit.train.trainer import SwiftTrainer

    class FailsSaving(SwiftTrainer):
        """Fails half-way through the save of step FILL_AT (after the weights and optimizer state)."""

        def _save_rng_state(self, output_dir):
            if self.state.global_step == FILL_AT:
                raise RuntimeError("the save broke half-way")
            return super()._save_rng_state(output_dir)

    return FailsSaving
'''


def plugin(tmp_path, fill_at=2, leave=16384):
    path = tmp_path / "fill_disk.py"
    path.write_text(textwrap.dedent(FILL_DISK.format(fill_at=fill_at, leave=leave)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pristine_ppo(model_dir, tmp_path_factory):
    return ppo_run(model_dir, tmp_path_factory.mktemp("runs"))


def sft_argv(model_dir, data, out, *extra):
    return ["sft", "--model", model_dir, "--dataset", data, "--output_dir", out, *SFT_FLAGS, *extra]


def test_an_exception_while_saving_leaves_no_partial_checkpoint(model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS * 2)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the save broke half-way"):  # a bug keeps its traceback
        run_cli(sft_argv(model_dir, data, out, "--max_steps", "3", "--plugins", plugin(tmp_path),
                         "--trainer", "fails-saving"), capsys)
    run = next(out.glob("v*-*"))
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1"]
    assert is_complete(run / "checkpoint-1")


def test_a_full_disk_while_saving_is_one_line_and_the_run_resumes(model_dir, tmp_path, request, capsys):
    disk = mount_tmpfs(request, tmp_path, "8m")
    data = write_jsonl(tmp_path / "train.jsonl", ROWS * 2)
    out = disk.path / "out"
    rc, err = run_cli(sft_argv(model_dir, data, out, "--max_steps", "3", "--plugins", plugin(tmp_path),
                               "--callbacks", "fill-disk"), capsys)
    run = next(out.glob("v*-*"))
    assert rc == 2, err
    line = error_line(err)
    assert "checkpoint-2" in line and str(run) in line and "the disk is full" in line, line
    assert f"--resume_from_checkpoint {run}" in line and "last complete checkpoint is checkpoint-1" in line
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1"]
    assert is_complete(run / "checkpoint-1")

    (out / "filler").unlink()  # space freed: the run continues from checkpoint-1
    rc, err = run_cli(["sft", "--resume_from_checkpoint", run, "--dataset", data, *SFT_FLAGS, "--max_steps", "3"],
                      capsys)
    assert rc == 0, err
    assert all(is_complete(run / f"checkpoint-{step}") for step in (1, 2, 3))


def test_a_full_disk_while_a_ppo_checkpoint_is_saved(model_dir, pristine_ppo, tmp_path, request, capsys):
    disk = mount_tmpfs(request, tmp_path, "16m")
    out = disk.path / "out"
    rc, err = run_cli(["rlhf", "--model", model_dir, "--dataset", pristine_ppo.parent.parent / "prompts.jsonl",
                       "--output_dir", out, "--reward_model", reward_of(pristine_ppo),
                       *PPO_FLAGS, "--max_steps", "3", "--plugins", plugin(tmp_path), "--callbacks", "fill-disk"],
                      capsys)
    assert rc == 2, err
    assert "the disk is full" in error_line(err)
    run = next(out.glob("v*-*"))
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1"]


def test_ppo_writes_the_trainer_state_last(pristine_ppo):
    """What a PPO checkpoint needs (value model, rollout) is on disk before trainer_state.json, which
    marks it complete: a process killed in between leaves an incomplete checkpoint, never a complete
    one without its value model."""
    ckpt = pristine_ppo / "checkpoint-1"
    state = (ckpt / "trainer_state.json").stat().st_mtime_ns
    needed = [*ckpt.glob("ppo_rollout.*"), *(ckpt / "value_model").iterdir(), ckpt / "adapter_model.safetensors",
              ckpt / "optimizer.pt"]
    late = [p.name for p in needed if p.stat().st_mtime_ns > state]
    assert not late, f"written after trainer_state.json: {late}"


def test_a_stale_checkpoint_folder_is_replaced_not_mixed(model_dir, tmp_path, capsys):
    """Resuming from checkpoint-1 when an older run left a checkpoint-2 folder: the new save of step 2
    starts from an empty folder (no file of the old one survives)."""
    data = write_jsonl(tmp_path / "train.jsonl", ROWS * 2)
    out = tmp_path / "out"
    assert run_cli(sft_argv(model_dir, data, out, "--max_steps", "2"), capsys)[0] == 0
    run = next(out.glob("v*-*"))
    (run / "checkpoint-2" / "trainer_state.json").unlink()  # a save cut short ...
    (run / "checkpoint-2" / "leftover.json").write_text(json.dumps({"from": "the old save"}))
    rc, err = run_cli(["sft", "--resume_from_checkpoint", run, "--dataset", data, *SFT_FLAGS, "--max_steps", "2"],
                      capsys)
    assert rc == 0, err
    assert is_complete(run / "checkpoint-2") and not (run / "checkpoint-2" / "leftover.json").exists()


def test_an_exception_while_saving_the_best_checkpoint_leaves_no_partial_one(model_dir, tmp_path, capsys):
    """--save_strategy best decides to save after an evaluation, without telling callbacks first: a save
    that breaks there is still found and removed."""
    data = write_jsonl(tmp_path / "train.jsonl", ROWS * 2)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the save broke half-way"):
        run_cli(sft_argv(model_dir, data, out, "--max_steps", "3", "--plugins", plugin(tmp_path),
                         "--trainer", "fails-saving", "--val_dataset", data, "--save_strategy", "best",
                         "--eval_steps", "1", "--learning_rate", "1e-3"), capsys)
    run = next(out.glob("v*-*"))
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1"]
    assert is_complete(run / "checkpoint-1")

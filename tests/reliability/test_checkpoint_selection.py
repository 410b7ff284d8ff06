"""Every command that takes a run folder uses its last *complete* checkpoint, by the same rule as
resume: infer, eval, export, deploy (--adapters) and rlhf (--reward_model). An incomplete checkpoint
named explicitly is refused with one line. The incomplete checkpoint here is what a save cut short
leaves: half of its weights file and no trainer_state.json."""

from __future__ import annotations

import json

import pytest
from conftest_checkpoints import (
    PAIRS,
    PROMPTS,
    copy_run,
    error_line,
    run_cli,
    sft_run,
    write_jsonl,
)
from hosts import HOST


def cut_short(ckpt):
    """Make ``ckpt`` look like a save that died half-way."""
    (ckpt / "trainer_state.json").unlink()
    weights = ckpt / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


@pytest.fixture
def run(model_dir, tmp_path_factory, tmp_path):
    """A 2-step LoRA run whose checkpoint-2 was cut short."""
    copy = copy_run(sft_run(model_dir, tmp_path_factory.getbasetemp() / "runs-selection"), tmp_path / "copy")
    cut_short(copy / "checkpoint-2")
    return copy


@pytest.mark.parametrize("target", ["run", "output_dir"])
def test_infer_uses_the_last_complete_checkpoint(target, run, prompts, capsys):
    folder = run if target == "run" else run.parent
    rc, err = run_cli(["infer", "--adapters", folder, "--val_dataset", prompts, "--max_new_tokens", "2"], capsys)
    assert rc == 0, err
    assert f"adapters ['{run / 'checkpoint-1'}']" in err


def test_eval_uses_the_last_complete_checkpoint(run, prompts, tmp_path, capsys):
    rc, err = run_cli(["eval", "--adapters", run, "--val_dataset", prompts, "--max_new_tokens", "2",
                       "--eval_output_dir", tmp_path / "eval"], capsys)
    assert rc == 0, err
    assert f"adapters ['{run / 'checkpoint-1'}']" in err


def test_export_uses_the_last_complete_checkpoint(run, tmp_path, capsys):
    rc, err = run_cli(["export", "--adapters", run, "--output_dir", tmp_path / "exported"], capsys)
    assert rc == 0, err
    info = json.loads((tmp_path / "exported" / "export_info.json").read_text())
    assert info["adapters"] == [str(run / "checkpoint-1")]


def test_deploy_uses_the_last_complete_checkpoint(run, tmp_path):
    from swiftkit.config.commands import DeployConfig
    from swiftkit.recipes.deploy import DeployRecipe

    second = copy_run(run, tmp_path / "second")
    recipe = DeployRecipe(DeployConfig.from_flat({"adapters": [f"first={run}", f"second={second}"]}), HOST)
    recipe.setup()  # the second adapter is loaded from its run folder too (its checkpoint-2 would not load)
    assert recipe.info["adapters"] == [str(run / "checkpoint-1")]
    assert {"first", "second"} <= set(recipe.engine.model_names())


@pytest.mark.parametrize("command", ["infer", "export", "deploy"])
def test_an_incomplete_checkpoint_named_explicitly_is_one_line(command, run, prompts, tmp_path, capsys):
    extra = {"infer": ["--val_dataset", prompts], "export": ["--output_dir", tmp_path / "exported"],
             "deploy": ["--port", "1"]}[command]
    rc, err = run_cli([command, "--adapters", run / "checkpoint-2", *extra], capsys)
    assert rc == 2, err
    line = error_line(err)
    assert f"{str(run / 'checkpoint-2')!r} is an incomplete checkpoint" in line
    assert str(run / "checkpoint-1") in line  # what to pass instead


def test_ppo_uses_the_reward_models_last_complete_checkpoint(model_dir, tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    base = ["--model", model_dir, "--per_device_train_batch_size", "4", "--report_to", "none", "--max_steps", "2",
            "--save_steps", "1"]
    assert run_cli(["rlhf", "--rlhf_type", "rm", "--dataset", pairs, "--output_dir", tmp_path / "rm", *base],
                   capsys)[0] == 0
    rm_run = next((tmp_path / "rm").glob("v*-*"))
    cut_short(rm_run / "checkpoint-2")
    rc, err = run_cli(["rlhf", "--rlhf_type", "ppo", "--dataset", prompts, "--output_dir", tmp_path / "ppo",
                       "--reward_model", rm_run, "--max_completion_length", "4", *base], capsys)
    assert rc == 0, err

"""Built-in callbacks and metrics in real `swiftkit sft` runs on a tiny model: early_stop stops where the
logged evaluations say it must, graceful_exit turns SIGTERM into a checkpoint that resumes exactly,
perf_log's records add up, save_best ends with the best weights, and --metric values reach logging.jsonl."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hosts import builtin_host
from safetensors.torch import load_file
from test_sft_cli import ROWS, read_jsonl, run_sft, write_jsonl

from swiftkit.cli.main import main
from swiftkit.config import SftConfig
from swiftkit.core.checkpoints import checkpoints, is_complete, last_complete
from swiftkit.recipes.sft import SftRecipe

HELD_OUT = [
    {"messages": [{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "Paris is the capital of France."}]},
    {"messages": [{"role": "user", "content": "Write a poem."},
                  {"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."}]},
]


@pytest.fixture
def model_dir(tiny_model_dir):
    return tiny_model_dir("llama", "chatml")


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", ROWS * 4)


@pytest.fixture
def held_out(tmp_path):
    """Rows unlike the training rows: with --learning_rate 1e-2 full training their loss falls, then rises."""
    return write_jsonl(tmp_path / "val.jsonl", HELD_OUT)


def evals(run: Path, key: str = "eval_loss") -> dict[int, float]:
    return {r["step"]: r[key] for r in read_jsonl(run / "logging.jsonl") if key in r}


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(run / "logging.jsonl") if "loss" in r}


def result(run: Path) -> dict:
    return json.loads((run / "train_result.json").read_text())


OVERFIT = ("--train_type", "full", "--learning_rate", "1e-2", "--eval_steps", "2")


# -- early_stop ----------------------------------------------------------------------------------------


def test_early_stop_stops_when_the_eval_loss_stops_improving(model_dir, data, held_out, tmp_path):
    run = run_sft(model_dir, data, tmp_path / "out", "--val_dataset", str(held_out), *OVERFIT, "--max_steps", "40",
                  "--early_stop_interval", "2", "--save_strategy", "no")
    logged = evals(run)
    steps = sorted(logged)
    # Predicted from the log: the first evaluation after which 2 evaluations in a row were no lower than the best.
    best, since, predicted = float("inf"), 0, None
    for step in steps:
        since = 0 if logged[step] < best else since + 1
        best = min(best, logged[step])
        if since == 2:
            predicted = step
            break
    assert predicted is not None and predicted < 40
    assert result(run)["global_step"] == predicted == steps[-1]
    assert result(run)["last_checkpoint"] == str(run / f"checkpoint-{predicted}")  # the stopped state is saved


SCRIPTED_METRIC = '''
import swiftkit

VALUES = [0.5, 0.4, 0.45, 0.42, 0.1, 0.1]
SEEN = []

@swiftkit.hookimpl
def swiftkit_choice_names(kind):
    return ["scripted"] if kind == "metrics" else []

@swiftkit.hookimpl
def swiftkit_get_metrics(name, config):
    if name != "scripted":
        return None

    def compute(eval_pred):
        SEEN.append(1)
        return {"scripted": VALUES[len(SEEN) - 1]}

    return compute
'''


def test_early_stop_on_a_metric_a_plugin_controls(model_dir, data, tmp_path):
    plugin = tmp_path / "scripted.py"
    plugin.write_text(textwrap.dedent(SCRIPTED_METRIC))
    run = run_sft(model_dir, data, tmp_path / "out", "--val_dataset", str(data), "--max_steps", "40",
                  "--eval_steps", "3", "--plugins", str(plugin), "--metric", "scripted",
                  "--metric_for_best_model", "scripted", "--greater_is_better", "false", "--early_stop_interval", "2")
    # 0.5, 0.4 (best, step 6), 0.45, 0.42: the second evaluation without improvement is at step 12.
    assert evals(run, "eval_scripted") == {3: 0.5, 6: 0.4, 9: 0.45, 12: 0.42}
    assert result(run)["global_step"] == 12


# -- graceful_exit ---------------------------------------------------------------------------------------


def test_sigterm_saves_a_checkpoint_that_resumes_exactly(model_dir, data, tmp_path):
    common = ["--dataset", str(data), "--per_device_train_batch_size", "2", "--learning_rate", "1e-3",
              "--lr_scheduler_type", "constant", "--report_to", "none", "--logging_steps", "1", "--save_steps", "1000"]
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "swiftkit.cli.main", "sft", "--model", str(model_dir), "--output_dir", str(out),
         "--max_steps", "5000", "--callbacks", "graceful_exit", *common],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            logs = list(out.glob("v*/logging.jsonl"))
            if logs and any(r.get("step", 0) >= 3 for r in read_jsonl(logs[0])):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    run = next(out.glob("v*"))
    ckpt = last_complete(run)
    stop = int(ckpt.name.split("-")[1])
    assert 3 <= stop < 5000 and result(run)["global_step"] == stop, stderr[-2000:]
    assert is_complete(ckpt) and json.loads((ckpt / "args.json").read_text())["callbacks"] == ["graceful_exit"]
    assert (ckpt / "optimizer.pt").is_file() and (ckpt / "rng_state.pth").is_file()
    assert f"graceful_exit: stopped by SIGTERM at step {stop}; {ckpt.name} is saved" in stderr
    assert f"--resume_from_checkpoint {run}" in stderr

    assert main(["sft", "--resume_from_checkpoint", str(run), *common, "--max_steps", str(stop + 6)]) == 0
    full = run_sft(model_dir, data, tmp_path / "full", "--lr_scheduler_type", "constant", "--save_steps", "1000",
                   "--max_steps", str(stop + 6))
    resumed, uninterrupted = losses(run), losses(full)
    for step in range(1, stop + 7):  # 8 steps per epoch: the resumed steps reach the next epoch
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-4), step


SIGTERM_AT = '''
import signal

import swiftkit
from transformers import TrainerCallback


class SigtermDuringStep(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == {step}:
            signal.raise_signal(signal.SIGTERM)


@swiftkit.hookimpl
def swiftkit_choice_names(kind):
    return ["sigterm_at"] if kind == "callback" else []


@swiftkit.hookimpl
def swiftkit_get_callback(name, config):
    return SigtermDuringStep() if name == "sigterm_at" else None
'''


def test_sigterm_saves_even_where_save_best_would_not(model_dir, data, held_out, tmp_path, capsys):
    """Under --load_best_model_at_end only improving evaluations save; a SIGTERM during step 6 (whose
    evaluation would not improve: the loss rises after step 4) still ends with checkpoint-6."""
    plugin = tmp_path / "sigterm_at.py"
    plugin.write_text(SIGTERM_AT.replace("{step}", "6"))
    run = run_sft(model_dir, data, tmp_path / "out", "--val_dataset", str(held_out), *OVERFIT, "--max_steps", "12",
                  "--load_best_model_at_end", "true", "--plugins", str(plugin), "--callbacks", "sigterm_at",
                  "graceful_exit")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back
    assert [c.name for c in checkpoints(run)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert is_complete(run / "checkpoint-6") and sorted(evals(run)) == [2, 4]  # no evaluation at the stop
    info = result(run)
    assert info["global_step"] == 6 and info["best_checkpoint"] == str(run / "checkpoint-4")
    assert "stopped by SIGTERM at step 6; checkpoint-6 is saved" in capsys.readouterr().err


# -- perf_log ----------------------------------------------------------------------------------------------


def test_perf_log_records_add_up(model_dir, data, tmp_path):
    run = run_sft(model_dir, data, tmp_path / "out", "--max_steps", "6", "--callbacks", "perf_log",
                  "--perf_log_steps", "2", "--val_dataset", str(data), "--eval_steps", "3")
    records = read_jsonl(run / "perf.jsonl")
    assert [(r["step"], r["steps"]) for r in records] == [(2, 2), (4, 2), (6, 2)]
    parts = ("data_wait_s", "forward_backward_s", "optimizer_s", "other_s")
    for r in records:
        assert r["tokens"] > 0 and r["tokens_per_s"] > 0
        assert all(r[p] >= 0 for p in parts) and r["forward_backward_s"] > 0 and r["optimizer_s"] > 0
        assert sum(r[p] for p in parts) == pytest.approx(r["step_s"], abs=1e-5)
        assert r["tokens_per_s"] == pytest.approx(r["tokens"] / (2 * r["step_s"]), rel=1e-3)
    # The tokens counted at the model's forward are the real tokens the collator counted for train_result.json.
    assert sum(r["tokens"] for r in records) == result(run)["train_tokens"]
    summary = json.loads((run / "perf_summary.json").read_text())
    assert summary["steps"] == 6 and summary["outside_steps_s"] > 0  # two evaluations and saves
    # Steps and what happens between them make up transformers' own measure of the training time.
    assert summary["steps_s"] + summary["outside_steps_s"] == pytest.approx(result(run)["train_runtime_s"], rel=0.1,
                                                                            abs=0.05)
    assert sum(summary["share"].values()) == pytest.approx(1.0, abs=1e-3)


# -- save_best ---------------------------------------------------------------------------------------------


def test_save_best_keeps_the_best_checkpoint_as_the_last_one(model_dir, data, held_out, tmp_path):
    run = run_sft(model_dir, data, tmp_path / "out", "--val_dataset", str(held_out), *OVERFIT, "--max_steps", "12",
                  "--load_best_model_at_end", "true")
    logged = evals(run)
    best_step = min(logged, key=logged.get)
    assert best_step < 12  # the loss rose after it: later evaluations did not save
    saved = [int(c.name.split("-")[1]) for c in checkpoints(run)]
    assert saved[-1] == best_step and all(logged[s] > logged[best_step] for s in logged if s > best_step)
    info = result(run)
    assert info["best_checkpoint"] == info["last_checkpoint"] == str(run / f"checkpoint-{best_step}")
    assert info["best_metric"] == pytest.approx(logged[best_step])


def weights(state_dict) -> dict:
    return {k: v.detach().cpu() for k, v in state_dict.items()}


def test_the_final_model_is_the_best_checkpoint(model_dir, data, held_out, tmp_path):
    """With --save_strategy steps every evaluation saves; the model the run ends with is the best
    checkpoint's, not the last one's."""
    flags = {"model": str(model_dir), "dataset": [str(data)], "val_dataset": [str(held_out)], "output_dir":
             str(tmp_path / "out"), "per_device_train_batch_size": 2, "report_to": ["none"], "train_type": "full",
             "learning_rate": 1e-2, "eval_steps": 2, "save_strategy": "steps", "max_steps": 12,
             "load_best_model_at_end": True}
    recipe = SftRecipe(SftConfig.from_flat(flags), builtin_host())
    recipe.setup()
    info = recipe.run()
    run = Path(info["run_dir"])
    logged = evals(run)
    best_step = min(logged, key=logged.get)
    assert info["best_checkpoint"] == str(run / f"checkpoint-{best_step}")
    assert info["last_checkpoint"].endswith("checkpoint-12") and best_step != 12
    final = weights(recipe.trainer.model.state_dict())
    best = load_file(str(run / f"checkpoint-{best_step}" / "model.safetensors"))
    last = load_file(str(run / "checkpoint-12" / "model.safetensors"))
    assert set(best) <= set(final)
    assert all(torch.equal(final[k], best[k]) for k in best)
    assert not all(torch.equal(final[k], last[k]) for k in last)


# -- metrics -----------------------------------------------------------------------------------------------


def test_token_accuracy_reaches_the_eval_logs(model_dir, tmp_path):
    """One conversation learned by heart: every reply token ends up predicted (a misaligned shift would not)."""
    train = write_jsonl(tmp_path / "one.jsonl", [ROWS[0]] * 8)
    val = write_jsonl(tmp_path / "val.jsonl", [ROWS[0]])
    run = run_sft(model_dir, train, tmp_path / "out", "--val_dataset", str(val), "--train_type", "full",
                  "--learning_rate", "1e-2", "--max_steps", "30", "--eval_steps", "2", "--save_strategy", "no",
                  "--eval_metric", "acc")
    acc = evals(run, "eval_acc")
    assert sorted(acc) == list(range(2, 31, 2))
    assert acc[2] < 0.5 and acc[30] == 1.0


def test_generated_replies_are_scored_with_rouge_l_and_bleu(model_dir, tmp_path):
    """One conversation learned by heart: its generated reply ends up equal to the reference."""
    row = ROWS[0]
    train = write_jsonl(tmp_path / "one.jsonl", [row] * 8)
    val = write_jsonl(tmp_path / "val.jsonl", [row])
    run = run_sft(model_dir, train, tmp_path / "out", "--val_dataset", str(val), "--train_type", "full",
                  "--learning_rate", "1e-2", "--max_steps", "30", "--eval_steps", "2", "--save_strategy", "no",
                  "--metric", "nlg", "--predict_with_generate", "true")
    rouge, bleu = evals(run, "eval_rouge-l"), evals(run, "eval_bleu")
    assert sorted(rouge) == sorted(bleu) == list(range(2, 31, 2))
    assert rouge[2] < 0.9 and bleu[2] < 0.9
    assert rouge[30] == pytest.approx(1.0) and bleu[30] == pytest.approx(1.0)


# -- every callback still trains ---------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [
    ["--early_stop_interval", "100"],
    ["--neftune_noise_alpha", "5"],
    ["--callbacks", "graceful_exit"],
    ["--callbacks", "perf_log"],
    ["--load_best_model_at_end", "true"],
], ids=["early_stop", "neftune", "graceful_exit", "perf_log", "save_best"])
def test_loss_decreases_with_each_callback(model_dir, data, tmp_path, flags):
    run = run_sft(model_dir, data, tmp_path / "out", "--val_dataset", str(data), "--eval_steps", "5",
                  "--learning_rate", "1e-2", "--max_steps", "20", *flags)
    logged = losses(run)
    assert sorted(logged) == list(range(1, 21))
    first, last = [logged[s] for s in range(1, 6)], [logged[s] for s in range(16, 21)]
    assert sum(last) / 5 < sum(first) / 5 - 0.1

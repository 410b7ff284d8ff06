"""`--dry_run` on tiny models: it reads no weights and writes nothing, and what it says is what the real
run does (the tuned model's parameters, the steps and tokens a run takes, a sane peak memory)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_sft_cli import ROWS, run_sft, write_jsonl

import swiftkit
from swiftkit.cli.main import main
from swiftkit.commands import COMMANDS, build_host, config_from_values
from swiftkit.recipes.sft import SftRecipe
from swiftkit.train.estimate import base_parameter_names, count_parameters

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "import sys; from swiftkit.cli.main import main; sys.exit(main(sys.argv[1:]))"]


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", ROWS * 4)


def dry_run(model_dir, data, out, **flags) -> dict:
    return swiftkit.sft(model=str(model_dir), dataset=[str(data)], output_dir=str(out), report_to=["none"],
                        per_device_train_batch_size=2, dry_run=True, **flags)


def test_a_dry_run_reads_no_weights_and_writes_no_run_folder(tiny_model_dir, data_file, tmp_path):
    model = shutil.copytree(tiny_model_dir("llama", "chatml"), tmp_path / "model")
    (model / "model.safetensors").unlink()  # only config.json and the tokenizer are left
    out = tmp_path / "out"
    plan = dry_run(model, data_file, out)
    assert plan["dry_run"] and plan["parameters"]["trainable"] > 0
    assert plan["memory"]["checkpoint_size_from"] == "config"  # no weight file to measure
    assert plan["schedule"]["total_steps"] == 8
    assert not out.exists()
    # The same command without --dry_run needs the weights: it stops, and leaves no run folder either.
    argv = ["sft", "--model", str(model), "--dataset", str(data_file), "--output_dir", str(out), "--report_to",
            "none", "--max_steps", "1"]
    assert main(argv) == 2
    assert not out.exists()


def _logged_plan(stderr: str) -> dict:
    """The plan a dry run logs as JSON on stderr."""
    return json.loads(next(x for x in stderr.splitlines() if x.startswith("[swiftkit] dry run: ")).split(": ", 1)[1])


def test_the_cli_prints_the_plan_and_logs_it_as_json(tiny_model_dir, data_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data_file),
                 "--output_dir", str(out), "--report_to", "none", "--dry_run"]) == 0
    captured = capsys.readouterr()
    assert "parameters:" in captured.out and "estimated peak memory:" in captured.out and "steps:" in captured.out
    plan = _logged_plan(captured.err)
    assert plan["command"] == "sft" and plan["memory"]["peak_bytes"] > 0
    assert not out.exists()


def _real_model(model_dir, data, out, flags: dict):
    """The model a real run trains, as the sft recipe builds it (weights loaded, tuner applied)."""
    values = {"model": str(model_dir), "dataset": [str(data)], "output_dir": str(out), "report_to": ["none"],
              **flags}
    host = build_host()
    cfg = config_from_values(COMMANDS["sft"], host, values, source="argument")
    recipe = SftRecipe(cfg, host)
    recipe.setup()
    return recipe.model


@pytest.mark.parametrize("flags", [
    {"train_type": "lora"},
    {"train_type": "lora", "use_dora": True, "lora_rank": 4},
    {"train_type": "lora", "target_modules": ["q_proj", "v_proj"], "modules_to_save": ["lm_head"]},
    {"train_type": "full"},
    {"train_type": "freeze", "freeze_trainable_layers": 1},
    {"train_type": "vera"},
    {"train_type": "ia3"},
    {"train_type": "loha"},
], ids=["lora", "dora", "lora-targets-saved-head", "full", "freeze", "vera", "ia3", "loha"])
def test_parameter_counts_are_those_of_the_really_tuned_model(tiny_model_dir, data_file, tmp_path, flags):
    from transformers import AutoModelForCausalLM

    model_dir = tiny_model_dir("llama", "chatml")
    plan = dry_run(model_dir, data_file, tmp_path / "dry", **flags)
    real = _real_model(model_dir, data_file, tmp_path / "real", flags)
    unique = list({id(p): p for p in real.parameters()}.values())
    params = plan["parameters"]
    assert params["trainable"] == sum(p.numel() for p in unique if p.requires_grad)
    assert params["total"] == sum(p.numel() for p in unique)
    base = base_parameter_names(AutoModelForCausalLM.from_pretrained(model_dir))
    assert params == count_parameters(real, base).as_dict()  # the same groups, on the real weights


def test_a_tuner_that_cannot_run_on_meta_tensors_is_counted_by_formula(tiny_model_dir, data_file, tmp_path):
    """LLaMA-Pro checks its copies' values (which meta tensors do not have): its new blocks are counted
    analytically, and the totals are the real tuned model's."""
    model_dir = tiny_model_dir("llama", "chatml")
    flags = {"train_type": "llamapro", "llamapro_num_new_blocks": 2}
    plan = dry_run(model_dir, data_file, tmp_path / "dry", **flags)
    assert plan["model"]["counted"].startswith("analytic")
    assert any("parameter counts: analytic" in note for note in plan["notes"])
    unique = list({id(p): p for p in _real_model(model_dir, data_file, tmp_path / "real", flags).parameters()}.values())
    assert plan["parameters"]["trainable"] == sum(p.numel() for p in unique if p.requires_grad)
    assert plan["parameters"]["total"] == sum(p.numel() for p in unique)


@pytest.mark.parametrize("flags", [
    ["--num_train_epochs", "1"],
    ["--num_train_epochs", "2", "--per_device_train_batch_size", "3", "--gradient_accumulation_steps", "2"],
    ["--num_train_epochs", "1", "--dataloader_drop_last", "true", "--per_device_train_batch_size", "3"],
    ["--num_train_epochs", "1", "--packing", "true", "--max_length", "64"],
    ["--num_train_epochs", "1", "--padding_free", "false"],
    ["--max_steps", "3"],
], ids=["epoch", "accumulation", "drop-last", "packing", "padded", "max-steps"])
def test_steps_and_tokens_are_those_of_a_real_run(tiny_model_dir, tmp_path, flags, capsys):
    model_dir = tiny_model_dir("llama", "chatml")
    data = write_jsonl(tmp_path / "train.jsonl", ROWS * 5)  # 20 rows
    assert main(["sft", "--model", str(model_dir), "--dataset", str(data), "--output_dir", str(tmp_path / "dry"),
                 "--per_device_train_batch_size", "2", "--report_to", "none", *flags, "--dry_run"]) == 0
    plan = _logged_plan(capsys.readouterr().err)
    run = run_sft(model_dir, data, tmp_path / "out", "--save_steps", "1000", *flags)
    result = json.loads((run / "train_result.json").read_text())
    schedule = plan["schedule"]
    assert result["global_step"] == schedule["total_steps"]
    if "--max_steps" not in flags:  # whole epochs: every real token the run trained on
        epochs = float(flags[flags.index("--num_train_epochs") + 1])
        dropped = "--dataloader_drop_last" in flags
        assert (result["train_tokens"] < epochs * schedule["tokens_per_epoch"] if dropped
                else result["train_tokens"] == epochs * schedule["tokens_per_epoch"])


def _rlhf_data(method: str, folder: Path) -> str:
    if method == "dpo":
        return f"{ROOT / 'examples' / 'data' / 'preference_pairs.jsonl'}#6"
    if method == "kto":
        rows = [{"messages": [{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": f"{w}."}],
                 "label": i % 2 == 0} for i, w in enumerate(["sea", "sky", "tree", "stone", "light", "wind"])]
    else:
        rows = [{"messages": [{"role": "user", "content": f"What is {i}+{i}?"}], "solution": str(2 * i)}
                for i in range(6)]
    return str(write_jsonl(folder / f"{method}.jsonl", rows))


@pytest.mark.parametrize("method,flags,steps", [
    ("dpo", {}, 3),
    ("kto", {"num_train_epochs": 2}, 6),
    ("grpo", {"reward_funcs": ["accuracy"], "num_generations": 2, "max_completion_length": 4}, 6),
])
def test_rlhf_dry_run_counts_the_steps_of_a_real_run(tiny_model_dir, tmp_path, method, flags, steps):
    flags = dict(rlhf_type=method, model=str(tiny_model_dir("llama", "chatml")),
                 dataset=[_rlhf_data(method, tmp_path)], per_device_train_batch_size=2, report_to=["none"],
                 save_steps=1000, **flags)
    plan = swiftkit.rlhf(**flags, output_dir=str(tmp_path / "dry"), dry_run=True)
    assert plan["command"] == "rlhf" and plan["model"]["rlhf_type"] == method
    assert plan["parameters"]["trainable"] == plan["parameters"]["groups"]["adapters"]["trainable"] > 0
    assert not (tmp_path / "dry").exists()
    result = swiftkit.rlhf(**flags, output_dir=str(tmp_path / "out"))
    assert result["global_step"] == plan["schedule"]["total_steps"] == steps


def _cli(*argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([*CLI, *argv], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _estimate_and_measure(argv: list[str], out: Path) -> tuple[float, float]:
    """(the dry run's peak estimate, the real run's peak_rss_mb), each in a fresh process, in MiB."""
    plan = _logged_plan(_cli(*argv, "--dry_run").stderr)
    _cli(*argv)
    result = json.loads(next(out.glob("v0-*/train_result.json")).read_text())
    return plan["memory"]["peak_bytes"] / 2**20, result["peak_rss_mb"]


def test_the_memory_estimate_of_a_tiny_run_is_near_its_measured_peak(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS * 4)
    out = tmp_path / "out"
    estimate, measured = _estimate_and_measure(
        ["sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data), "--output_dir", str(out),
         "--max_steps", "2", "--per_device_train_batch_size", "2", "--report_to", "none"], out)
    assert 0.7 < estimate / measured < 1.3, (estimate, measured)


@pytest.mark.slow
@pytest.mark.parametrize("tuner", [[], ["--quant_method", "bnb", "--quant_bits", "4"]], ids=["lora", "qlora"])
def test_the_memory_estimate_of_smollm2_lora_is_within_a_quarter_of_its_measured_peak(tuner, tmp_path):
    """The real SmolLM2-135M, LoRA and QLoRA (4-bit), batch 4 of ~130-token rows (each batch as large as the
    largest the estimate plans for); benchmarks/dry_run_memory.py runs more configurations."""
    rows = [{"messages": [{"role": "user", "content": f"Tell me about number {i}."},
                          {"role": "assistant", "content": " ".join(["sea sky river stone light"] * 12)}]}
            for i in range(16)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "out"
    estimate, measured = _estimate_and_measure(
        ["sft", "--model", "smollm2-135m-instruct", "--dataset", str(data), "--output_dir", str(out),
         "--max_steps", "3", "--per_device_train_batch_size", "4", "--max_length", "512", "--report_to", "none",
         "--save_steps", "1000", *tuner], out)
    assert 0.75 <= estimate / measured <= 1.25, (estimate, measured)


def test_rlhf_counts_a_continued_adapter_and_a_frozen_reference_copy(tiny_model_dir, trained, tmp_path):
    data = [_rlhf_data("dpo", tmp_path)]
    common = dict(rlhf_type="dpo", dataset=data, report_to=["none"], output_dir=str(tmp_path / "dry"), dry_run=True)
    continued = swiftkit.rlhf(adapters=[str(trained)], **common)
    fresh_sft = dry_run(tiny_model_dir("llama", "chatml"), write_jsonl(tmp_path / "t.jsonl", ROWS), tmp_path / "dry")
    assert continued["parameters"] == fresh_sft["parameters"]  # the sft run's adapter: lora r8, all linear
    assert "adapter" in continued["model"]["counted"]

    full = swiftkit.rlhf(model=str(tiny_model_dir("llama", "chatml")), train_type="full", **common)
    base = full["parameters"]["total"] * 4  # float32
    assert full["memory"]["parts"]["weights"] >= full["memory"]["checkpoint_bytes"] + base
    assert any("frozen copy" in note for note in full["notes"])
    assert not (tmp_path / "dry").exists()

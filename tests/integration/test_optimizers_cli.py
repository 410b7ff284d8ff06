"""`swiftkit sft` with --optim, LoRA+, GaLore and LISA end to end on a tiny model: the optimizer the trainer
steps (recorded by a --plugins callback), the learning rates it steps with, resumed runs that match
uninterrupted ones, outputs that load without swiftkit, and flag mistakes that fail before any weights
load."""

from __future__ import annotations

import shutil

import pytest
from test_plugin_runs import plugin_file
from test_sft_cli import ROWS, read_jsonl, run_sft, write_jsonl

from swiftkit.cli.main import main
from swiftkit.train.lisa import lisa_sample

RECORDER = '''
import json
import swiftkit
from transformers import TrainerCallback

class RecordOptimizer(TrainerCallback):
    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the real one
        row = {"step": state.global_step, "class": type(inner).__module__ + "." + type(inner).__name__,
               "defaults": {k: v for k, v in inner.defaults.items() if isinstance(v, (int, float, bool, tuple))},
               "groups": [{"name": g.get("name"), "lr": g["lr"], "rank": g.get("rank"), "size": len(g["params"])}
                          for g in inner.param_groups]}
        with open(OUT, "a") as f:
            f.write(json.dumps(row) + "\\n")

@swiftkit.hookimpl
def swiftkit_choice_names(kind):
    return ["record_optimizer"] if kind == "callback" else []

@swiftkit.hookimpl
def swiftkit_get_callback(name, config):
    return RecordOptimizer() if name == "record_optimizer" else None
'''


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", ROWS * 4)


@pytest.fixture
def recorded(tmp_path):
    """``(flags that add the recording callback, a function reading what it recorded)``."""
    out = tmp_path / "optimizer.jsonl"
    plugin = plugin_file(tmp_path, "record.py", f"OUT = {str(out)!r}\n" + RECORDER)
    return ["--plugins", str(plugin), "--callbacks", "record_optimizer"], lambda: read_jsonl(out)


@pytest.mark.parametrize(("flags", "cls", "defaults"), [
    (["--optim", "adamw_torch_fused", "--adam_beta1", "0.8", "--adam_beta2", "0.95", "--adam_epsilon", "1e-6"],
     "torch.optim.adamw.AdamW", {"betas": [0.8, 0.95], "eps": 1e-6, "fused": True}),
    (["--optim", "sgd", "--optim_args", "momentum=0.9,nesterov=True"], "torch.optim.sgd.SGD",
     {"momentum": 0.9, "nesterov": True}),
    (["--optim", "lion_8bit"], "bitsandbytes.optim.lion.Lion", {"betas": [0.9, 0.999]}),
    (["--optim", "adafactor"], "transformers.optimization.Adafactor", {"relative_step": False}),
])
def test_optim_and_its_flags_reach_the_optimizer_the_trainer_steps(tiny_model_dir, data_file, tmp_path, recorded,
                                                                     flags, cls, defaults):
    record, rows = recorded
    run_sft(tiny_model_dir("llama", "chatml"), data_file, tmp_path / "out", "--max_steps", "2", *record, *flags)
    last = rows()[-1]
    assert last["step"] == 2 and last["class"] == cls
    assert {k: last["defaults"][k] for k in defaults} == defaults


def test_lorap_ratio_holds_at_every_step_of_the_schedule(tiny_model_dir, data_file, tmp_path, recorded):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    record, rows = recorded
    model_dir = tiny_model_dir("llama", "chatml")
    run = run_sft(model_dir, data_file, tmp_path / "out", "--max_steps", "6", "--lorap_lr_ratio", "8",
                  "--lr_scheduler_type", "cosine", "--warmup_ratio", "0.34", *record)
    steps = rows()
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    base_rates = []
    for row in steps:
        by_name = {g["name"]: g for g in row["groups"]}
        assert set(by_name) == {"lora_B", "default"}
        assert by_name["lora_B"]["lr"] == pytest.approx(8 * by_name["default"]["lr"])
        base_rates.append(by_name["default"]["lr"])
    assert max(base_rates) == pytest.approx(1e-3) and len(set(base_rates)) >= 4  # warm-up and decay both ran
    logged = [r["loss"] for r in read_jsonl(run / "logging.jsonl") if "loss" in r]
    assert len(logged) == 6
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), run / "checkpoint-6")  # plain peft


def _resumed_matches_uninterrupted(model_dir, data_file, tmp_path, *flags, capsys=None):
    """Run 4 steps; run again, drop checkpoint-4 and resume from checkpoint-2: step 4's loss must match."""
    common = ["--max_steps", "4", "--save_steps", "2", "--train_type", "full", *flags]
    full = run_sft(model_dir, data_file, tmp_path / "a", *common)
    full_losses = {r["step"]: r["loss"] for r in read_jsonl(full / "logging.jsonl") if "loss" in r}
    part = run_sft(model_dir, data_file, tmp_path / "b", *common)
    shutil.rmtree(part / "checkpoint-4")
    if capsys is not None:
        capsys.readouterr()
    assert main(["sft", "--resume_from_checkpoint", str(part), "--dataset", str(data_file),
                 "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--report_to", "none",
                 "--logging_steps", "1", *common]) == 0
    resumed = {r["step"]: r["loss"] for r in read_jsonl(part / "logging.jsonl") if "loss" in r}
    assert resumed[4] == pytest.approx(full_losses[4], rel=1e-5)
    assert full_losses[4] < full_losses[1]
    return part


def test_galore_trains_full_weights_resumes_exactly_and_saves_plain_weights(tiny_model_dir, data_file, tmp_path,
                                                                            recorded):
    from transformers import AutoModelForCausalLM

    record, rows = recorded
    model_dir = tiny_model_dir("llama", "chatml")
    run = _resumed_matches_uninterrupted(model_dir, data_file, tmp_path, "--optimizer", "galore", "--galore_rank",
                                         "4", "--galore_update_proj_gap", "3", *record)
    last = rows()[-1]
    assert last["class"] == "galore_torch.adamw.AdamW"
    assert sum(g["size"] for g in last["groups"] if g["rank"] == 4) == 14  # 7 projections x 2 layers
    AutoModelForCausalLM.from_pretrained(run / "checkpoint-4")  # plain transformers


def test_optim_galore_adamw_is_the_galore_optimizer(tiny_model_dir, data_file, tmp_path, recorded):
    record, rows = recorded
    run_sft(tiny_model_dir("llama", "chatml"), data_file, tmp_path / "out", "--max_steps", "1", "--train_type",
            "full", "--optim", "galore_adamw", "--galore_rank", "4", "--galore_target_modules", "q_proj", *record)
    groups = rows()[-1]["groups"]
    assert [g["size"] for g in groups if g["rank"] == 4] == [2]


def test_lisa_resumes_with_the_same_layers(tiny_model_dir, data_file, tmp_path, capsys):
    model_dir = tiny_model_dir("llama", "chatml")
    _resumed_matches_uninterrupted(model_dir, data_file, tmp_path, "--lisa_activated_layers", "1",
                                   "--lisa_step_interval", "1", capsys=capsys)
    resumed_log = [line for line in capsys.readouterr().err.splitlines() if "LISA:" in line]
    # the default --seed 42 picks these for intervals 2 and 3 (steps 3 and 4), resumed or not
    assert resumed_log == [f"[swiftkit] LISA: steps {i + 1}-{i + 1} train decoder layers {lisa_sample(42, i, 2, 1)}"
                           for i in (2, 3)]


@pytest.mark.parametrize(("flags", "message"), [
    (["--optim", "adamw_torhc"], "--optim 'adamw_torhc' is not a transformers optimizer (did you mean 'adamw_torch'?)"),
    (["--optim", "galore_adamw_layerwise"], "--optim galore_adamw_layerwise: transformers' layer-wise optimizers"),
    (["--lisa_activated_layers", "1"], "--lisa_activated_layers trains whole decoder layers and needs --train_type "
                                       "full, not lora"),
    (["--lorap_lr_ratio", "16", "--train_type", "full"], "--optimizer lorap (--lorap_lr_ratio) trains LoRA B "
                                                          "matrices faster; --train_type full has none"),
    (["--optimizer", "galore", "--optim", "sgd"], "--optimizer galore runs GaLore's AdamW"),
])
def test_optimizer_flag_mistakes_are_one_line_before_weights_load(tiny_model_dir, data_file, tmp_path, capsys,
                                                                  flags, message):
    out = tmp_path / "out"
    argv = ["sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data_file), "--output_dir",
            str(out), "--report_to", "none", *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"swiftkit sft: error: {message}" in err
    assert "Loading weights" not in err and not out.exists()


def test_an_optim_that_needs_a_missing_package_says_what_to_install(tiny_model_dir, data_file, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("torchao") is not None:
        pytest.skip("torchao is installed here")
    argv = ["sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data_file), "--output_dir",
            str(tmp_path / "out"), "--optim", "adamw_torch_8bit"]
    assert main(argv) == 2
    assert "swiftkit sft: error: --optim adamw_torch_8bit needs torchao: pip install torchao" in \
        capsys.readouterr().err

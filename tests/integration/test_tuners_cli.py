"""Every built-in tuner trains end to end on a tiny llama, and what it saves loads without swiftkit.

Each method runs 20 steps of the sft recipe on 16 short conversations (batch 4): the mean loss of the
last 3 steps must be below that of the first 3 by a margin, and the checkpoint, loaded with plain
peft / transformers on the original (unquantized) base, must reproduce the trained model's logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hosts import HOST
from test_sft_cli import ROWS, read_jsonl, write_jsonl

from swiftkit.cli.main import main
from swiftkit.config import SftConfig
from swiftkit.models.quantization import keep_4bit_trainable_on_cpu
from swiftkit.recipes.sft import SftRecipe

STEPS = 20
# (id, flags, learning rate): small-parameter methods (vera, ia3) need a larger step to move in 20 steps.
METHODS = [
    ("lora", {}, 5e-3),
    ("dora", {"use_dora": True}, 5e-3),
    ("rslora", {"use_rslora": True}, 5e-3),
    ("pissa", {"init_weights": "pissa"}, 5e-3),
    ("olora", {"init_weights": "olora"}, 5e-3),
    ("eva", {"init_weights": "eva"}, 5e-3),
    ("corda", {"init_weights": "corda"}, 5e-3),
    ("qlora4", {"train_type": "qlora"}, 5e-3),
    ("qlora8", {"quant_method": "bnb", "quant_bits": 8}, 5e-3),
    ("qlora4_loftq", {"train_type": "qlora", "init_weights": "loftq"}, 5e-3),
    ("adalora", {"train_type": "adalora", "adalora_tinit": 4, "adalora_tfinal": 8, "adalora_deltaT": 2}, 2e-2),
    ("vera", {"train_type": "vera", "vera_rank": 32}, 5e-2),
    ("boft", {"train_type": "boft"}, 1e-2),
    ("ia3", {"train_type": "ia3"}, 5e-2),
    ("loha", {"train_type": "loha"}, 5e-3),
    ("lokr", {"train_type": "lokr"}, 2e-2),
    ("llamapro", {"train_type": "llamapro", "llamapro_num_new_blocks": 2}, 2e-3),
    ("full_freeze", {"train_type": "full", "freeze_parameters": ["model.embed_tokens"],
                     "freeze_parameters_regex": r"layers\.0\.", "trainable_parameters": ["model.layers.0.mlp"]}, 1e-3),
]
PEFT = {"lora", "dora", "rslora", "pissa", "olora", "eva", "corda", "qlora4", "qlora8", "qlora4_loftq", "adalora", "vera",
        "boft", "ia3", "loha", "lokr"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("tuners") / "train.jsonl", ROWS * 4)


def train(model_dir: Path, data: Path, out: Path, lr: float, **flags):
    """Run the sft recipe in this process; the recipe (its trained ``model``) and the run folder."""
    cfg = SftConfig.from_flat({
        "model": str(model_dir), "dataset": [str(data)], "output_dir": str(out), "max_steps": STEPS,
        "save_steps": STEPS, "per_device_train_batch_size": 4, "learning_rate": lr, "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0, "report_to": ["none"], "logging_steps": 1, "lora_dropout": 0.0, **flags})
    recipe = SftRecipe(cfg, HOST)
    recipe.setup()
    result = recipe.run()
    return recipe, Path(result["run_dir"])


def probe_ids():
    import torch

    return torch.tensor([[5, 17, 42, 99, 7, 3, 64, 12, 88, 30]])


def logits(model, ids):
    import torch

    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.mark.parametrize("method,flags,lr", METHODS, ids=[m[0] for m in METHODS])
def test_method_learns_and_its_output_loads_without_swiftkit(tiny_model_dir, data, tmp_path, method, flags, lr):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model_dir = tiny_model_dir("llama", "chatml")
    recipe, run = train(model_dir, data, tmp_path / "out", lr, **flags)
    losses = [r["loss"] for r in read_jsonl(run / "logging.jsonl") if "loss" in r]
    assert len(losses) == STEPS
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.05, f"{method}: loss {first:.3f} -> {last:.3f}: {losses}"

    ckpt = run / f"checkpoint-{STEPS}"
    ids = probe_ids()
    trained = logits(recipe.model, ids)
    if method in PEFT:
        assert (ckpt / "adapter_config.json").is_file() and not (ckpt / "config.json").is_file()
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        plain = PeftModel.from_pretrained(base, ckpt)
        reloaded = logits(plain, ids)
        if method.startswith("qlora"):
            # Trained on the 4-bit base, loaded on the full-precision one: they differ by the base's
            # quantization error only (see test_qlora_export_merges_into_full_precision_weights).
            assert torch.isfinite(reloaded).all() and (reloaded - trained).abs().max() < 0.5
        else:
            assert torch.allclose(reloaded, trained, atol=1e-4), (reloaded - trained).abs().max()
    else:
        full = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
        assert torch.allclose(logits(full, ids), trained, atol=1e-5)


def test_qlora_records_quantization_and_export_merges_into_full_precision_weights(tiny_model_dir, data, tmp_path):
    """args.json records how the base was quantized; `swiftkit export --qlora_merge full_precision` merges the
    adapter into the full-precision base and writes plain float32 weights; the default (dequantized) merges it
    into the dequantized 4-bit weights it was trained against.

    What is compared (logits on a probe):
    - export vs full-precision base + the adapter in plain peft: the same sum W + BA, merged or not:
      equal up to float rounding (atol 1e-4);
    - the model as trained (4-bit base + adapter) vs the 4-bit base + the saved adapter in plain peft:
      equal (atol 1e-5), so the saved adapter is exactly what trained;
    - export vs the model as trained: they differ by the base's 4-bit rounding error W - Q(W) alone.
      On the untuned base that error moves the logits by ``quant_gap``; the adapter changes the
      activations the error acts on, so the bound is 2x that (measured: 1.3x), and the export must be
      closer to the trained model than the untuned base is (the training is in it).
    """
    import bitsandbytes as bnb
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model_dir = tiny_model_dir("llama", "chatml")
    recipe, run = train(model_dir, data, tmp_path / "out", 5e-3, train_type="qlora")
    args = json.loads((run / "args.json").read_text())
    quant = args["plan"]["quantization"]
    assert quant["quant_method"] == "bnb" and quant["quant_bits"] == 4 and quant["bnb_4bit_quant_type"] == "nf4"
    assert isinstance(recipe.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer, bnb.nn.Linear4bit)

    out = tmp_path / "merged"
    assert main(["export", "--adapters", str(run), "--qlora_merge", "full_precision", "--output_dir", str(out)]) == 0
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    assert type(merged.model.layers[0].self_attn.q_proj) is torch.nn.Linear

    ids = probe_ids()
    full_base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base_logits = logits(full_base, ids)
    on_full = logits(PeftModel.from_pretrained(full_base, run / f"checkpoint-{STEPS}"), ids)
    exported = logits(merged, ids)
    assert torch.allclose(exported, on_full, atol=1e-4)

    q_base = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                                               bnb_4bit_use_double_quant=True))
    # bitsandbytes' CPU inference repack rounds the 4-bit scales to bfloat16; training never repacks
    keep_4bit_trainable_on_cpu(q_base)
    q_logits = logits(q_base, ids)
    trained = logits(recipe.model, ids)
    assert torch.allclose(logits(PeftModel.from_pretrained(q_base, run / f"checkpoint-{STEPS}"), ids), trained,
                          atol=1e-5)
    quant_gap = (q_logits - base_logits).abs().max()
    trained_gap = (exported - trained).abs().max()
    assert 0 < trained_gap <= 2 * quant_gap, (trained_gap, quant_gap)
    assert trained_gap < (base_logits - trained).abs().max()

    # The default merge keeps the base's 4-bit rounding the adapter was trained on: far closer to the trained model.
    deq = tmp_path / "merged-dequantized"
    assert main(["export", "--adapters", str(run), "--output_dir", str(deq)]) == 0
    dequantized_gap = (logits(AutoModelForCausalLM.from_pretrained(deq), ids) - trained).abs().max()
    assert dequantized_gap < trained_gap / 4, (dequantized_gap, trained_gap)


def test_qlora_adapter_infers_on_a_full_precision_base(tiny_model_dir, data, tmp_path):
    """infer/deploy read args.json: a QLoRA run's adapter is applied to the base in full precision."""
    import torch
    from hosts import registries
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from swiftkit.config import InferConfig
    from swiftkit.inference import load_for_inference

    model_dir = tiny_model_dir("llama", "chatml")
    _, run = train(model_dir, data, tmp_path / "out", 5e-3, quant_method="bnb", quant_bits=8)
    ours, _, info = load_for_inference(InferConfig.from_flat({"adapters": [str(run)]}), registries=registries())
    assert info["model_path"] == str(model_dir)
    assert not any("bitsandbytes" in type(m).__module__ for m in ours.modules())
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                                      run / f"checkpoint-{STEPS}")
    assert torch.allclose(logits(ours, probe_ids()), logits(plain, probe_ids()), atol=1e-5)


def test_adalora_prunes_ranks_and_saves_the_pattern(tiny_model_dir, data, tmp_path):
    """The allocation callback ran: the saved config carries a rank pattern at most --adalora_target_r
    on average, below the starting rank, and plain peft loads it."""
    model_dir = tiny_model_dir("llama", "chatml")
    _, run = train(model_dir, data, tmp_path / "out", 2e-2, train_type="adalora", adalora_init_r=8,
                   adalora_target_r=2, adalora_tinit=2, adalora_tfinal=6, adalora_deltaT=1)
    config = json.loads((run / f"checkpoint-{STEPS}" / "adapter_config.json").read_text())
    assert config["total_step"] == STEPS
    ranks = [sum(mask) for mask in config["rank_pattern"].values()]
    assert ranks and sum(ranks) / len(ranks) <= 2 + 1e-9 and max(ranks) < 8


def test_pissa_checkpoint_is_a_plain_lora_of_twice_the_rank(tiny_model_dir, data, tmp_path):
    model_dir = tiny_model_dir("llama", "chatml")
    _, run = train(model_dir, data, tmp_path / "out", 5e-3, init_weights="pissa_niter_4", lora_rank=4)
    config = json.loads((run / f"checkpoint-{STEPS}" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["init_lora_weights"] is True
    assert (run / "initial_adapter" / "adapter_model.safetensors").is_file()
    with pytest.raises(Exception, match="--resume_from_checkpoint"):
        train(model_dir, data, tmp_path / "out", 5e-3, init_weights="pissa_niter_4", lora_rank=4,
              resume_from_checkpoint=str(run))


@pytest.mark.parametrize("flags,message", [
    (["--train_type", "reft"], "pyreft"),
    (["--train_type", "longlora"], "shifted sparse attention"),
    (["--freeze_vit", "false"], "has no vision tower"),
    (["--train_type", "full", "--freeze_parameters", "nope.layer"], "matches no parameter"),
    (["--train_type", "lora", "--init_weights", "loftq"], "--quant_method bnb"),
    (["--train_type", "qlora", "--init_weights", "pissa"], "full-precision weights"),
])
def test_refusals_are_one_line_naming_the_flag(tiny_model_dir, data, tmp_path, capsys, flags, message):
    argv = ["sft", "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(data), "--output_dir",
            str(tmp_path / "out"), "--max_steps", "1", "--report_to", "none", *flags]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1], err[-3:]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("train_type", ["qlora", "ia3"])
def test_dpo_on_an_adapter_tuner_uses_the_adapters_off_reference(tiny_model_dir, tmp_path, train_type):
    """Any adapter tuner (not only lora) gives DPO its reference by switching the adapters off: no copy
    of the (here 4-bit) base; the implicit reward margin starts at 0 and widens."""
    from test_rlhf_cli import pair_rows

    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    out = tmp_path / "out"
    assert main(["rlhf", "--rlhf_type", "dpo", "--train_type", train_type, "--model",
                 str(tiny_model_dir("llama", "chatml")), "--dataset", str(pairs), "--output_dir", str(out),
                 "--per_device_train_batch_size", "8", "--learning_rate", "2e-2", "--max_steps", "6",
                 "--save_steps", "6", "--report_to", "none", "--logging_steps", "1", "--lora_dropout", "0"]) == 0
    run = next(out.glob("v0-*"))
    margins = json.loads((run / "train_result.json").read_text())["signals"]["rewards/margins"]
    assert abs(margins["first"]) < 1e-4 and margins["last"] > margins["first"], margins
    plan = json.loads((run / "args.json").read_text())["plan"]
    assert plan["method"]["reference"] == "the policy with its adapters switched off"
    assert (plan["quantization"] is not None) == (train_type == "qlora")


def test_dpo_continues_a_qlora_adapter_on_the_4bit_base(tiny_model_dir, data, tmp_path):
    """rlhf --adapters RUN --train_type qlora: the QLoRA adapter trains on, on a 4-bit base again."""
    from test_rlhf_cli import pair_rows

    model_dir = tiny_model_dir("llama", "chatml")
    _, sft_run = train(model_dir, data, tmp_path / "sft", 5e-3, train_type="qlora")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    out = tmp_path / "dpo"
    assert main(["rlhf", "--rlhf_type", "dpo", "--adapters", str(sft_run), "--train_type", "qlora", "--dataset",
                 str(pairs), "--output_dir", str(out), "--per_device_train_batch_size", "8", "--learning_rate", "1e-2",
                 "--max_steps", "4", "--save_steps", "4", "--report_to", "none", "--logging_steps", "1"]) == 0
    run = next(out.glob("v0-*"))
    margins = json.loads((run / "train_result.json").read_text())["signals"]["rewards/margins"]
    # policy and reference start equal; the 4-bit kernels round the two passes apart by ~2e-4
    assert abs(margins["first"]) < 1e-3 and margins["last"] > margins["first"] + 0.1, margins
    args = json.loads((run / "args.json").read_text())
    assert args["plan"]["quantization"]["quant_bits"] == 4 and args["model"] == str(model_dir)

"""load_for_inference: checkpoints from training load like plain peft/transformers would load them."""

from __future__ import annotations

import json
import shutil

import pytest
from hosts import registries

from swiftkit.config import InferConfig
from swiftkit.core.checkpoints import CheckpointError
from swiftkit.inference import InferError, load_for_inference

CHAT = [{"role": "user", "content": "Hello! How can I help you today?"}]


def prompt_tensor(folder, messages=CHAT):
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    return torch.tensor([ids])


def logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits


def reference_peft(tiny, ckpt):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), str(ckpt)).eval()


def test_adapters_alone_load_base_and_adapter_like_plain_peft(tiny, lora_ckpt):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, template, info = load_for_inference(InferConfig.from_flat({"adapters": [str(lora_ckpt)]}), registries=registries())
    ids = prompt_tensor(tiny)
    expected = logits(reference_peft(tiny, lora_ckpt), ids)
    assert isinstance(model, PeftModel) and not model.training
    torch.testing.assert_close(logits(model, ids), expected, rtol=0, atol=0)
    base = logits(AutoModelForCausalLM.from_pretrained(tiny).eval(), ids)
    assert (base - expected).abs().max() > 1e-2  # the adapter really changes the outputs
    assert info["model_path"] == str(tiny.resolve())
    assert info["adapters"] == [str(lora_ckpt)] and not info["merged"]
    assert info["train_args_path"] == str(lora_ckpt / "args.json")
    assert template.encode_prompt(CHAT) == ids[0].tolist()


def test_merge_lora_gives_the_same_logits(tiny, lora_ckpt):
    import torch
    from peft import PeftModel

    cfg = InferConfig.from_flat({"adapters": [str(lora_ckpt)], "merge_lora": True})
    model, _, info = load_for_inference(cfg, registries=registries())
    assert not isinstance(model, PeftModel) and info["merged"]
    assert not any("lora_" in n for n, _ in model.named_parameters())
    ids = prompt_tensor(tiny)
    torch.testing.assert_close(logits(model, ids), logits(reference_peft(tiny, lora_ckpt), ids), rtol=1e-4, atol=1e-5)


def test_two_adapters_are_applied_one_after_the_other(tiny, lora_ckpt, make_lora_run):
    import torch
    from peft import PeftModel

    second = make_lora_run(seed=2)
    model, _, info = load_for_inference(InferConfig.from_flat({"adapters": [str(lora_ckpt), str(second)]}), registries=registries())
    assert info["merged"] and info["adapters"] == [str(lora_ckpt), str(second)]
    expected = PeftModel.from_pretrained(reference_peft(tiny, lora_ckpt).merge_and_unload(), str(second))
    ids = prompt_tensor(tiny)
    torch.testing.assert_close(logits(model, ids), logits(expected.eval(), ids), rtol=1e-4, atol=1e-5)


def test_settings_come_from_args_json_unless_set_explicitly(make_lora_run):
    ckpt = make_lora_run(args={"system": "You are Nova.", "max_length": 77})
    _, template, info = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=registries())
    assert template.system == "You are Nova." and info["settings"]["max_length"] == 77
    assert "You are Nova." in template.decode(template.encode_prompt(CHAT))

    cfg = InferConfig.from_flat({"adapters": [str(ckpt)], "system": "You are Vega.", "max_length": 99})
    _, template, info = load_for_inference(cfg, registries=registries())
    assert template.system == "You are Vega." and info["settings"]["max_length"] == 99


def test_an_explicit_flag_equal_to_its_default_beats_args_json(make_lora_run):
    """`--max_length 2048` is the default's value, but the user gave it: it wins over args.json's 77."""
    from swiftkit.config import TemplateArgs

    ckpt = make_lora_run(args={"max_length": 77})
    default = TemplateArgs().max_length
    cfg = InferConfig.from_flat({"adapters": [str(ckpt)], "max_length": default})
    assert cfg.is_given("max_length") and not cfg.is_given("system")
    _, template, info = load_for_inference(cfg, registries=registries())
    assert info["settings"]["max_length"] == template.max_length == default
    from swiftkit.cli.args import config_and_host
    from swiftkit.commands import COMMANDS

    cli_cfg, _ = config_and_host(COMMANDS["infer"], ["--adapters", str(ckpt), "--max_length", str(default)])
    assert load_for_inference(cli_cfg, registries=registries())[2]["settings"]["max_length"] == default


def test_tokenizer_and_chat_template_come_from_the_checkpoint(tiny, make_lora_run):
    from transformers import AutoTokenizer

    ckpt = make_lora_run()
    tok = AutoTokenizer.from_pretrained(ckpt)
    tok.chat_template = tok.chat_template.replace("<|im_start|>", "<|im_start|><|im_start|>")
    tok.save_pretrained(ckpt)
    _, template, info = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=registries())
    assert info["tokenizer_path"] == str(ckpt.resolve())
    expected = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert template.encode_prompt(CHAT) == expected != prompt_tensor(tiny)[0].tolist()


def test_checkpoint_without_tokenizer_uses_the_base_tokenizer(tiny, make_lora_run):
    ckpt = make_lora_run(tokenizer=False)
    _, template, info = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=registries())
    assert info["tokenizer_path"] == str(tiny.resolve())
    assert template.encode_prompt(CHAT) == prompt_tensor(tiny)[0].tolist()


def test_run_directory_means_its_last_checkpoint(make_lora_run):
    ckpt = make_lora_run()
    run = ckpt.parent
    shutil.copytree(ckpt, run / "checkpoint-12")
    shutil.copytree(ckpt, run / "checkpoint-9")
    _, _, info = load_for_inference(InferConfig.from_flat({"adapters": [str(run)]}), registries=registries())
    assert info["adapters"] == [str(run / "checkpoint-12")]


def test_missing_args_json_needs_model(tiny, make_lora_run):
    import torch

    ckpt = make_lora_run(with_args=False)
    with pytest.raises(InferError, match=r"no args\.json .*pass --model"):
        load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=registries())
    model, _, info = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)], "model": str(tiny)}), registries=registries())
    assert info["train_args_path"] is None
    ids = prompt_tensor(tiny)
    torch.testing.assert_close(logits(model, ids), logits(reference_peft(tiny, ckpt), ids), rtol=0, atol=0)


def test_bad_adapter_paths_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_for_inference(InferConfig.from_flat({"adapters": [str(tmp_path / "nope")]}), registries=registries())
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a LoRA adapter"):
        load_for_inference(InferConfig.from_flat({"adapters": [str(tmp_path / "empty")]}), registries=registries())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "adapter_config.json").write_text("{}")
    (tmp_path / "bad" / "args.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match=r"args\.json: cannot be read as JSON"):
        load_for_inference(InferConfig.from_flat({"adapters": [str(tmp_path / "bad")]}), registries=registries())


def test_full_weights_checkpoint_is_the_model(tiny, tmp_path, write_train_args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = tmp_path / "v0-20261127-120000" / "checkpoint-3"
    model = AutoModelForCausalLM.from_pretrained(tiny)
    with torch.no_grad():
        model.lm_head.weight.add_(0.5)
    model.save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(ckpt)
    (ckpt / "trainer_state.json").write_text('{"global_step": 3}')  # a complete checkpoint
    write_train_args(ckpt.parent, train_type="full")
    loaded, _, info = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=registries())
    assert info["model_path"] == str(ckpt.resolve()) and info["adapters"] == []
    ids = prompt_tensor(tiny)
    torch.testing.assert_close(logits(loaded, ids), logits(model.eval(), ids), rtol=0, atol=0)


def test_model_path_missing_falls_back_to_model(tiny, make_lora_run):
    ckpt = make_lora_run(args={"model_path": "/no/such/dir"})
    args = json.loads((ckpt / "args.json").read_text())
    assert args["model"] == str(tiny)
    _, _, info = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=registries())
    assert info["model_path"] == str(tiny.resolve())

"""Checkpoints shaped like training output, built from a tiny model with plain peft/transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def train_args(base: Path, **overrides) -> dict:
    """args.json as a training run writes it: every SftConfig field plus command and model_path."""
    from swiftkit.config import SftConfig

    flat = SftConfig.from_flat({"model": str(base), "dataset": ["train.jsonl"]}).to_flat()
    flat.update(command="sft", model_path=str(base), template_name="chatml")
    flat.update(overrides)
    return flat


def write_args(folder: Path, args: dict) -> None:
    (folder / "args.json").write_text(json.dumps(args, indent=2), encoding="utf-8")


@pytest.fixture(scope="session")
def tiny(tiny_model_dir) -> Path:
    return tiny_model_dir("llama", "chatml")


@pytest.fixture(scope="session")
def make_lora_run(tiny, tmp_path_factory):
    """Factory: a run dir ``v0-.../checkpoint-5`` holding a perturbed LoRA adapter + tokenizer."""

    def make(*, seed: int = 1, args: dict | None = None, with_args: bool = True, tokenizer: bool = True) -> Path:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        run = tmp_path_factory.mktemp("run") / "v0-20261127-120000"
        ckpt = run / "checkpoint-5"
        base = AutoModelForCausalLM.from_pretrained(tiny)
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
        model.save_pretrained(ckpt)
        (ckpt / "trainer_state.json").write_text('{"global_step": 5}')  # saved to the end, as training does
        if tokenizer:
            AutoTokenizer.from_pretrained(tiny).save_pretrained(ckpt)
        if with_args:
            data = train_args(tiny, train_type="lora", **(args or {}))
            run.mkdir(exist_ok=True)
            write_args(run, data)
            shutil.copy(run / "args.json", ckpt / "args.json")
        return ckpt

    return make


@pytest.fixture(scope="session")
def lora_ckpt(make_lora_run) -> Path:
    return make_lora_run()



@pytest.fixture(scope="session")
def write_train_args(tiny):
    """Factory: write_train_args(folder, **overrides) writes a training-style args.json there."""

    def write(folder: Path, **overrides) -> Path:
        write_args(folder, train_args(tiny, **overrides))
        return folder / "args.json"

    return write

"""Which template a run uses, from --template, the tokenizer's own chat template and the model type."""

from __future__ import annotations

import pytest
from hosts import registries

from swiftkit.config import SftConfig
from swiftkit.templates import TemplateError
from swiftkit.templates.selection import load_tokenizer_and_template


def pick(model_dir, **flags):
    cfg = SftConfig.from_flat({"model": str(model_dir), "dataset": "x.jsonl", **flags})
    return load_tokenizer_and_template(cfg.model, cfg.template, registries())


def test_own_chat_template_wins_without_a_flag(tiny_model_dir):
    resolved, _, template = pick(tiny_model_dir("qwen2", "chatml"))
    assert template.name == "model" and resolved.model_type == "qwen2"


def test_ambiguous_base_model_lists_the_candidate_types(tiny_model_dir):
    folder = tiny_model_dir("llama", None)  # LlamaForCausalLM, no chat template
    with pytest.raises(TemplateError) as err:
        pick(folder)
    msg = str(err.value)
    assert "registered model types with different templates" in msg and "pass --model_type TYPE or --template NAME" in msg
    assert "llama2: " in msg and "default: " in msg and len(msg) < 1000
    _, _, template = pick(folder, model_type="chinese_alpaca2")  # a llama type with the llama2 format
    assert template.name == "llama2"
    _, _, template = pick(folder, template="alpaca")
    assert template.name == "alpaca"


def test_candidates_that_agree_on_the_template_need_no_flag(tiny_model_dir):
    resolved, _, template = pick(tiny_model_dir("gpt2", None))
    assert resolved.entry is None and set(resolved.candidates) >= {"gpt2_base"}
    assert template.name == "default"

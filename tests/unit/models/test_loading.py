"""load_model / load_tokenizer: dtype mapping, resolve pass-through, pad token."""

from __future__ import annotations

import pytest
import torch

import swiftkit
from swiftkit.models import (
    ModelNotFoundError,
    load_model,
    load_tokenizer,
    resolve_dtype,
    resolve_model,
)


def test_dtype_names_map_to_torch_dtypes():
    if not torch.cuda.is_available():
        assert resolve_dtype("auto") is torch.float32
    for names, dtype in [
        (("float32", "fp32", "FLOAT32"), torch.float32),
        (("bfloat16", "bf16"), torch.bfloat16),
        (("float16", "fp16", "half"), torch.float16),
    ]:
        for name in names:
            assert resolve_dtype(name) is dtype, name
    assert resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(
        ValueError, match=r"unknown torch_dtype 'bfloat61' \(did you mean 'bfloat16'\?\)"
    ):
        resolve_dtype("bfloat61")


@pytest.mark.parametrize(
    "dtype, expected",
    [("auto", torch.float32), ("bf16", torch.bfloat16), ("float16", torch.float16)],
)
def test_load_model_in_the_requested_dtype(tiny_model_dir, model_registry, dtype, expected):
    if dtype == "auto" and torch.cuda.is_available():
        pytest.skip("auto picks a GPU dtype here")
    model = load_model(str(tiny_model_dir("qwen3")), torch_dtype=dtype, registry=model_registry)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert {p.dtype for p in model.parameters()} == {expected}


def test_load_model_accepts_a_resolved_model(tiny_model_dir, model_registry):
    resolved = resolve_model(str(tiny_model_dir("gemma2", "gemma")), registry=model_registry)
    model = load_model(resolved)
    assert model.config.model_type == resolved.model_type == "gemma2"


def test_load_model_without_weights_is_a_clear_error(tiny_model_dir, tmp_path, model_registry):
    (tmp_path / "config.json").write_text((tiny_model_dir("llama") / "config.json").read_text())
    with pytest.raises(ModelNotFoundError, match=r"cannot load the model in .*"):
        load_model(str(tmp_path), registry=model_registry)


def test_load_tokenizer_sets_pad_to_eos_without_new_tokens(
    tokenizer_factory, tmp_path, tiny_model_dir, model_registry
):
    folder = tmp_path / "no-pad"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dir("llama") / "config.json").read_text())
    tok = tokenizer_factory("chatml")
    tok.pad_token = None
    tok.save_pretrained(folder)
    size = len(tok)
    loaded = swiftkit.load_tokenizer(str(folder))
    assert loaded.pad_token == loaded.eos_token == "<|im_end|>"
    assert loaded.pad_token_id == loaded.eos_token_id and len(loaded) == size
    kept = load_tokenizer(str(tiny_model_dir("llama")), registry=model_registry)
    assert kept.pad_token == "<|endoftext|>"  # an existing pad token is left alone

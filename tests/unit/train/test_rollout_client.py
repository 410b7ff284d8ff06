"""How rank 0 asks a rollout server for every rank's completions and hands each rank its own, and the weights a
trainer pushes."""

from __future__ import annotations

import pytest

from swiftkit.inference.rollout_protocol import decode_weights
from swiftkit.train.rollout_client import rank_share, trainable_weights, unique_prompts


def test_groups_of_equal_prompts_are_asked_once_with_n_replies():
    rows = [[1, 2]] * 3 + [[3]] * 3
    assert unique_prompts(rows, 3) == ([[1, 2], [3]], 3)
    # not laid out in whole groups: every row asks for its own reply, still one per row, in order
    assert unique_prompts([[1], [1], [2], [1]], 2) == ([[1], [1], [2], [1]], 1)
    assert unique_prompts([[1], [1], [1]], 2) == ([[1], [1], [1]], 1)


def test_each_rank_gets_the_completions_of_its_own_rows():
    ranks_rows = [[[1], [1]], [[2], [2], [3]], [[4]]]
    completions = ["a1", "a2", "b1", "b2", "c1", "d1"]
    assert [rank_share(completions, ranks_rows, r) for r in range(3)] == [["a1", "a2"], ["b1", "b2", "c1"], ["d1"]]


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama", "chatml"))


def test_a_peft_model_pushes_its_active_adapter_and_a_plain_one_what_trains(tiny_model):
    import copy

    from peft import LoraConfig, get_peft_model

    model = copy.deepcopy(tiny_model)
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("model.layers.1.")
    tensors, meta = decode_weights(trainable_weights(model, step=3))
    assert meta["kind"] == "weights" and meta["step"] == "3"
    assert set(tensors) == {n for n, p in model.named_parameters() if n.startswith("model.layers.1.")}
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    tensors, meta = decode_weights(trainable_weights(peft_model, step=4))
    assert meta["kind"] == "adapter" and meta["adapter_config"]["r"] == 2
    assert sorted(meta["adapter_config"]["target_modules"]) == ["q_proj", "v_proj"]
    assert tensors and all(".lora_A." in k or ".lora_B." in k for k in tensors)
    assert not any(".default." in k for k in tensors)  # peft's saved names, without the adapter's name

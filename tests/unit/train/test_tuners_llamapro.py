"""LLaMA-Pro block expansion: identity at step 0, only the new blocks train, plain transformers reloads it."""

import pytest
from tiny import eval_logits as logits
from tiny import probe_ids as ids

from swiftkit.config import SftConfig
from swiftkit.train.errors import TrainError
from swiftkit.train.llamapro import apply_llamapro, expansion_plan


def config(**flags):
    return SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], "train_type": "llamapro", **flags})


def test_plan_puts_copies_of_each_groups_last_block_after_it():
    assert expansion_plan(4, 2, None) == [(0, False), (1, False), (1, True), (2, False), (3, False), (3, True)]
    assert expansion_plan(4, 2, 1) == [(0, False), (1, False), (2, False), (3, False), (3, True), (3, True)]
    with pytest.raises(TrainError, match="--llamapro_num_groups 3 must divide"):
        expansion_plan(4, 3, None)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_new_blocks_keep_the_output_and_are_all_that_trains(arch, tmp_path):
    import torch
    from tiny import make_tiny_model
    from transformers import AutoModelForCausalLM

    model = make_tiny_model(arch)
    before = logits(model)
    old_layers = list(model.model.layers)
    tuned = apply_llamapro(model, config(llamapro_num_new_blocks=2))
    layers = tuned.model.layers
    assert len(layers) == 4 and tuned.config.num_hidden_layers == 4
    assert [layers[0], layers[2]] == old_layers  # the originals, in order; 1 and 3 are new
    assert (logits(tuned) - before).abs().max() < 1e-5  # float32: identical up to summation order
    assert [layer.self_attn.layer_idx for layer in layers] == [0, 1, 2, 3]
    trainable = {n for n, p in tuned.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.layers.1.", "model.layers.3.")) for n in trainable)
    assert len(trainable) == 2 * sum(1 for _ in layers[1].parameters())
    if getattr(tuned.config, "layer_types", None) is not None:
        assert len(tuned.config.layer_types) == 4

    with torch.no_grad():  # stand-in for training: the new blocks move
        for p in tuned.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    expected = logits(tuned)
    assert (expected - before).abs().max() > 1e-3
    tuned.save_pretrained(tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    assert plain.config.num_hidden_layers == 4
    assert torch.allclose(logits(plain), expected, atol=1e-6)
    # the KV cache is indexed by layer_idx: cached generation equals uncached, in the trained model
    # (renumbered in place) and in the reloaded one
    for m in (tuned, plain):
        cached = m.generate(ids(), max_new_tokens=5, do_sample=False, use_cache=True)
        assert torch.equal(cached, m.generate(ids(), max_new_tokens=5, do_sample=False, use_cache=False))

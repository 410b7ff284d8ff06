"""swiftkit_sdpa: attention per packed sequence gives sdpa's block-masked result, and falls back elsewhere."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.integrations import sdpa_attention

from swiftkit.models.segment_attention import _segments, use_segment_sdpa


def _model(model_type="llama", **extra):
    config = AutoConfig.for_model(model_type, vocab_size=300, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0,
                                  attn_implementation="sdpa", **extra)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def _packed(lengths=(7, 12, 5)):
    ids = torch.randint(1, 300, (1, sum(lengths)), generator=torch.Generator().manual_seed(1))
    pos = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    return ids, pos


def test_segments_follow_the_position_ids():
    assert _segments(torch.tensor([[0, 1, 2, 0, 1, 0]]), 6) == [(0, 3), (3, 5), (5, 6)]
    assert _segments(torch.tensor([[0, 1, 2, 3]]), 4) is None  # one sequence
    assert _segments(torch.tensor([[0, 1], [0, 1]]), 2) is None  # several rows
    assert _segments(None, 3) is None


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_packed_rows_give_sdpa_s_logits_and_gradients_by_sequence(monkeypatch, model_type):
    calls = []

    original = sdpa_attention.sdpa_attention_forward

    def counting(module, query, *args, **kwargs):
        calls.append(query.shape[2])
        return original(module, query, *args, **kwargs)

    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", counting)
    model = _model(model_type)
    ours = copy.deepcopy(model)
    assert use_segment_sdpa(ours) and ours.config._attn_implementation == "swiftkit_sdpa"
    ids, pos = _packed()
    ref = model(input_ids=ids, position_ids=pos, labels=ids, use_cache=False)
    calls.clear()
    got = ours(input_ids=ids, position_ids=pos, labels=ids, use_cache=False)
    assert calls == [7, 12, 5] * 2  # each layer ran SDPA on each sequence, not on the row
    assert torch.allclose(got.logits, ref.logits, atol=1e-5, rtol=1e-5)
    ref.loss.backward(), got.loss.backward()
    for (name, p), q in zip(model.named_parameters(), ours.parameters()):
        assert torch.allclose(q.grad, p.grad, atol=1e-5, rtol=1e-4), name


def test_one_sequence_several_rows_and_generation_use_plain_sdpa():
    model = _model()
    ours = copy.deepcopy(model)
    use_segment_sdpa(ours)
    ids = torch.randint(1, 300, (2, 9), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        assert torch.allclose(ours(input_ids=ids, attention_mask=mask).logits,
                              model(input_ids=ids, attention_mask=mask).logits, atol=1e-6)
        out = ours.generate(ids[:1], max_new_tokens=5, do_sample=False)
        assert torch.equal(out, model.generate(ids[:1], max_new_tokens=5, do_sample=False))


def test_models_not_on_sdpa_keep_their_attention():
    eager = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "llama", vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        attn_implementation="eager"))
    assert not use_segment_sdpa(eager) and eager.config._attn_implementation == "eager"

"""TransformersEngine on a tiny model: exact prompt ids, batch == single, stop tokens, streaming."""

from __future__ import annotations

import pytest
from hosts import templates

from swiftkit.inference import TransformersEngine

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "system", "content": "You are an AI assistant."},
        {"role": "user", "content": "What is the capital of France? Write a poem about the sea."},
    ],
    [
        {"role": "user", "content": "Numbers: 0 1 2"},
        {"role": "assistant", "content": "3 4 5"},
        {"role": "user", "content": "def add(a, b):"},
    ],
]


@pytest.fixture(scope="module")
def engine(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.templates import get_template

    tok = AutoTokenizer.from_pretrained(tiny)
    return TransformersEngine(AutoModelForCausalLM.from_pretrained(tiny).eval(), get_template(tok, registry=templates()))


def reference_ids(engine, messages):
    out = engine.template.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"])


def test_padded_batch_holds_exactly_the_chat_template_ids(engine):
    input_ids, mask = engine._batch([engine.prompt_ids(m) for m in CONVERSATIONS])
    width = input_ids.shape[1]
    for row, m_row, messages in zip(input_ids.tolist(), mask.tolist(), CONVERSATIONS):
        expected = reference_ids(engine, messages)
        pad = width - len(expected)
        assert row[pad:] == expected  # left padding: the prompt ends where generation starts
        assert row[:pad] == [engine.pad_token_id] * pad
        assert m_row == [0] * pad + [1] * len(expected)
    assert min(mask.sum(1).tolist()) < width  # the rows really were padded


def test_greedy_batch_equals_one_by_one(engine):
    batch = engine.generate(CONVERSATIONS, max_new_tokens=12)
    single = [engine.generate([m], max_new_tokens=12)[0] for m in CONVERSATIONS]
    assert batch == single
    assert all(isinstance(r, str) and r for r in batch)


def raw_new_ids(engine, messages, n):
    """Greedy new token ids from a plain argmax loop over full forward passes (no cache, no stop)."""
    import torch

    ids = reference_ids(engine, messages)
    new = []
    with torch.no_grad():
        for _ in range(n):
            logits = engine.model(input_ids=torch.tensor([ids + new])).logits
            new.append(int(logits[0, -1].argmax()))
    return new


@pytest.fixture
def no_stops(engine):
    saved = engine.stop_token_ids
    engine.stop_token_ids = []
    yield engine
    engine.stop_token_ids = saved


def test_reply_is_the_decoded_new_tokens(no_stops):
    engine = no_stops
    new = raw_new_ids(engine, CONVERSATIONS[0], 8)
    assert len(new) == 8
    assert engine.generate([CONVERSATIONS[0]], max_new_tokens=8) == [engine.template.decode(new)]


def test_stop_token_ends_generation(no_stops):
    engine = no_stops
    new = raw_new_ids(engine, CONVERSATIONS[0], 10)
    stop = new[3]
    engine.stop_token_ids = [stop]
    cut = new[: new.index(stop)]
    expected = engine.template.decode(cut)
    assert expected != engine.template.decode(new)
    assert engine.generate([CONVERSATIONS[0]], max_new_tokens=10) == [expected]
    assert "".join(engine.stream(CONVERSATIONS[0], max_new_tokens=10)) == expected


def test_template_stop_tokens_are_used(engine):
    tok = engine.template.tokenizer
    assert tok.convert_tokens_to_ids("<|im_end|>") in engine.stop_token_ids


def test_stream_yields_pieces_that_join_to_the_reply(engine):
    pieces = list(engine.stream(CONVERSATIONS[1], max_new_tokens=12))
    assert len(pieces) > 1
    assert "".join(pieces) == engine.generate([CONVERSATIONS[1]], max_new_tokens=12)[0]


def test_sampling_is_seeded_and_differs_from_greedy(engine):
    import torch

    kw = {"max_new_tokens": 8, "temperature": 1.5, "top_p": 0.95, "top_k": 100, "repetition_penalty": 1.2}
    greedy = engine.generate(CONVERSATIONS[:2], max_new_tokens=8)
    samples = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        samples.append(engine.generate(CONVERSATIONS[:2], **kw))
    assert samples[0] == samples[1]
    assert samples[0] != greedy or samples[2] != greedy

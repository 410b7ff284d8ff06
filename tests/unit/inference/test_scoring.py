"""token_logprobs: every scored token checked against a plain forward pass, batched or not."""

from __future__ import annotations

import pytest
from tiny import make_tiny_model

from swiftkit.inference.scoring import token_logprobs

SEQUENCES = [[5, 17, 42, 99, 7, 3, 64, 12, 88, 30], [11, 250, 3], [7, 7, 7, 7, 401, 2], [19, 20]]


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("llama", vocab_size=512)


def by_hand(model, seq: list[int]):
    """log_softmax rows of one unpadded forward pass: row p predicts token p + 1."""
    import torch

    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([seq])).logits[0].float(), dim=-1)


def test_each_token_gets_its_logprob_argmax_and_top_given_its_prefix(model):
    scored = token_logprobs(model, SEQUENCES, pad_token_id=0, batch_size=1, top=3)
    for seq, scores in zip(SEQUENCES, scored):
        rows = by_hand(model, seq)
        assert [s.token_id for s in scores] == seq[1:]
        for p, score in enumerate(scores):
            row = rows[p]
            assert score.logprob == pytest.approx(row[seq[p + 1]].item(), abs=1e-5)
            assert score.greedy == (int(row.argmax()) == seq[p + 1])
            values, indices = row.topk(3)
            assert [t for t, _ in score.top] == indices.tolist()
            assert [v for _, v in score.top] == pytest.approx(values.tolist(), abs=1e-5)


def test_batched_with_right_padding_equals_one_at_a_time(model):
    alone = token_logprobs(model, SEQUENCES, pad_token_id=0, batch_size=1)
    together = token_logprobs(model, SEQUENCES, pad_token_id=0, batch_size=4)
    pairs = 0
    for a, t in zip(alone, together):
        assert [s.token_id for s in a] == [s.token_id for s in t]
        assert [s.logprob for s in a] == pytest.approx([s.logprob for s in t], abs=1e-5)
        assert [s.greedy for s in a] == [s.greedy for s in t]
        assert all(s.top == () for s in t)
        pairs += len(a)
    assert pairs == sum(len(s) - 1 for s in SEQUENCES)


def test_start_scores_only_the_tail_with_the_same_numbers(model):
    full = token_logprobs(model, SEQUENCES, pad_token_id=0)
    tails = token_logprobs(model, SEQUENCES, pad_token_id=0, starts=[len(s) - 1 for s in SEQUENCES])
    for f, t in zip(full, tails):
        assert len(t) == 1 and t[0].logprob == pytest.approx(f[-1].logprob, abs=1e-5)


def test_a_model_in_training_mode_is_scored_in_eval_mode_and_left_training(model):
    expected = token_logprobs(model, SEQUENCES[:1], pad_token_id=0)
    model.train()
    try:
        again = token_logprobs(model, SEQUENCES[:1], pad_token_id=0)
        assert model.training
    finally:
        model.eval()
    assert [s.logprob for s in again[0]] == [s.logprob for s in expected[0]]


def test_too_long_and_bad_starts_are_refused(model):
    with pytest.raises(ValueError, match="more than the model's context of 512"):
        token_logprobs(model, [[1] * 513], pad_token_id=0)
    with pytest.raises(ValueError, match="start 0 is outside"):
        token_logprobs(model, [[1, 2]], pad_token_id=0, starts=[0])
    assert token_logprobs(model, [[4]], pad_token_id=0) == [[]]

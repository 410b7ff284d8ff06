"""The built-in ``cross_entropy`` loss equals the model's own causal-LM loss."""

from __future__ import annotations

import torch
from tiny import make_tiny_model

from swiftkit.train.losses import cross_entropy, token_cross_entropy


def test_cross_entropy_matches_the_models_own_loss():
    torch.manual_seed(0)
    model = make_tiny_model("llama")
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    labels = ids.clone()
    labels[0, :5] = -100
    labels[1, 8:] = -100
    out = model(input_ids=ids, labels=labels)
    mine = cross_entropy(out, labels)
    assert torch.allclose(mine, out.loss, atol=1e-6)
    count = (labels[:, 1:] != -100).sum()
    assert torch.allclose(cross_entropy(out, labels, num_items_in_batch=count * 2), out.loss / 2, atol=1e-6)


def test_token_cross_entropy_ignores_minus_100_and_divides_by_count():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]]])
    targets = torch.tensor([[0, 0, -100]])
    expected = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log1p(torch.exp(torch.tensor(2.0)))) / 2
    assert torch.allclose(token_cross_entropy(logits, targets), expected)
    assert torch.allclose(token_cross_entropy(logits, targets, num_items_in_batch=4), expected / 2)

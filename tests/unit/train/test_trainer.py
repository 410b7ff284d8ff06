"""The label-only loss equals the model's own causal-LM loss (value and gradients)."""

import pytest
import torch

from swiftkit.inference.scoring import accepts_logits_to_keep
from swiftkit.train.trainer import label_only_loss


def _batch(packed: bool):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 400, (2, 12), generator=g)
    labels = ids.clone()
    labels[:, :5] = -100  # prompt
    labels[1, 10:] = -100  # padding at the end of row 1
    if not packed:
        mask = torch.ones_like(ids)
        mask[1, 10:] = 0
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    # Two sequences packed in one row with position_ids, as the padding-free collator makes them.
    flat_ids = torch.cat([ids[0], ids[1, :10]]).unsqueeze(0)
    flat_labels = torch.cat([labels[0], labels[1, :10]]).unsqueeze(0)
    flat_labels[0, 12] = -100  # separator: no prediction across the boundary
    pos = torch.cat([torch.arange(12), torch.arange(10)]).unsqueeze(0)
    return {"input_ids": flat_ids, "position_ids": pos, "labels": flat_labels}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("packed", [False, True])
def test_label_only_loss_matches_model_loss(arch, packed):
    from tiny import make_tiny_model

    model = make_tiny_model(arch)
    assert accepts_logits_to_keep(model)
    batch = _batch(packed)
    n_items = (batch["labels"][:, 1:] != -100).sum()

    ref = model(**batch, num_items_in_batch=n_items, use_cache=False).loss
    ref.backward()
    ref_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()

    ours, _ = label_only_loss(model, batch, n_items)
    ours.backward()
    our_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]

    assert torch.allclose(ours, ref, atol=1e-6)
    assert len(our_grads) == len(ref_grads)
    for a, b in zip(our_grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_packed_rows_do_not_attend_across_sequences():
    """Packed logits equal each sequence run alone (needs use_cache=False on transformers 5.24)."""
    from tiny import make_tiny_model

    model = make_tiny_model("llama")
    batch = _batch(True)
    ids = batch["input_ids"]
    alone = torch.cat([model(input_ids=ids[:, :12]).logits, model(input_ids=ids[:, 12:]).logits], dim=1)
    keep = torch.arange(ids.shape[1])
    with torch.no_grad():  # in training the head runs fused with the loss and no logits come back
        _, outputs = label_only_loss(model, {**batch, "labels": torch.zeros_like(ids)}, None)
    assert outputs.logits.shape[1] == ids.shape[1] - 1
    assert torch.allclose(outputs.logits, alone[:, keep[:-1]], atol=1e-5)


def test_label_only_loss_without_item_count_is_a_mean():
    from tiny import make_tiny_model

    model = make_tiny_model("llama")
    batch = _batch(False)
    ref = model(**batch).loss
    ours, _ = label_only_loss(model, batch)
    assert torch.allclose(ours, ref, atol=1e-6)

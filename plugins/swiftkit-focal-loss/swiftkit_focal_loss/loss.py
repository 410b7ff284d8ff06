"""Focal cross-entropy for causal LMs, in the ``compute_loss_func`` form ``transformers.Trainer`` takes.

Per labelled token the loss is ``(1 - p_t) ** gamma * CE`` with ``p_t = exp(-CE)`` the probability
of the target token: confident tokens contribute less, so training concentrates on hard ones. With
``gamma = 0`` it is plain cross-entropy.

Normalisation follows ``transformers``' ``ForCausalLMLoss``: the per-token losses are summed and
divided by ``num_items_in_batch`` (labelled tokens across all gradient-accumulation micro-batches)
when the trainer passes it, otherwise averaged over this batch's labelled tokens. That keeps the
gradient of an accumulated step equal to one big batch's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAMMA = 2.0
IGNORE_INDEX = -100


def focal_loss(outputs, labels: torch.Tensor, num_items_in_batch=None, *, gamma: float = GAMMA) -> torch.Tensor:
    """Focal loss of ``outputs["logits"]`` (``(B, T, V)``) against unshifted ``labels`` (``(B, T)``).

    Works for padded batches and for packed ones (``(1, T)`` with ``-100`` where one sequence ends
    and the next begins): the shift is within each row and ``-100`` targets are dropped.
    """
    logits = outputs["logits"]
    targets = labels[..., 1:].to(logits.device).reshape(-1)
    logits = logits[..., :-1, :].reshape(-1, logits.shape[-1])
    keep = targets != IGNORE_INDEX
    ce = F.cross_entropy(logits[keep].float(), targets[keep], reduction="none")
    weight = (1.0 - torch.exp(-ce)) ** gamma if gamma else 1.0
    total = (weight * ce).sum()
    if num_items_in_batch is None:
        return total / keep.sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch

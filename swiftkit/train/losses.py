"""Built-in losses selectable by ``--loss_type`` (the ``compute_loss_func`` contract of transformers).

Without ``--loss_type`` the trainer computes causal-LM cross-entropy with the LM head run only at
labelled positions (see :mod:`swiftkit.train.trainer`). ``cross_entropy`` is the same loss
written against the public loss contract, on full logits: the reference a plugin loss can be
compared with, and a baseline for loss experiments.
"""

from __future__ import annotations


def token_cross_entropy(logits, targets, num_items_in_batch=None):
    """Cross-entropy of ``logits`` (..., V) against ``targets`` (...), summed over targets that are
    not -100 and divided by ``num_items_in_batch`` (default: the number of such targets)."""
    import torch  # defers torch

    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    denom = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum()
    if torch.is_tensor(denom):
        denom = denom.to(loss.device)
    return loss / denom


def cross_entropy(outputs, labels, num_items_in_batch=None):
    """Next-token cross-entropy summed over labelled tokens, divided by ``num_items_in_batch``."""
    logits = outputs.logits[:, :-1, :]
    return token_cross_entropy(logits, labels[:, 1:].to(logits.device), num_items_in_batch)


BUILTIN_LOSSES = {"cross_entropy": cross_entropy}

"""The LM head and the cross-entropy in one autograd step, a chunk of rows at a time.

The label-only loss (:func:`swiftkit.train.trainer.label_only_loss`) still makes a (labelled
positions x vocabulary) float32 logits tensor; cross-entropy keeps its log-softmax for backward,
and backward adds the gradient of the log-softmax and the gradient of the logits beside it: three
such tensors at once, 330 MiB at 550 labelled positions of SmolLM2's 49k vocabulary, on top of
every activation the step keeps. :func:`head_cross_entropy` computes the logits of a chunk of rows,
their loss and, while they are at hand, the gradient the head passes back to its input rows (and
to its weight when that trains), then drops them. A step keeps the gradient of the input rows (the
hidden width, not the vocabulary's) and never more than one chunk's logits: the same matrix
multiplies as the unfused path (forward projection, backward projection), in another order.

The loss is the same sum of per-token cross-entropies divided by the same count; the sum runs by
chunks, so it equals the unfused one up to float32 summation order (a test bounds the difference
at 1e-6 relative, loss and gradients).

It applies where the model's logits are its output embedding's plain product with the final hidden
states: :func:`plain_head` checks that once per model by comparing both on a short probe (a model
that scales or soft-caps its logits, or an adapter on the head, keeps the unfused path).
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch import nn
from torch.nn import functional as F

from swiftkit.train.precision import matmul_dtype

# Rows per chunk: about this many float32 logits at a time (32 MiB).
CHUNK_LOGITS = 1 << 23

_checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _HeadCrossEntropy(torch.autograd.Function):
    """``sum(cross_entropy(hidden @ weight.T, targets)) / denom``, gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, denom):
        rows = max(1, CHUNK_LOGITS // weight.shape[0])
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for start in range(0, hidden.shape[0], rows):
            h, t = hidden[start:start + rows], targets[start:start + rows]
            logits = F.linear(h, weight).float()
            valid = t != -100
            safe = torch.where(valid, t, 0)
            lse = torch.logsumexp(logits, dim=-1)
            total += torch.where(valid, lse - logits.gather(1, safe[:, None]).squeeze(1), 0).sum()
            if grad_hidden is None and grad_weight is None:
                continue
            grad = logits.sub_(lse[:, None]).exp_()  # softmax, in the logits' place
            grad[torch.arange(len(t), device=t.device), safe] -= 1
            grad *= valid[:, None]
            del logits
            grad = grad.to(matmul_dtype(h))
            if grad_hidden is not None:
                grad_hidden[start:start + rows] = grad @ weight.to(grad.dtype)
            if grad_weight is not None:
                grad_weight += (grad.t() @ h.to(grad.dtype)).float()
        ctx.save_for_backward(*(g for g in (grad_hidden, grad_weight) if g is not None))
        ctx.parts = (grad_hidden is not None, grad_weight is not None)
        ctx.denom, ctx.weight_dtype = denom, weight.dtype
        return total / denom

    @staticmethod
    def backward(ctx, grad):
        saved = list(ctx.saved_tensors)
        scale = grad / ctx.denom
        grad_hidden = saved.pop(0).mul_(scale) if ctx.parts[0] else None
        grad_weight = saved.pop(0).mul_(scale).to(ctx.weight_dtype) if ctx.parts[1] else None
        return grad_hidden, grad_weight, None, None


def head_cross_entropy(hidden, weight, targets, num_items_in_batch=None):
    """Cross-entropy of ``hidden @ weight.T`` against ``targets`` (-100: no loss), summed and divided
    by ``num_items_in_batch`` (default: the number of targets), one chunk of rows at a time."""
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1).to(hidden.device)
    denom = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum()
    if torch.is_tensor(denom):
        denom = denom.to(hidden.device, torch.float32)
    return _HeadCrossEntropy.apply(hidden, weight, targets, denom)


@contextlib.contextmanager
def head_input(head):
    """While open, ``head`` records its input (the list yielded) and returns an empty logits tensor."""
    seen: list = []

    def record(x):
        seen.append(x)
        return x.new_empty(*x.shape[:-1], 0)

    head.forward = record
    try:
        yield seen
    finally:
        del head.forward


def plain_head(model, inputs: dict):
    """The model's output embedding when its logits are that layer's plain product with the final
    hidden states (checked once per model on the first two positions of ``inputs``), else None."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is not nn.Linear or head.bias is not None or head.weight.dim() != 2 or head.weight.numel() == 0:
        return None
    if type(head.weight.data) is not torch.Tensor:  # a DTensor shard (FSDP2): the whole weight exists only in forward
        return None
    if model not in _checked:
        _checked[model] = _logits_are_plain(model, head, inputs)
    return head if _checked[model] else None


def _logits_are_plain(model, head, inputs: dict) -> bool:
    probe = {k: v[:1, :2] for k, v in inputs.items() if k in ("input_ids", "position_ids") and torch.is_tensor(v)}
    if "input_ids" not in probe:
        return False
    seen = []
    hook = head.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    was_training = model.training
    model.eval()  # no dropout: the probe draws nothing from the random stream
    try:
        with torch.no_grad():
            logits = model(**probe, use_cache=False).logits
            return len(seen) == 1 and torch.equal(logits.float(), F.linear(seen[0], head.weight).float())
    except Exception:  # a model that cannot run the probe keeps the unfused path
        return False
    finally:
        hook.remove()
        model.train(was_training)

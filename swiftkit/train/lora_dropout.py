"""LoRA dropout without the dropped copy: the dropout and LoRA's A projection in one autograd step.

peft computes ``lora_B(lora_A(dropout(x)))``. In training, ``dropout(x)`` is a new tensor the size of
the layer's input, and autograd keeps two of them per adapted layer until backward: the scaled
random mask (float32, for dropout's gradient) and the dropped input (for the gradient of A). With
LoRA on every linear layer that is eight bytes per input element per adapted layer, about as much
as everything else a step keeps (``benchmarks/sft_vs_trl.py --memory_breakdown``).

:func:`fuse_lora_dropout` makes each plain LoRA layer's A projection apply the dropout itself
(:class:`DroppedLinear`) and turns the layer's dropout into the identity. The fused step keeps the
layer's input (which the frozen base projection keeps anyway, the same storage) and a one-byte
mask, and rebuilds the dropped input in backward. The mask is drawn as ``nn.Dropout`` draws it on
the CPU (``bernoulli_`` of ``1 - p`` over a tensor of the input's shape), so the random stream, the
loss and the gradients are those of peft's own path (a test compares them bit for bit on the CPU).

The parameters keep their names and objects: checkpoints, merging and peft's loading are unchanged,
and outside training the layer is a plain linear layer. Every LoRA layer whose A is a plain linear
layer is fused (peft's linear layers and its bitsandbytes 4/8-bit ones for QLoRA); layers with a
variant (DoRA, ...), embeddings, convolutions and other dropouts are left as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from swiftkit.train.precision import matmul_dtype


def _dropped(x, keep, scale: float):
    """``x`` with dropout's mask applied: ``x * scale`` where kept, zero elsewhere. (Multiplying by the
    bool mask would first copy it to a float tensor of the input's size.)"""
    return torch.where(keep, x * scale, 0)


class _DropThenProject(torch.autograd.Function):
    """``linear(dropout(x, p), weight)`` keeping ``x`` and a bool mask instead of two dropped copies."""

    @staticmethod
    def forward(ctx, x, weight, p: float):
        keep = torch.empty_like(x, dtype=torch.bool).bernoulli_(1 - p)
        dtype = matmul_dtype(x)
        scale = 1.0 / (1.0 - p)
        dropped = _dropped(x, keep, scale).to(dtype)
        out = dropped @ weight.to(dtype).t()
        ctx.save_for_backward(x, keep, weight)
        ctx.scale, ctx.dtype = scale, dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        x, keep, weight = ctx.saved_tensors
        grad = grad.to(ctx.dtype)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _dropped(grad @ weight.to(ctx.dtype), keep, ctx.scale).to(x.dtype)
        if ctx.needs_input_grad[1]:
            dropped = _dropped(x, keep, ctx.scale).to(ctx.dtype)
            grad_w = (grad.reshape(-1, grad.shape[-1]).t() @ dropped.reshape(-1, dropped.shape[-1])).to(weight.dtype)
        return grad_x, grad_w, None


class DroppedLinear(nn.Linear):
    """LoRA's A projection that applies the layer's dropout ``p`` to its input in training."""

    dropout_p: float = 0.0

    def forward(self, x):
        if self.training and self.dropout_p > 0 and torch.is_grad_enabled():
            return _DropThenProject.apply(x, self.weight, self.dropout_p)
        if self.training and self.dropout_p > 0:
            x = nn.functional.dropout(x, self.dropout_p, True)
        return super().forward(x)


def fuse_lora_dropout(model) -> int:
    """Fuse the dropout into A for each plain LoRA linear layer of ``model``; how many were fused."""
    from peft.tuners.lora.layer import LoraLayer  # defers peft

    fused = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name, dropout in list(module.lora_dropout.items()):
            if name not in module.lora_A:
                continue
            a = module.lora_A[name]
            if (name in module.lora_variant or type(a) is not nn.Linear or a.bias is not None
                    or type(dropout) is not nn.Dropout or dropout.p <= 0 or dropout.inplace):
                continue
            a.__class__ = DroppedLinear
            a.dropout_p = float(dropout.p)
            module.lora_dropout[name] = nn.Identity()
            fused += 1
    return fused

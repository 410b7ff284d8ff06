"""Gated MLPs that keep two of their four wide activations for backward.

A SwiGLU block (``down_proj(silu(gate_proj(x)) * up_proj(x))``, the MLP of Llama, Qwen, Mistral,
SmolLM and most of their descendants) leaves four tensors of the intermediate width per token for
backward: the gate's output (for SiLU's gradient), SiLU's output and the up projection's output (for
the product's gradient), and the product (for the gradient of the down projection's LoRA A, or of its
weight in full training). The last two are cheap elementwise functions of the first two.

:func:`lean_gated_mlps` gives each such MLP a forward whose gate is one autograd step keeping only
the gate's and the up projection's outputs (:class:`_SiluGate`), and that stores "recompute from
those two" in place of the product wherever the down projection saves it (a saved-tensor hook
around the down projection only). Backward recomputes SiLU and the product with the same kernels,
so the loss is unchanged and the gradients are bitwise those of the plain module on the CPU (a test
compares them). Memory: two intermediate-width tensors fewer per token and layer, about 300 MiB at
800 tokens for SmolLM2-135M (``benchmarks/sft_vs_trl.py --memory_breakdown``).

Only a step that keeps every activation uses it (under gradient checkpointing a layer keeps nothing
inside its MLP anyway); saved-tensor hooks active around the forward (a memory probe, an offloader)
still see every tensor kept, the two the product is rebuilt from included. An MLP
class is adopted only after its own forward and the lean one agree exactly on a probe input, so a
model whose MLP adds anything else keeps its own forward.
"""

from __future__ import annotations

import types

import torch
from torch import nn
from torch.nn import functional as F


class _SiluGate(torch.autograd.Function):
    """``silu(gate) * up`` keeping ``gate`` and ``up`` only; backward recomputes ``silu(gate)``."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        grad_gate = grad_up = None
        if ctx.needs_input_grad[1]:
            grad_up = grad * F.silu(gate)
        if ctx.needs_input_grad[0]:
            grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad_up


class _Recompute:
    """What a saved-tensor hook keeps instead of the gate's product (or a view of it): the two tensors
    it came from (as the enclosing saved-tensor hooks, if any, packed them) and the view's geometry."""

    __slots__ = ("gate", "up", "size", "stride", "offset")

    def __init__(self, gate, up, view):
        self.gate, self.up = gate, up
        self.size, self.stride, self.offset = view.size(), view.stride(), view.storage_offset()


def _enclosing_hooks():
    """The saved-tensor hooks active around this forward (a memory probe, an offloader), or None."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top(False) if top is not None else None


def _lean_forward(self, x):
    gate, up = self.gate_proj(x), self.up_proj(x)
    if not (self.training and torch.is_grad_enabled()):
        return self.down_proj(self.act_fn(gate) * up)
    product = _SiluGate.apply(gate, up)
    storage = product.untyped_storage().data_ptr()  # the product's own: only it and its views use it
    outer_pack, outer_unpack = _enclosing_hooks() or (lambda t: t, lambda t: t)

    def pack(t):
        if t.untyped_storage().data_ptr() == storage and t.dtype == product.dtype and t.device == product.device:
            return _Recompute(outer_pack(gate), outer_pack(up), t)
        return outer_pack(t)

    def unpack(saved):
        if isinstance(saved, _Recompute):
            again = F.silu(outer_unpack(saved.gate)) * outer_unpack(saved.up)
            return again.as_strided(saved.size, saved.stride, saved.offset)
        return outer_unpack(saved)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        return self.down_proj(product)


def _shaped_like_gated_mlp(module) -> bool:
    return all(isinstance(getattr(module, name, None), nn.Module)
               for name in ("gate_proj", "up_proj", "down_proj", "act_fn"))


def _agrees(module) -> bool:
    """Whether ``module``'s own forward and the lean one give the same output on a probe input, in eval
    mode and in training mode with the same random draws (so a dropout of its own is not skipped)."""
    weight = next((p for p in module.gate_proj.parameters() if p.is_floating_point()), None)
    width = getattr(module.gate_proj, "in_features", None)
    if weight is None or not isinstance(width, int):
        return False
    dtype = weight.dtype if weight.dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.float32
    probe = torch.randn(1, 3, width, generator=torch.Generator().manual_seed(0)).to(weight.device, dtype)
    devices = [weight.device] if weight.device.type == "cuda" else []

    def both():
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            own = module.forward(probe)
            torch.manual_seed(0)
            lean = module.down_proj(_SiluGate.apply(module.gate_proj(probe), module.up_proj(probe)))
        return torch.equal(own, lean)

    was_training = module.training
    try:
        with torch.no_grad():
            signs = torch.linspace(-4, 4, 7, device=weight.device, dtype=dtype)
            if not torch.equal(module.act_fn(signs), F.silu(signs)):
                return False
            module.eval()
            if not both():
                return False
            module.train()
            return both()
    except Exception:  # any MLP that cannot run this probe keeps its own forward
        return False
    finally:
        module.train(was_training)


def lean_gated_mlps(model) -> int:
    """Give every SwiGLU MLP of ``model`` the lean forward; how many were changed."""
    adopted: dict[type, bool] = {}
    changed = 0
    for module in model.modules():
        if not _shaped_like_gated_mlp(module) or "forward" in vars(module):
            continue
        kind = type(module)
        if kind not in adopted:
            adopted[kind] = _agrees(module)
        if adopted[kind]:
            module.forward = types.MethodType(_lean_forward, module)
            changed += 1
    return changed

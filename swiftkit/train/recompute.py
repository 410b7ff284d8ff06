"""--recompute_granularity: which activations a training step keeps for backward and which it recomputes.

- ``full``: every decoder layer keeps only its input and runs again in backward (transformers' gradient
  checkpointing; what ``--gradient_checkpointing true`` means). Least memory, one more forward of
  compute.
- ``selective``: each decoder layer is checkpointed with a policy (torch's selective activation
  checkpointing): the outputs of the large matrix multiplies (the model's own projections) and of the
  fused attention kernels are kept; everything cheap is recomputed in backward from them: norms,
  rotary embeddings, activation functions and gating products, dropout (with the same random mask),
  the residual adds, eager attention's scores and probabilities, and the low-rank products of
  LoRA-style adapters (rank <= :data:`NARROW`). No projection of the base model runs twice.
- ``none``: keep everything autograd saves (the default).

Measured on the 2-core CPU (``benchmarks/sft_vs_trl.py``: SmolLM2-135M LoRA r8, batch 4, 30 steps):
none 105 tokens/s at 4.9 GiB peak RSS, selective 81 at 3.2 GiB, full 82 at 2.6 GiB. On this CPU the
selective policy's per-operator dispatch in Python and the elementwise recomputation (dropout's
random masks included) cost as much as full's second forward, so full is the better trade here;
selective is for accelerators, where elementwise kernels are cheap next to the projections (not yet
measured on one). The losses of all three are the same up to floating-point summation order
(recomputed values are bitwise equal on the CPU; a test checks the gradients).
"""

from __future__ import annotations

import functools

GRANULARITIES = ("selective", "full", "none")

# A matrix multiply whose contracted or output width is at most this is cheap to redo: the rank-r
# halves of LoRA-style adapters, and eager attention's per-head products (head_dim <= 128).
NARROW = 128


def _attention_ops(aten) -> set:
    names = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
             "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
             "_flash_attention_forward", "_efficient_attention_forward")
    return {getattr(aten, name).default for name in names if hasattr(aten, name)}


@functools.cache
def _ops():
    import torch  # defers torch

    aten = torch.ops.aten
    matmuls = {aten.mm.default: 0, aten.bmm.default: 0, aten.addmm.default: 1, aten.baddbmm.default: 1}
    return matmuls, _attention_ops(aten)


def keeps(op, args) -> bool:
    """Whether the selective policy keeps the output of ``op`` applied to ``args`` (else recomputes it)."""
    matmuls, attention = _ops()
    if op in attention:
        return True
    first = matmuls.get(op)
    if first is None:
        return False
    a, b = args[first], args[first + 1]
    return min(a.shape[-1], b.shape[-1]) > NARROW  # contracted width, output width


def _policy(ctx, op, *args, **kwargs):
    from torch.utils.checkpoint import CheckpointPolicy  # defers torch

    return CheckpointPolicy.MUST_SAVE if keeps(op, args) else CheckpointPolicy.PREFER_RECOMPUTE


def _contexts():
    from torch.utils.checkpoint import create_selective_checkpoint_contexts  # defers torch

    return create_selective_checkpoint_contexts(_policy)


def checkpoint_kwargs(granularity: str, options: dict) -> dict | None:
    """``gradient_checkpointing_kwargs`` for transformers' ``gradient_checkpointing_enable`` (None: none)."""
    if granularity == "none":
        return None
    if granularity == "selective":
        return {**options, "use_reentrant": False, "context_fn": _contexts}
    return dict(options)

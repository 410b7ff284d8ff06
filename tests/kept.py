"""One training step of a tiny model, with the bytes autograd keeps for backward (shared by the tests of
the memory-saving training paths)."""

from __future__ import annotations

import torch


def step_keeping(model, tokens: int = 48):
    """Loss, trainable gradients and the bytes autograd keeps (distinct storages, parameters excluded)
    for one step on 2 x ``tokens`` ids; the dropout masks are drawn from seed 1, the same on every path."""
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(1, 300, (2, tokens), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(1)  # the same dropout masks on both paths
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads, sum(kept.values())

"""SDPA over each packed sequence on its own, for padding-free batches on the CPU.

A padding-free batch is one row holding several sequences, told apart by position ids that restart.
transformers' ``sdpa`` then builds a block-diagonal causal mask over the whole row and SDPA computes
every query against every key of the row, masking most of them away: for four sequences of similar
length, four times the attention work that is needed. ``swiftkit_sdpa`` (registered with
transformers' attention and mask interfaces) runs transformers' own ``sdpa_attention_forward`` on each
sequence with ``is_causal`` and no mask, and concatenates the outputs: the same attention, computed
only where it is not masked.

Anything else goes to ``sdpa_attention_forward`` unchanged: several rows, a KV cache (keys longer
than the queries), attention dropout, sliding-window layers, or a row that holds one sequence.
On GPUs, flash-attention's variable-length kernels do the same job (``--attn_impl flash_attn``);
this path is for the CPU, where it is chosen for padding-free training (:func:`use_segment_sdpa`).
"""

from __future__ import annotations

NAME = "swiftkit_sdpa"


def _segments(position_ids, length: int) -> list[tuple[int, int]] | None:
    """The [start, end) of each sequence in a one-row batch (a new one wherever the position ids do not
    go up by one, as transformers tells packed sequences apart), or None when there is only one."""
    if position_ids is None or position_ids.dim() != 2 or position_ids.shape != (1, length):
        return None
    import torch  # defers torch

    row = position_ids[0]
    starts = (torch.diff(row) != 1).nonzero().flatten().add_(1).tolist()
    if not starts:
        return None
    bounds = [0, *starts, length]
    return list(zip(bounds[:-1], bounds[1:]))


def segment_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                         is_causal=None, **kwargs):
    import torch  # defers torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward  # defers transformers

    segments = None
    if (query.shape[0] == 1 and key.shape[2] == query.shape[2] and not dropout
            and getattr(module, "sliding_window", None) is None and getattr(module, "is_causal", True)):
        segments = _segments(kwargs.get("position_ids"), query.shape[2])
    if segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    rest = {k: v for k, v in kwargs.items() if k != "position_ids"}
    outputs = [sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None,
                                      dropout=0.0, scaling=scaling, is_causal=True, **rest)[0]
               for a, b in segments]
    return torch.cat(outputs, dim=1), None


def register() -> str:
    """Register ``swiftkit_sdpa`` with transformers (idempotent); its name."""
    from transformers import AttentionInterface  # defers transformers
    from transformers.masking_utils import (  # defers transformers
        ALL_MASK_ATTENTION_FUNCTIONS,
        AttentionMaskInterface,
        sdpa_mask,
    )

    if NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(NAME, segment_sdpa_forward)
    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def use_segment_sdpa(model) -> bool:
    """Switch ``model`` from ``sdpa`` to ``swiftkit_sdpa`` when it runs on the CPU; whether it did."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if any(p.device.type != "cpu" for p in model.parameters()):
        return False
    try:
        model.set_attn_implementation(register())
    except (ValueError, AttributeError, TypeError):  # a model class that cannot switch keeps sdpa
        return False
    return True

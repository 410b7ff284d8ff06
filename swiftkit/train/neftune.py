"""``neftune`` (``--neftune_noise_alpha A``; the callback name alone means A = 5): NEFTune noise on the
input embeddings while training.

NEFTune (Jain et al., 2023) adds uniform noise in ``[-1, 1] * A / sqrt(L * d)`` to the token embeddings
of a training sequence of ``L`` tokens and hidden size ``d``. transformers' built-in version
(``TrainingArguments.neftune_noise_alpha``) takes ``L`` to be the width of the batch tensor: with
padding-free or packed batches (one row holding every sequence of the batch, swiftkit's default)
that is the whole batch's token count, so the noise shrinks as the batch grows. Here ``L`` is each
sequence's own length, read from the forward call: the attention mask's row sums for padded rows, the
runs of ``position_ids`` restarting at 0 for packed rows. A sequence gets the same noise scale
whatever else shares its batch.

Noise is added only in a training forward: the embedding module in train mode *and* gradients
enabled. Evaluation (eval mode), generation and reference or rollout passes under ``torch.no_grad``
see the plain embeddings. The hooks are attached when training begins and removed when it ends; with
a peft model they sit on the base model's (or the adapter-wrapped) input embedding.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback


def sequence_lengths(batch: int, width: int, position_ids=None, attention_mask=None, device=None):
    """Per token, the length of the sequence it belongs to (a float tensor of shape ``(batch, width)``)."""
    if attention_mask is not None and tuple(attention_mask.shape) == (batch, width):
        lengths = attention_mask.sum(dim=-1, keepdim=True).clamp(min=1)
        return lengths.to(device=device, dtype=torch.float32).expand(batch, width)
    if position_ids is not None and position_ids.dim() == 2 and position_ids.shape[-1] == width:
        starts = (position_ids == 0).expand(batch, width).clone()
        starts[:, 0] = True
        segment = starts.long().cumsum(dim=-1)  # 1, 1, 1, 2, 2, ... within each row
        counts = torch.zeros(batch, width + 1, dtype=torch.long, device=segment.device)
        counts.scatter_add_(1, segment, torch.ones_like(segment))
        return counts.gather(1, segment).to(device=device, dtype=torch.float32)
    return torch.full((batch, width), float(width), device=device)


def attach_neftune(model, alpha: float) -> list:
    """Hook NEFTune noise into ``model``'s input embedding; returns the hook handles (``.remove()`` them)."""
    layout: dict = {}

    def remember_layout(module, args, kwargs):
        layout["position_ids"] = kwargs.get("position_ids")
        layout["attention_mask"] = kwargs.get("attention_mask")

    def add_noise(module, inputs, output):
        position_ids, attention_mask = layout.pop("position_ids", None), layout.pop("attention_mask", None)
        if not (module.training and torch.is_grad_enabled()) or output.dim() != 3:
            return None
        batch, width, hidden = output.shape
        lengths = sequence_lengths(batch, width, position_ids, attention_mask, device=output.device)
        scale = (alpha / torch.sqrt(lengths * hidden)).to(output.dtype).unsqueeze(-1)
        return output + torch.empty_like(output).uniform_(-1.0, 1.0) * scale

    embedding = model.get_input_embeddings()
    return [model.register_forward_pre_hook(remember_layout, with_kwargs=True),
            embedding.register_forward_hook(add_noise)]


class NEFTune(TrainerCallback):
    """Adds NEFTune noise with ``alpha`` to the input embeddings from train begin to train end."""

    def __init__(self, alpha: float = 5.0):
        self.alpha = alpha
        self.handles: list = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._detach()
        if model is not None:
            self.handles = attach_neftune(model, self.alpha)

    def on_train_end(self, args, state, control, **kwargs):
        self._detach()

    def _detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

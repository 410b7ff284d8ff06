"""The LISA trainer callback (see :mod:`swiftkit.train.lisa` for the method, its flags and the sampling)."""

from __future__ import annotations

import sys

from torch import nn
from tqdm.auto import tqdm
from transformers import TrainerCallback

from swiftkit.train.errors import TrainError


def decoder_layers(model):
    """The model's stack of decoder layers: the ``ModuleList`` holding the most parameters."""
    best, best_size = None, 0
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = module, size
    if best is None:
        raise TrainError("LISA (--lisa_activated_layers) found no stack of decoder layers (an nn.ModuleList) in "
                         f"{type(model).__name__}")
    return best


class LisaCallback(TrainerCallback):
    """Freeze all decoder layers but ``active`` ones, anew every ``interval`` steps; ``sample(interval index,
    number of layers)`` says which (sorted indices)."""

    def __init__(self, active: int, interval: int, sample):
        self.active, self.interval, self.pick = active, interval, sample
        self.layers = None
        self.trainable: dict[int, bool] = {}  # id(parameter) -> requires_grad before LISA touched it
        self.current: int | None = None  # the interval whose sample is applied
        self.sample: list[int] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.layers = decoder_layers(model)
        if self.active > len(self.layers):
            raise TrainError(f"--lisa_activated_layers {self.active} exceeds the model's {len(self.layers)} decoder "
                             "layers")
        self.trainable = {id(p): p.requires_grad for p in self.layers.parameters()}
        self.current = None
        self._apply(state.global_step)  # a resumed run starts inside the interval of its step

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        """Leave the model as it was given: every layer as trainable as before training."""
        if self.layers is not None:
            for p in self.layers.parameters():
                p.requires_grad_(self.trainable[id(p)])

    def _apply(self, step: int) -> None:
        interval = step // self.interval
        if interval == self.current:
            return
        self.current = interval
        self.sample = self.pick(interval, len(self.layers))
        chosen = set(self.sample)
        for index, layer in enumerate(self.layers):
            for p in layer.parameters():
                on = index in chosen and self.trainable[id(p)]
                if not on:
                    p.grad = None  # nothing stale reaches the optimizer
                p.requires_grad_(on)
        tqdm.write(f"[swiftkit] LISA: steps {interval * self.interval + 1}-{(interval + 1) * self.interval} train "
                   f"decoder layers {self.sample}", file=sys.stderr)

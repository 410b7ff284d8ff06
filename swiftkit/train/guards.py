"""Stops a run at the first non-finite loss or gradient, and names plugin code that fails.

A loss that returns NaN/inf, or gradients that overflow, would otherwise train on silently
(transformers' ``logging_nan_inf_filter`` even hides the NaN from the logs) and save all-NaN
checkpoints. :class:`NonFiniteGuard` checks the gradient norm before every optimizer step and
raises :class:`~swiftkit.train.errors.TrainError` naming the step and the loss; the step is not
taken, so every checkpoint saved before stays good. ``SwiftTrainer`` checks the loss value itself.

Plugin code called during training (a loss, a callback) runs inside
:meth:`swiftkit.core.plugins.PluginHost.guard`, so an exception there is one line naming the
plugin, its package and what failed.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from swiftkit.train.errors import TrainError


def non_finite_message(what: str, value, step: int, loss_label: str) -> str:
    return (f"{what} is {value} at step {step} (loss: {loss_label}); training stopped before that step's "
            "update, so the checkpoints saved so far are intact")


class NonFiniteGuard(TrainerCallback):
    """Raise before the optimizer step when any gradient is NaN or infinite."""

    def __init__(self, loss_label: str):
        self.loss_label = loss_label

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None] if model is not None else []
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        if not torch.isfinite(norm):
            raise TrainError(non_finite_message("the gradient norm", norm.item(), state.global_step + 1,
                                                self.loss_label))


class GuardedCallback(TrainerCallback):
    """A plugin's trainer callback whose every event runs inside ``host.guard`` (errors name the plugin)."""

    def __init__(self, callback, host, plugin: str, name: str):
        self.callback, self.host, self.plugin, self.name = callback, host, plugin, name


def _guarded_event(event: str):
    def call(self, args, state, control, **kwargs):
        with self.host.guard(self.plugin, f"callback {self.name!r} ({event})"):
            return getattr(self.callback, event)(args, state, control, **kwargs)

    call.__name__ = event
    return call


for _event in [name for name in vars(TrainerCallback) if name.startswith("on_")]:
    setattr(GuardedCallback, _event, _guarded_event(_event))


def guarded_loss(fn, host, plugin: str, name: str):
    """A plugin loss whose exceptions name the plugin (``compute_loss_func`` contract kept)."""

    def loss(outputs, labels, num_items_in_batch=None):
        with host.guard(plugin, f"loss {name!r}"):
            return fn(outputs, labels, num_items_in_batch=num_items_in_batch)

    return loss

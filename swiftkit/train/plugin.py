"""Built-in plugin for the training stage: tuners, optimizers, callbacks, metrics, the default
trainer, losses and reward functions, all answered through the same hooks a plugin uses."""

from __future__ import annotations

from swiftkit.core.hookspecs import hookimpl
from swiftkit.train.builtin_callbacks import BUILTIN_CALLBACKS
from swiftkit.train.losses import BUILTIN_LOSSES
from swiftkit.train.metrics import BUILTIN_METRICS
from swiftkit.train.optimizers import BUILTIN_OPTIMIZERS
from swiftkit.train.rewards import BUILTIN_REWARDS
from swiftkit.train.tuners import BUILTIN_TUNERS


@hookimpl
def swiftkit_get_tuner(name, model, config):
    tuner = BUILTIN_TUNERS.get(name)
    return None if tuner is None else tuner(model, config)


@hookimpl
def swiftkit_choice_names(kind):
    if kind == "tuner":
        return list(BUILTIN_TUNERS)
    if kind == "trainer":
        return ["default"]
    if kind == "loss":
        return list(BUILTIN_LOSSES)
    if kind == "optimizer":
        return list(BUILTIN_OPTIMIZERS)
    if kind == "callback":
        return list(BUILTIN_CALLBACKS)
    if kind == "metrics":
        return list(BUILTIN_METRICS)
    if kind == "lr_scheduler":  # transformers' own schedules, set by name in TrainingArguments
        from transformers import SchedulerType  # defers transformers

        return [s.value for s in SchedulerType]
    return []


@hookimpl
def swiftkit_get_loss(name, config):
    return BUILTIN_LOSSES.get(name)


@hookimpl
def swiftkit_get_optimizer(name, model, config):
    build = BUILTIN_OPTIMIZERS.get(name)
    return None if build is None else build(model, config)


@hookimpl
def swiftkit_get_callback(name, config):
    build = BUILTIN_CALLBACKS.get(name)
    return None if build is None else build(config)


@hookimpl
def swiftkit_get_metrics(name, config):
    build = BUILTIN_METRICS.get(name)
    return None if build is None else build(config)


@hookimpl
def swiftkit_get_trainer(name, config):
    if name != "default":
        return None
    from swiftkit.train.trainer import SwiftTrainer  # defers transformers

    return SwiftTrainer


@hookimpl
def swiftkit_register_reward_funcs(registry):
    for name, fn in BUILTIN_REWARDS.items():
        registry.register(name, fn, source="swiftkit.train.rewards")

"""Built-in plugin for the training stage: tuners, the default trainer, losses and reward functions."""

from __future__ import annotations

from swiftkit.core.hookspecs import hookimpl
from swiftkit.train.losses import BUILTIN_LOSSES
from swiftkit.train.rewards import BUILTIN_REWARDS
from swiftkit.train.tuners import BUILTIN_TUNERS


@hookimpl
def swiftkit_get_tuner(name, model, config):
    tuner = BUILTIN_TUNERS.get(name)
    return None if tuner is None else tuner(model, config.tuner)


@hookimpl
def swiftkit_choice_names(kind):
    if kind == "tuner":

        return list(BUILTIN_TUNERS)
    if kind == "trainer":
        return ["default"]
    if kind == "loss":

        return list(BUILTIN_LOSSES)
    if kind == "lr_scheduler":  # transformers' own schedules, set by name in TrainingArguments
        from transformers import SchedulerType  # defers transformers

        return [s.value for s in SchedulerType]
    return []


@hookimpl
def swiftkit_get_loss(name, config):
    return BUILTIN_LOSSES.get(name)


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

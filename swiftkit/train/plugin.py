"""Built-in plugin for the training stage: tuners and the default trainer, via the public hooks."""

from __future__ import annotations

from swiftkit import hookimpl


@hookimpl
def swiftkit_get_tuner(name, model, config):
    from swiftkit.train.tuners import BUILTIN_TUNERS

    tuner = BUILTIN_TUNERS.get(name)
    return None if tuner is None else tuner(model, config.tuner)


@hookimpl
def swiftkit_get_trainer(name, config):
    if name != "default":
        return None
    from swiftkit.train.trainer import SwiftTrainer

    return SwiftTrainer

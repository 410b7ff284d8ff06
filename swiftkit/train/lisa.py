"""LISA (``--lisa_activated_layers N --lisa_step_interval K``): full fine-tuning where only N sampled
decoder layers train at a time.

LISA (Pan et al., 2024) observes that in full fine-tuning the embeddings and the head change far more
than the decoder layers in between; training all of the former and a few randomly sampled layers,
resampled every K steps, matches full fine-tuning at a fraction of the gradient and optimizer memory.

Every K optimizer steps the callback freezes every decoder layer and unfreezes N of them; what is
outside the decoder layers (embeddings, final norm, head) keeps training throughout. A layer being
frozen has its gradient cleared, and AdamW (like every torch optimizer) skips a parameter whose
gradient is None: frozen layers stay bit-identical, momentum included. The optimizer is built over all
layers before training starts, so a layer's moments are kept while it is frozen and reused when it is
sampled again, and checkpoints hold the state of every layer.

The layers of interval ``i`` (steps ``i*K .. i*K+K-1``) are a function of ``--seed`` and ``i`` alone, so
a run resumed from a checkpoint trains the same layers as one that never stopped.
"""

from __future__ import annotations

import random
from functools import partial

from swiftkit.core.errors import ConfigError


def lisa_sample(seed: int, interval: int, num_layers: int, active: int) -> list[int]:
    """The (sorted) layer indices that train during ``interval``: depends on nothing but the arguments."""
    rng = random.Random(f"lisa:{seed}:{interval}")  # a str seed is hashed with SHA-512: stable across runs
    return sorted(rng.sample(range(num_layers), active))


def build_lisa(config):
    """The ``lisa`` callback from --lisa_activated_layers, --lisa_step_interval and --seed (full training only)."""
    opt = config.optim
    if config.tuner.train_type != "full":
        raise ConfigError(f"--lisa_activated_layers trains whole decoder layers and needs --train_type full, not "
                          f"{config.tuner.train_type}")
    if opt.lisa_activated_layers <= 0:
        raise ConfigError("the lisa callback needs --lisa_activated_layers > 0 (how many decoder layers train at a "
                          "time)")
    from swiftkit.train.lisa_callback import LisaCallback  # defers transformers

    active = opt.lisa_activated_layers
    return LisaCallback(active, opt.lisa_step_interval, partial(lisa_sample, config.training.seed, active=active))

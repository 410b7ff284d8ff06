"""The step ``infer``, ``eval`` and ``deploy`` share: load model + template and build the engine."""

from __future__ import annotations

import sys

from swiftkit.core.choices import choose
from swiftkit.core.errors import ConfigError
from swiftkit.inference.base import ReplyEngine, missing_members
from swiftkit.inference.loading import load_for_inference
from swiftkit.inference.vllm_engine import require_vllm_package


def load_engine(cfg, host, *, adapters: list[str] | None = None, protocol: type = ReplyEngine,
                backend: str | None = None):
    """``(engine, info)``: the model and template as training left them (see
    :func:`~swiftkit.inference.loading.load_for_inference`) in ``--infer_backend``'s engine (``backend``
    when given), which must meet ``protocol`` (:class:`~swiftkit.inference.base.ReplyEngine` for infer and
    eval, :class:`~swiftkit.inference.base.InferEngine` for deploy, ``RolloutEngine`` for rollout)."""
    backend = backend or cfg.generation.infer_backend
    if backend == "vllm":
        require_vllm_package()  # before any weights load
    model, template, info = load_for_inference(cfg, registries=host.registries, adapters=adapters)
    engine = choose(host, "infer_engine", backend, model=model, template=template, config=cfg)
    missing = missing_members(engine, protocol)
    if missing:
        raise ConfigError(f"--infer_backend {backend!r} returned a {type(engine).__name__}, which lacks "
                          f"{', '.join(missing)} of the {protocol.__name__} protocol that `swiftkit {cfg.command}` "
                          "needs (swiftkit.inference.base)")
    print(f"[swiftkit] {cfg.command}: model {info['model_path']}, adapters {info['adapters']}, "
          f"template {info['template']}", file=sys.stderr)
    return engine, info


def seed_sampling(seed: int) -> None:
    """Make sampled replies (temperature > 0) reproducible: ``--data_seed`` seeds torch."""
    import torch  # defers torch

    torch.manual_seed(seed)

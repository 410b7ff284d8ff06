"""The step ``infer``, ``eval`` and ``deploy`` share: load model + template and build the engine."""

from __future__ import annotations

import importlib.util
import sys

from swiftkit.config.inference import VLLM_MISSING
from swiftkit.core.choices import choose
from swiftkit.core.errors import ChoiceError, ConfigError
from swiftkit.inference.base import ReplyEngine, missing_members
from swiftkit.inference.loading import load_for_inference


def check_backend_installed(backend: str) -> None:
    """Fail before any weights load when ``--infer_backend`` names an optional engine whose package
    is missing (looked up without importing it)."""

    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ChoiceError(VLLM_MISSING)


def load_engine(cfg, host, *, adapters: list[str] | None = None, protocol: type = ReplyEngine):
    """``(engine, info)``: the model and template as training left them (see
    :func:`~swiftkit.inference.loading.load_for_inference`) in ``--infer_backend``'s engine, which
    must meet ``protocol`` (:class:`~swiftkit.inference.base.ReplyEngine` for infer and eval,
    :class:`~swiftkit.inference.base.InferEngine` for deploy)."""
    backend = cfg.generation.infer_backend
    check_backend_installed(backend)
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

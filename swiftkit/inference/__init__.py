"""Inference engines: load a model (plus trained adapters) and generate with it.

``load_for_inference`` loads model + template as training left them; ``TransformersEngine`` (and
``VllmEngine``) meet the :class:`~swiftkit.inference.base.InferEngine` protocol that ``infer``,
``eval`` and ``deploy`` use, and the :class:`~swiftkit.inference.base.RolloutEngine` protocol of ``rollout``
(:mod:`swiftkit.inference.rollout_protocol`). Importing this package does not import torch.
"""

from swiftkit.inference.base import Generated, InferEngine, ReplyEngine
from swiftkit.inference.engine import TransformersEngine
from swiftkit.inference.errors import InferError
from swiftkit.inference.loading import load_for_inference

__all__ = ["Generated", "InferEngine", "ReplyEngine", "InferError", "TransformersEngine", "load_for_inference"]

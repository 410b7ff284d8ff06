"""Inference: load a model (plus trained adapters) and chat with it or answer a dataset.

``InferRecipe(cfg).setup(); .run()`` is ``swiftkit infer``; ``load_for_inference`` and
``TransformersEngine`` are the parts. Importing this package does not import torch.
"""

from swiftkit._callable import make_callable
from swiftkit.infer.engine import TransformersEngine
from swiftkit.infer.errors import InferError
from swiftkit.infer.loading import load_for_inference
from swiftkit.infer.recipe import InferRecipe

__all__ = ["InferError", "InferRecipe", "TransformersEngine", "load_for_inference"]

make_callable(__name__)

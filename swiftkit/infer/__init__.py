"""Inference: load a model (plus trained adapters) and chat with it or answer a dataset.

``InferRecipe(cfg).setup(); .run()`` is ``swiftkit infer``; ``load_for_inference`` and
``TransformersEngine`` are the parts. Importing this package does not import torch.
"""

import sys

from swiftkit.infer.engine import TransformersEngine
from swiftkit.infer.errors import InferError
from swiftkit.infer.loading import load_for_inference
from swiftkit.infer.recipe import InferRecipe

__all__ = ["InferError", "InferRecipe", "TransformersEngine", "load_for_inference"]


class _CallablePackage(type(sys)):
    """``swiftkit.infer`` is both this package and the API function ``swiftkit.infer(...)``.

    Importing a subpackage binds it as an attribute of its parent, which would replace the API
    function of the same name; making the package callable keeps ``swiftkit.infer(...)`` working
    whichever was bound last.
    """

    def __call__(self, *args, **kwargs):
        from swiftkit.api import infer

        return infer(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

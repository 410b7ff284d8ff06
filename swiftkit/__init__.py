"""swiftkit: fine-tune, align, infer, evaluate, quantize, export and deploy LLMs from one CLI and API.

``import swiftkit`` is cheap: torch, transformers and friends are imported only by the function
that needs them (the command functions below resolve lazily to :mod:`swiftkit.api`).
"""

from __future__ import annotations

import importlib

from swiftkit.core.hookspecs import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "sft": "swiftkit.api",
    "pt": "swiftkit.api",
    "rlhf": "swiftkit.api",
    "infer": "swiftkit.api",
    "eval": "swiftkit.api",
    "export": "swiftkit.api",
    "quantize": "swiftkit.api",
    "deploy": "swiftkit.api",
    "load_tokenizer": "swiftkit.api",
    "get_template": "swiftkit.api",
    "load_model": "swiftkit.models",
    "preload_allocator": "swiftkit.core.allocator",
}

__all__ = ["__version__", "hookimpl", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'swiftkit' has no attribute {name!r}")

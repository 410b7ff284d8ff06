"""Model resolution (local dir, GGUF artifact, registered name, ModelScope / HF hub, embedded GGUF) and loading.

Importing this package does not import torch or transformers; the loaders import them when called.
"""

from swiftkit.models.artifacts import check_quantized_loadable
from swiftkit.models.errors import ModelNotFoundError
from swiftkit.models.loading import (
    is_vision_checkpoint,
    load_model,
    load_processor,
    load_tokenizer,
    resolve_dtype,
    set_num_threads,
)
from swiftkit.models.registry import ModelEntry, infer_model_type
from swiftkit.models.resolve import ResolvedModel, default_cache_dir, resolve_model

DEFAULT_MODEL = "smollm2-135m-instruct"

__all__ = [
    "DEFAULT_MODEL",
    "ModelEntry",
    "ModelNotFoundError",
    "ResolvedModel",
    "check_quantized_loadable",
    "default_cache_dir",
    "infer_model_type",
    "is_vision_checkpoint",
    "load_model",
    "load_processor",
    "load_tokenizer",
    "resolve_dtype",
    "set_num_threads",
    "resolve_model",
]

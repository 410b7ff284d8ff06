"""Load a resolved model and its tokenizer with plain transformers.

torch and transformers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

from swiftkit.core._compat import mend_llama4_outputs
from swiftkit.core.registry import closest
from swiftkit.models.artifacts import as_plain_model, check_quantized_loadable
from swiftkit.models.attention import attention_implementation
from swiftkit.models.errors import ModelNotFoundError
from swiftkit.models.resolve import ResolvedModel, resolve_model

DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def set_num_threads(num_threads: int) -> None:
    """Apply ``--num_threads`` to torch (0 keeps torch's own choice)."""
    import torch  # defers torch

    if num_threads > 0:
        torch.set_num_threads(num_threads)


def resolve_dtype(name):
    """A ``torch.dtype`` for ``name``; "auto" is float32 on CPU, bfloat16 on CUDA (float16 without bf16)."""
    import torch  # defers torch

    if isinstance(name, torch.dtype):
        return name
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    key = DTYPE_NAMES.get(str(name).lower())
    if key is None:
        raise ValueError(
            f"unknown torch_dtype {name!r}{closest(str(name).lower(), DTYPE_NAMES)}; "
            "choose auto, float32, bfloat16 or float16"
        )
    return getattr(torch, key)


def _resolved(model, resolve_kwargs) -> ResolvedModel:
    return model if isinstance(model, ResolvedModel) else resolve_model(model, **resolve_kwargs)


def load_tokenizer(model, **resolve_kwargs):
    """The tokenizer of ``model`` (a name, path, hub id or ResolvedModel), with a pad token.

    ``trust_remote_code`` (default False) is passed to ``AutoTokenizer``; other keyword arguments
    go to :func:`resolve_model`. A missing pad token is set to the EOS token (no token is added).
    A GGUF artifact's tokenizer (and chat template) is read from its GGUF file.
    """
    from transformers import AutoTokenizer  # defers transformers

    trust_remote_code = resolve_kwargs.pop("trust_remote_code", False)
    resolved = _resolved(model, resolve_kwargs)
    extra = {"gguf_file": resolved.gguf_file} if resolved.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            resolved.path, trust_remote_code=trust_remote_code, **extra
        )
    except OSError as exc:
        raise ModelNotFoundError(f"cannot load a tokenizer from {resolved.path}: {exc}") from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


VISION_CONFIG_KEYS = ("vision_config", "vision_tower_config", "visual", "vision_encoder_config")


def is_vision_checkpoint(resolved) -> bool:
    """Whether the checkpoint's config.json describes a vision encoder (a multimodal model), read without
    loading anything."""
    if getattr(resolved, "gguf_file", None):
        return False
    path = Path(resolved.path) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and any(config.get(key) is not None for key in VISION_CONFIG_KEYS)


def load_processor(model, **resolve_kwargs):
    """The multimodal processor of ``model`` (``AutoProcessor``: its tokenizer and image processor), with a pad
    token; a checkpoint without an image processor is an error naming the folder."""
    from transformers import AutoProcessor  # defers transformers

    trust_remote_code = resolve_kwargs.pop("trust_remote_code", False)
    resolved = _resolved(model, resolve_kwargs)
    try:
        processor = AutoProcessor.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load the multimodal processor of {resolved.path}: {exc}") from exc
    if getattr(processor, "image_processor", None) is None:
        raise ModelNotFoundError(f"{resolved.path} has no image processor (preprocessor_config.json): rows with "
                                 "images need one")
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None and tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


def with_model_class(build, *, scalar_head: bool = False, vision: bool = False):
    """``build(auto_class)`` with the transformers auto class a model loads as: the causal LM, or for a
    multimodal checkpoint without a causal-LM mapping (e.g. Mistral 3) its image-text-to-text class,
    which trains and generates on text alone; with ``scalar_head``, the sequence classifier (a reward
    or value model: the caller asks for one output label)."""
    from transformers import (  # defers transformers
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoModelForSequenceClassification,
    )

    if scalar_head:
        return build(AutoModelForSequenceClassification)
    if vision:  # a multimodal run: the class that takes the images (the causal-LM class of some takes text alone)
        return build(AutoModelForImageTextToText)
    try:
        return build(AutoModelForCausalLM)
    except ValueError as exc:
        if "Unrecognized configuration class" not in str(exc):
            raise
        return build(AutoModelForImageTextToText)


def load_model(model, *, torch_dtype="auto", trust_remote_code: bool = False, scalar_head: bool = False,
               attn_implementation: str | None = None, quantization_config=None, vision: bool = False,
               **resolve_kwargs):
    """The causal LM for ``model`` loaded with ``AutoModelForCausalLM`` in ``torch_dtype`` (for a
    multimodal checkpoint without a causal-LM class, its ``AutoModelForImageTextToText`` class).

    ``vision`` loads a multimodal checkpoint with ``AutoModelForImageTextToText`` (the class that takes images).
    ``scalar_head`` loads ``AutoModelForSequenceClassification`` with one output instead: a reward
    or value model (a new head is initialised when the checkpoint has none).
    ``attn_implementation`` (--attn_impl, checked by :func:`~swiftkit.models.attention.attention_implementation`
    before anything loads) and ``quantization_config`` (a transformers quantization config, e.g.
    ``BitsAndBytesConfig``) are passed to ``from_pretrained`` when given.
    A GGUF artifact (``resolved.gguf_file``) is dequantized into ``torch_dtype`` and returned as a plain
    model; a checkpoint quantized on disk (config.json ``quantization_config``) is checked for its method's
    package before anything loads (:func:`~swiftkit.models.artifacts.check_quantized_loadable`).
    The model stays on the CPU; moving it to a device is the caller's choice.
    """
    attn_implementation = attention_implementation(attn_implementation)  # a kernel this machine lacks fails here
    dtype = resolve_dtype(torch_dtype)
    resolved = _resolved(model, resolve_kwargs)
    kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code)
    if resolved.gguf_file:
        kwargs["gguf_file"] = resolved.gguf_file
    else:
        check_quantized_loadable(resolved.path)  # e.g. a GPTQ folder without gptqmodel: one line, nothing loaded
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if scalar_head:
        kwargs["num_labels"] = 1
    try:
        loaded = with_model_class(lambda auto: auto.from_pretrained(resolved.path, **kwargs), scalar_head=scalar_head,
                                  vision=vision)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot load the model in {resolved.path}: {exc}") from exc
    mend_llama4_outputs(loaded)
    return as_plain_model(loaded) if resolved.gguf_file else loaded

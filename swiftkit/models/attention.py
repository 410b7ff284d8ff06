"""``--attn_impl``: the attention implementation handed to transformers, checked before any weights load.

sdpa, eager and flex_attention run wherever torch runs and pass straight through. The flash-attention
kernels need a CUDA GPU and their package; without either, transformers fails deep inside
``from_pretrained`` (or falls back to downloading kernels), so the check here names what is missing in
one line first. ``flash_attn`` is ms-swift's spelling of ``flash_attention_2``. ``--use_liger_kernel``
(Liger's Triton kernels, CUDA only) is checked the same way.
"""

from __future__ import annotations

import importlib.util

from swiftkit.core.errors import ConfigError

SPELLINGS = {"flash_attn": "flash_attention_2"}
# implementation -> (pip package, transformers' availability check in transformers.utils)
FLASH = {
    "flash_attention_2": ("flash-attn", "is_flash_attn_2_available"),
    "flash_attention_3": ("flash-attn-3", "is_flash_attn_3_available"),
    "flash_attention_4": ("flash-attn-4", "is_flash_attn_4_available"),
}


def attention_implementation(name: str | None) -> str | None:
    """The transformers ``attn_implementation`` for ``--attn_impl name`` (None: transformers' choice); a
    flash-attention kernel this machine cannot run is a one-line ConfigError naming what is missing."""
    if name is None:
        return None
    name = SPELLINGS.get(name, name)
    if name not in FLASH:
        return name
    import torch  # defers torch
    import transformers.utils as tf_utils  # defers transformers

    package, check = FLASH[name]
    if not torch.cuda.is_available():
        raise ConfigError(f"--attn_impl {name} needs a CUDA GPU and this machine has none; use --attn_impl sdpa "
                          "(the default where the model supports it) or eager")
    available = getattr(tf_utils, check, None)
    if available is None or not available():
        raise ConfigError(f"--attn_impl {name} needs the {package} package for this CUDA and torch: pip install "
                          f"{package} (or use --attn_impl sdpa)")
    return name


def check_liger(enabled: bool) -> None:
    """``--use_liger_kernel``: Liger's Triton kernels need a CUDA GPU and the liger-kernel package; a machine
    without either fails here, in one line, before any weights load."""
    if not enabled:
        return
    import torch  # defers torch

    if not torch.cuda.is_available():
        raise ConfigError("--use_liger_kernel needs a CUDA GPU (Liger's kernels are Triton kernels) and this machine "
                          "has none; train without it (the LM head already runs only where a label is)")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError("--use_liger_kernel needs the liger-kernel package: pip install liger-kernel")


def apply_liger(model) -> None:
    """Swap the model's RMSNorm, RoPE, SwiGLU/GeGLU and cross-entropy for Liger's kernels (checked by
    :func:`check_liger` first); an architecture Liger does not know is a ConfigError."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance  # defers liger_kernel (torch, triton)

    try:
        _apply_liger_kernel_to_instance(model=model)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ConfigError(f"--use_liger_kernel: Liger has no kernels for {type(model).__name__}: {exc}") from exc

"""``--attn_impl``: the attention implementation handed to transformers, checked before any weights load.

sdpa, eager and flex_attention run wherever torch runs and pass straight through. The flash-attention
kernels need a CUDA GPU and their package; without either, transformers fails deep inside
``from_pretrained`` (or falls back to downloading kernels), so the check here names what is missing in
one line first. ``flash_attn`` is ms-swift's spelling of ``flash_attention_2``.
"""

from __future__ import annotations

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

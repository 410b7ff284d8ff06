"""Built-in export formats.

``merged``: LoRA adapters merged into the base weights and saved as a plain transformers model
(``config.json``, safetensors, ``generation_config.json``, tokenizer with the training chat
template). ``AutoModelForCausalLM.from_pretrained(dir)`` and ``tokenizer.apply_chat_template``
then reproduce training's prompts, and ``generate`` stops at the template's end-of-turn tokens.

The weights are full precision. An adapter trained on a 4/8-bit base (QLoRA) is merged into the base
loaded unquantized (``swiftkit export`` loads it as ``infer`` does, from the run's args.json, without
a quantization config): W + BA, not Q(W) + BA. A model that arrives here quantized (e.g. a base saved
4-bit) is refused: merging into 4-bit weights would round the adapter away.
"""

from __future__ import annotations

from pathlib import Path

from swiftkit.core.errors import SwiftkitError
from swiftkit.models.quantization import is_quantized


def export_merged(model, tokenizer, output_dir: Path, config) -> None:
    """Save ``model`` (adapters merged) and ``tokenizer`` into ``output_dir``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if is_quantized(base):
        raise SwiftkitError(f"--export_format merged writes full-precision weights, but the base model "
                            f"{getattr(base.config, '_name_or_path', '')!r} is loaded quantized (its config has a "
                            "quantization_config): export onto the full-precision base with --model <its folder>")
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)

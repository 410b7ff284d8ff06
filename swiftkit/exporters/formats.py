"""Built-in export formats.

``merged``: LoRA adapters merged into the base weights and saved as a plain transformers model
(``config.json``, safetensors, ``generation_config.json``, tokenizer with the training chat
template). ``AutoModelForCausalLM.from_pretrained(dir)`` and ``tokenizer.apply_chat_template``
then reproduce training's prompts, and ``generate`` stops at the template's end-of-turn tokens.
"""

from __future__ import annotations

from pathlib import Path


def export_merged(model, tokenizer, output_dir: Path, config) -> None:
    """Save ``model`` (adapters merged) and ``tokenizer`` into ``output_dir``."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)

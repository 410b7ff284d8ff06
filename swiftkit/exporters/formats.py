"""The ``merged`` format: the model with its adapters merged, saved as plain transformers safetensors.

``config.json``, safetensors, ``generation_config.json`` (the template's end-of-turn tokens as
``eos_token_id``) and the tokenizer with the training chat template: ``AutoModelForCausalLM.from_pretrained(dir)``
and ``tokenizer.apply_chat_template`` then reproduce training's prompts, and ``generate`` stops where swiftkit
stops. The weights are full precision; for an adapter trained on a 4/8-bit base see ``--qlora_merge``
(:mod:`swiftkit.exporters.source`).
"""

from __future__ import annotations

from pathlib import Path

from swiftkit.exporters.base import ExportMethod, ExportSource, require_full_precision


def write_merged(source: ExportSource, output_dir: Path) -> None:
    """Save the merged model and its tokenizer into ``output_dir``."""
    require_full_precision(source, "--export_format merged writes")
    source.model.save_pretrained(output_dir, safe_serialization=True)
    source.save_tokenizer(output_dir)


def merged_method() -> ExportMethod:
    return ExportMethod(name="merged", write=write_merged,
                        description="full-precision safetensors with every adapter merged")

"""``--quant_method gguf``: the merged model as one GGUF file (llama.cpp, Ollama, LM Studio), and with
``--to_ollama`` an Ollama Modelfile beside it.

The folder holds ``model-<type>.gguf`` (and ``Modelfile``) and nothing else: no config.json, since the file's own
metadata carries the config, tokenizer and chat template, and ``--model <folder>`` loads the single .gguf in it.
The end-of-sequence id written is the template's first stop token, so llama.cpp stops where training's replies
ended. The model type is known only once config.json is read; the export recipe calls
:func:`check_gguf_supported` then, before the weights load. The writer's stats (tensor types, f16 fallbacks, file
size) are left in ``source.info["gguf"]`` for the export report.
"""

from __future__ import annotations

from pathlib import Path

from swiftkit.config.export import GGUF_TYPES
from swiftkit.core.errors import ConfigError
from swiftkit.exporters.base import ExportMethod, ExportSource
from swiftkit.exporters.gguf_writer import check_gguf_supported, write_gguf
from swiftkit.exporters.ollama import write_modelfile
from swiftkit.exporters.quant_common import local_model_dir

__all__ = ["check_gguf_supported", "gguf_file_name", "gguf_method"]


def gguf_method() -> ExportMethod:
    return ExportMethod(
        name="gguf",
        write=_write,
        check=_check,
        label=lambda config: f"gguf-{config.quantize.gguf_kind}",
        description="One GGUF file (llama.cpp / Ollama) with the tokenizer and chat template inside; 2-D weights "
                    f"as --gguf_type ({', '.join(GGUF_TYPES)}), norms and biases f32; --to_ollama adds a Modelfile.",
    )


def gguf_file_name(kind: str) -> str:
    return f"model-{kind}.gguf"


def _check(config) -> None:
    quantize = config.quantize
    if quantize.gguf_kind not in GGUF_TYPES:
        raise ConfigError(f"--quant_method gguf --quant_bits {quantize.quant_bits} has no GGUF type: --quant_bits 8 "
                          "writes q8_0, 4 writes q4_0, no --quant_bits writes f16; for others pass --gguf_type "
                          f"({', '.join(GGUF_TYPES)})")
    folder = local_model_dir(config)
    if folder is not None:  # an architecture the writer lacks fails here, before any weights load
        from transformers import AutoConfig  # defers transformers

        model_config = AutoConfig.from_pretrained(folder, trust_remote_code=config.model.trust_remote_code)
        check_gguf_supported(model_config.model_type, model_config)
    try:
        import numpy as np  # defers numpy
        from gguf import GGMLQuantizationType, quants  # defers gguf

        quants.quantize(np.zeros((1, 32), dtype=np.float32), GGMLQuantizationType[quantize.gguf_kind.upper()])
    except (ImportError, NotImplementedError) as exc:
        raise ConfigError(f"--quant_method gguf --gguf_type {quantize.gguf_kind} needs a gguf package that writes "
                          f"it: pip install -U gguf ({exc})") from exc


def _write(source: ExportSource, output_dir: Path) -> None:
    kind = source.config.quantize.gguf_kind
    model, template = source.model, source.template
    check_gguf_supported(model.config.model_type, model.config)
    stops = list(getattr(template, "stop_token_ids", None) or [])
    name = gguf_file_name(kind)
    source.info["gguf"] = write_gguf(model, source.tokenizer, Path(output_dir) / name, kind, name=_model_name(source),
                                     eos_token_id=stops[0] if stops else None)
    if source.config.quantize.to_ollama:
        write_modelfile(Path(output_dir), name, template, generation_config=getattr(model, "generation_config", None),
                        context_length=getattr(template, "max_length", None))


def _model_name(source: ExportSource) -> str | None:
    """``general.name``: the first adapter's folder when there is one, else the base model's."""
    adapters = source.info.get("adapters") or []
    where = adapters[0] if adapters else (source.info.get("model_path")
                                          or getattr(source.model.config, "_name_or_path", ""))
    return Path(str(where)).name or None

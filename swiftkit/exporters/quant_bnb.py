"""``--quant_method bnb``: a bitsandbytes 4-bit (nf4/fp4) or 8-bit (LLM.int8) checkpoint.

- ``--quant_bits 4`` (the default): ``--bnb_4bit_quant_type`` nf4 or fp4 in blocks of 64 weights, with
  ``--bnb_4bit_use_double_quant`` quantizing the block scales too; the layers compute in the model's dtype.
- ``--quant_bits 8``: LLM.int8 (int8 weights, one scale per output channel).

The merged model is loaded back with transformers' ``BitsAndBytesConfig`` and saved; config.json carries
the ``quantization_config``, so the folder loads with ``AutoModelForCausalLM.from_pretrained(folder)`` where
bitsandbytes is installed (on a CPU as well as on CUDA). Every ``nn.Linear`` but the output head is quantized.

The saved 4-bit weights are in bitsandbytes' standard layout: bitsandbytes 0.50 repacks a 4-bit layer for its
CPU kernel the first time it runs in eval mode, but nothing runs before the save here, and its own save
undoes such a repack anyway (see :func:`swiftkit.models.quantization.keep_4bit_trainable_on_cpu`).
"""

from __future__ import annotations

from pathlib import Path

from swiftkit.core.errors import ConfigError
from swiftkit.exporters.base import ExportMethod, ExportSource
from swiftkit.exporters.quant_common import load_quantized, require_package, save_quantized
from swiftkit.models.quantization import bnb_config

BNB_BITS = (4, 8)
BNB_DEFAULT_BITS = 4


def bnb_bits(config) -> int:
    """The bit width a bnb export writes: --quant_bits, else 4."""
    bits = config.quantize.quant_bits
    return BNB_DEFAULT_BITS if bits is None else bits


def bnb_label(config) -> str:
    return f"bnb-{config.quantize.bnb_4bit_quant_type}" if bnb_bits(config) == 4 else "bnb-int8"


def check_bnb(config) -> None:
    """bitsandbytes installed and the bit width 4 or 8."""
    bits = bnb_bits(config)
    if bits not in BNB_BITS:
        raise ConfigError(f"--quant_method bnb supports --quant_bits 4 or 8, got {bits}; for 2 or 3 bits use "
                          "--quant_method torchao or gptq")
    require_package("bitsandbytes", "bnb", "qlora")


def bnb_quantization(config) -> dict:
    """The export's bitsandbytes settings in the form :func:`swiftkit.models.quantization.bnb_config` takes."""
    quantize = config.quantize
    return {"quant_method": "bnb", "quant_bits": bnb_bits(config),
            "bnb_4bit_quant_type": quantize.bnb_4bit_quant_type,
            "bnb_4bit_use_double_quant": quantize.bnb_4bit_use_double_quant,
            "bnb_4bit_compute_dtype": None,  # the model's dtype
            "bnb_4bit_quant_storage": None}


def write_bnb(source: ExportSource, output_dir: Path) -> None:
    """Quantize ``source``'s merged model with bitsandbytes and save it (safetensors, tokenizer, generation
    config)."""
    quantization_config = bnb_config(bnb_quantization(source.config), torch_dtype=source.model.dtype)
    model = load_quantized(source, quantization_config)
    save_quantized(model, source, output_dir)


def bnb_method() -> ExportMethod:
    """``--quant_method bnb`` as an :class:`ExportMethod`."""
    return ExportMethod(
        name="bnb",
        write=write_bnb,
        check=check_bnb,
        label=bnb_label,
        description=("bitsandbytes 4-bit (nf4/fp4, optional double quant; default) or 8-bit (LLM.int8) weights; "
                     "loads with transformers + bitsandbytes on CPU or CUDA"),
    )

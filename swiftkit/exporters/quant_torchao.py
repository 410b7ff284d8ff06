"""``--quant_method torchao``: weight-only quantization with torchao that runs and saves on a CPU.

- ``--quant_bits 8`` (the default for torchao): int8 weights, one scale per output channel
  (``Int8WeightOnlyConfig``).
- ``--quant_bits 4|3|2``: signed int4/int3/int2 weights with one scale per ``--group_size`` inputs, or one
  per output channel for ``--group_size -1`` (``IntxWeightOnlyConfig``). torchao 0.18 has one sub-8-bit
  layout that both runs on an x86 CPU and saves as safetensors, ``unpacked_to_int8``: each value takes a
  whole byte, so these files are as large as int8 ones (slightly larger: more scales) and only the precision
  drops. The packed layouts fail here: ``Int4WeightOnlyConfig`` needs the mslk kernels (plain, preshuffled),
  CUDA (tile_packed_to_4d) or an XPU/NPU (plain_int32); the intx opaque layouts are not implemented for this
  path; the CPU ``Int4OpaqueTensor`` quantizes but cannot be saved as safetensors. For a smaller 4-bit file
  use ``--quant_method bnb`` or ``gguf``.

Every ``nn.Linear`` but the output head is quantized; embeddings, norms and the head keep the model's dtype.
The folder loads with ``AutoModelForCausalLM.from_pretrained(folder)`` where torchao is installed.
"""

from __future__ import annotations

from pathlib import Path

from swiftkit.core.errors import ConfigError
from swiftkit.exporters.base import ExportMethod, ExportSource
from swiftkit.exporters.quant_common import (
    check_group_size,
    load_quantized,
    model_skeleton,
    quantized_linears,
    require_package,
    save_quantized,
)

TORCHAO_BITS = (8, 4, 3, 2)
TORCHAO_DEFAULT_BITS = 8  # int4 and below are no smaller on disk with torchao 0.18 on a CPU (module docstring)


def torchao_bits(config) -> int:
    """The bit width a torchao export writes: --quant_bits, else 8."""
    bits = config.quantize.quant_bits
    return TORCHAO_DEFAULT_BITS if bits is None else bits


def torchao_label(config) -> str:
    return f"torchao-int{torchao_bits(config)}"


def check_torchao(config) -> None:
    """torchao installed, the bit width supported and, for a local model, --group_size dividing every
    quantized layer's input size (read from config.json on the meta device, no weights loaded)."""
    bits = torchao_bits(config)
    if bits not in TORCHAO_BITS:
        raise ConfigError(f"--quant_method torchao supports --quant_bits {', '.join(map(str, TORCHAO_BITS))}, "
                          f"got {bits}")
    require_package("torchao", "torchao", "torchao")
    if bits < 8:
        skeleton = model_skeleton(config)
        if skeleton is not None:
            check_group_size(quantized_linears(skeleton), config.quantize.group_size, f"torchao int{bits}")


def torchao_config(bits: int, group_size: int):
    """The torchao config for ``bits`` (see the module docstring)."""
    import torch  # defers torch
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, PerAxis, PerGroup  # defers torchao

    if bits == 8:
        return Int8WeightOnlyConfig()
    granularity = PerAxis(0) if group_size == -1 else PerGroup(group_size)
    return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"), granularity=granularity)


def write_torchao(source: ExportSource, output_dir: Path) -> None:
    """Quantize ``source``'s merged model with torchao and save it (safetensors, tokenizer, generation config)."""
    from transformers import TorchAoConfig  # defers transformers

    quantize = source.config.quantize
    bits = torchao_bits(source.config)
    if bits < 8:
        check_group_size(quantized_linears(source.model), quantize.group_size, f"torchao int{bits}")
    model = load_quantized(source, TorchAoConfig(torchao_config(bits, quantize.group_size)))
    save_quantized(model, source, output_dir)


def torchao_method() -> ExportMethod:
    """``--quant_method torchao`` as an :class:`ExportMethod`."""
    return ExportMethod(
        name="torchao",
        write=write_torchao,
        check=check_torchao,
        label=torchao_label,
        description=("torchao weight-only quantization on CPU: int8 per output channel (default), or "
                     "int4/int3/int2 in groups of --group_size, stored one value per byte (as large as int8 on "
                     "disk); loads with transformers + torchao"),
    )

"""The tensors of a GGUF file: which architectures swiftkit writes, the GGUF name and tensor type of each weight,
and the weight data as the file stores it.

Names come from the ``gguf`` package's own table (``gguf.get_tensor_name_map``), so ``model.layers.3.mlp.up_proj``
becomes ``blk.3.ffn_up``. Two things differ from the transformers checkpoint:

* llama (and mistral, written as llama) rotate query/key features in interleaved pairs in llama.cpp, where
  transformers rotates the first half of each head against the second half; the rows of ``q_proj``/``k_proj``
  (and their biases) are reordered per head so that row ``2i`` is the old row ``i`` and row ``2i + 1`` the old row
  ``i + head_dim / 2``. transformers' GGUF loader undoes exactly this for the llama architecture. qwen2 and qwen3
  use the half-split layout in llama.cpp too and are written unchanged.
* a tied output projection is not written: llama.cpp (and transformers' loader) use ``token_embd`` for it when
  ``output.weight`` is absent.

Tensor types: ``f32`` writes everything in float32; every other type applies to 2-D weight matrices only, while
norms, biases and other 1-D tensors stay float32. A matrix whose rows are not a whole number of the type's blocks
(32 values for the q-types) is written f16 instead and listed in the writer's stats.
"""

from __future__ import annotations

from dataclasses import dataclass

from swiftkit.config.export import GGUF_TYPES
from swiftkit.core.errors import SwiftkitError

# transformers model_type -> GGUF general.architecture
GGUF_ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
# model types whose q/k rows llama.cpp wants in interleaved rotary order
_PERMUTED = {"llama", "mistral"}
# --gguf_type -> (tensor type, general.file_type), both names in the gguf package's enums
_KINDS = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q5_1": ("Q5_1", "MOSTLY_Q5_1"),
    "q5_0": ("Q5_0", "MOSTLY_Q5_0"),
    "q4_1": ("Q4_1", "MOSTLY_Q4_1"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}
assert set(_KINDS) == set(GGUF_TYPES)


class GgufExportError(SwiftkitError):
    """A model, tokenizer or option the GGUF writer cannot turn into a GGUF file."""


def check_gguf_supported(model_type: str, config=None) -> str:
    """The GGUF architecture ``model_type`` is written as; raises :class:`GgufExportError` for one swiftkit cannot
    write. With the model's ``config``, also refuses rotary scaling the writer does not carry over."""
    arch = GGUF_ARCHITECTURES.get(model_type)
    if arch is None:
        raise GgufExportError(
            f"--quant_method gguf: model type {model_type!r} is not supported (swiftkit writes GGUF for "
            f"{', '.join(sorted(GGUF_ARCHITECTURES))}); export --export_format merged and convert that folder with "
            "llama.cpp's convert_hf_to_gguf.py")
    if config is not None:
        rope_theta(config)
    return arch


def check_gguf_type(gguf_type: str) -> str:
    kind = gguf_type.lower()
    if kind not in _KINDS:
        raise GgufExportError(f"GGUF type {gguf_type!r} is not one swiftkit writes ({', '.join(GGUF_TYPES)}); "
                              "k-quants come from llama.cpp's llama-quantize run on an f16 file")
    return kind


def file_type(kind: str):
    import gguf  # defers gguf

    return gguf.LlamaFileType[_KINDS[kind][1]]


def rope_theta(config) -> float:
    """The rotary base of ``config``; raises for rotary scaling (llama3, yarn, linear, ...), which the file would
    not describe."""
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise GgufExportError(
            f"--quant_method gguf: {config.model_type} with rope_type {rope_type!r} is not supported (swiftkit writes "
            "plain rotary embeddings only); convert the merged folder with llama.cpp's convert_hf_to_gguf.py")
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    return float(theta if theta is not None else 10000.0)


@dataclass
class PlannedTensor:
    """One tensor of the file: its GGUF name, the parameter it comes from, its shape (rows, columns), type and
    size in the file, and the head count its rows are interleaved by (None: written as is)."""

    name: str
    source: str
    shape: tuple[int, ...]
    qtype: object
    nbytes: int
    rotary_heads: int | None = None


def plan_tensors(model, arch: str, kind: str) -> tuple[list[PlannedTensor], list[str]]:
    """Every tensor of ``model`` as the file will hold it, and the names of matrices that fall back to f16."""
    import gguf  # defers gguf

    config = model.config
    params = dict(model.named_parameters(remove_duplicate=False))
    gguf_arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    names = gguf.get_tensor_name_map(gguf_arch, config.num_hidden_layers)
    allowed = set(gguf.MODEL_TENSORS[gguf_arch])
    target = gguf.GGMLQuantizationType[_KINDS[kind][0]]
    f16, f32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    tied = _is_tied(model)
    planned, fallback = [], []
    for source, param in params.items():
        if tied and param is model.get_output_embeddings().weight and source != _input_embedding_name(model):
            continue
        found = names.get_type_and_name(source, try_suffixes=(".weight", ".bias"))
        if found is None or found[0] not in allowed:
            raise GgufExportError(f"--quant_method gguf: {config.model_type} parameter {source!r} has no place in a "
                                  f"GGUF {arch} file (an architecture variant swiftkit does not write)")
        shape = tuple(param.shape)
        qtype = f32 if (len(shape) != 2 or kind == "f32") else target
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        if shape[-1] % block:
            qtype, fallback = f16, [*fallback, found[1]]
            block, type_size = gguf.GGML_QUANT_SIZES[f16]
        rows = 1
        for dim in shape[:-1]:
            rows *= dim
        planned.append(PlannedTensor(found[1], source, shape, qtype, rows * shape[-1] // block * type_size,
                                     _rotary_heads(config, source)))
    return planned, fallback


def tensor_data(model, tensor: PlannedTensor):
    """The bytes (as a numpy array) the file stores for ``tensor``."""
    import torch  # defers torch
    from gguf.quants import quantize  # defers gguf

    param = model.get_parameter(tensor.source)
    with torch.no_grad():
        values = param.detach().to(device="cpu", dtype=torch.float32).numpy()
    if tensor.rotary_heads is not None:
        values = interleave_rotary_rows(values, tensor.rotary_heads)
    data = quantize(values, tensor.qtype)
    if data.nbytes != tensor.nbytes:
        raise AssertionError(f"{tensor.name}: {data.nbytes} bytes, planned {tensor.nbytes}")
    return data


def interleave_rotary_rows(values, heads: int):
    """Rows of a q/k projection reordered from transformers' half-split rotary layout to llama.cpp's interleaved
    one, head by head: within a head of d rows, row i goes to 2i and row i + d/2 to 2i + 1."""
    half = values.shape[0] // heads // 2
    return values.reshape(heads, 2, half, *values.shape[1:]).swapaxes(1, 2).reshape(values.shape)


def _rotary_heads(config, source: str) -> int | None:
    if config.model_type not in _PERMUTED:
        return None
    if ".self_attn.q_proj." in source:
        return config.num_attention_heads
    if ".self_attn.k_proj." in source:
        return getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return None


def _is_tied(model) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and inp is not None and out.weight is inp.weight


def _input_embedding_name(model) -> str:
    weight = model.get_input_embeddings().weight
    return next(name for name, p in model.named_parameters(remove_duplicate=False) if p is weight)

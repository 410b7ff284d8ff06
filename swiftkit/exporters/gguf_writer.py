"""Writing a transformers causal LM and its tokenizer as one GGUF file (llama.cpp's and Ollama's format).

Everything goes through the ``gguf`` package: ``GGUFWriter`` for the file, ``gguf.quants.quantize`` for the
tensor types it can produce (bf16, q8_0, q5_1, q5_0, q4_1, q4_0), its tensor-name table for the
``blk.N.attn_q``-style names. Supported: llama (SmolLM2 included) and mistral (both written as GGUF
architecture ``llama``), qwen2 and qwen3, with byte-level BPE tokenizers; see :mod:`gguf_tensors` for the
tensors and :mod:`gguf_vocab` for the tokenizer. Everything that can be refused is refused before the file is
opened, and the file is written under a temporary name and renamed when complete.

The model metadata written: architecture, name, file type, context length, embedding length, block count,
feed-forward length, head counts (query and key/value), key/value head dimension (Qwen3's is not embedding /
heads), rotary base and dimension count, RMS-norm epsilon and vocabulary size. A mistral model's sliding window
is not written (llama.cpp's llama architecture has none); the returned stats say so.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from swiftkit.exporters.gguf_tensors import (
    GgufExportError,
    check_gguf_supported,
    check_gguf_type,
    file_type,
    plan_tensors,
    rope_theta,
    tensor_data,
)
from swiftkit.exporters.gguf_vocab import add_vocab, read_vocab

__all__ = ["GgufExportError", "check_gguf_supported", "write_gguf"]


def write_gguf(model, tokenizer, path: Path, gguf_type: str, *, name: str | None = None,
               context_length: int | None = None, eos_token_id: int | None = None) -> dict:
    """Write ``model`` (full precision, adapters merged) and ``tokenizer`` (with its chat template) to ``path``.

    ``gguf_type``: one of ``GGUF_TYPES``, the type of the 2-D weight matrices. ``name``: ``general.name``
    (default: the model folder's name). ``context_length``: default ``max_position_embeddings``.
    ``eos_token_id``: the end-of-sequence id llama.cpp stops at (the template's end-of-turn token), default the
    tokenizer's eos.

    Returns stats: ``path``, ``architecture``, ``gguf_type``, ``tensors`` (count), ``types`` (tensor type ->
    count), ``f16_fallback`` (matrices written f16 because their rows are not whole blocks), ``bytes`` (file
    size), ``pre_tokenizer`` and ``notes``.
    """
    import gguf  # defers gguf

    config = model.config
    arch = check_gguf_supported(config.model_type, config)
    kind = check_gguf_type(gguf_type)
    n_vocab = model.get_input_embeddings().weight.shape[0]
    vocab = read_vocab(tokenizer, n_vocab, eos_token_id)
    planned, fallback = plan_tensors(model, arch, kind)
    notes = _unwritten_features(config)

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(partial, arch)
    try:
        _add_model_metadata(writer, config, n_vocab, kind, name, context_length)
        add_vocab(writer, vocab)
        for tensor in planned:
            writer.add_tensor_info(tensor.name, tensor.shape, _placeholder_dtype(), tensor.nbytes,
                                   raw_dtype=tensor.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in planned:  # one tensor in memory at a time
            writer.write_tensor_data(tensor_data(model, tensor))
        writer.close()
        os.replace(partial, path)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return {
        "path": str(path),
        "architecture": arch,
        "gguf_type": kind,
        "tensors": len(planned),
        "types": dict(Counter(t.qtype.name.lower() for t in planned)),
        "f16_fallback": fallback,
        "bytes": path.stat().st_size,
        "pre_tokenizer": vocab.pre,
        "notes": notes,
    }


def _add_model_metadata(writer, config, n_vocab: int, kind: str, name: str | None,
                        context_length: int | None) -> None:
    import gguf  # defers gguf

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_type("model")
    writer.add_name(name or Path(getattr(config, "_name_or_path", "") or "model").name or "model")
    writer.add_file_type(file_type(kind))
    if kind not in ("f32", "f16", "bf16"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(int(context_length or config.max_position_embeddings))
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(n_vocab)


def _unwritten_features(config) -> list[str]:
    window = getattr(config, "sliding_window", None)
    if config.model_type == "mistral" and window and window < config.max_position_embeddings:
        return [f"sliding_window={window} is not written: llama.cpp attends over the whole context"]
    return []


def _placeholder_dtype():
    """The numpy dtype ``add_tensor_info`` is told: any but uint8, so it takes the shape as elements, not bytes."""
    import numpy as np  # defers numpy

    return np.dtype(np.float32)

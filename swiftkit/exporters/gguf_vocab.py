"""The tokenizer half of a GGUF file: vocabulary, merges, token types, special ids and the chat template.

Only byte-level BPE tokenizers (a ``tokenizer.json`` whose model is BPE over GPT-2's byte alphabet: SmolLM2,
Llama 3, Qwen2/3, Mistral's tekken) are written, as ``tokenizer.ggml.model = "gpt2"``. Tokens are stored as the
vocabulary spells them (``Ġthe``); added tokens as their text. Token types: added special tokens are CONTROL,
other added tokens USER_DEFINED, ids the model has rows for but the tokenizer does not are padded as ``[PAD<id>]``
(UNUSED), the rest NORMAL.

``tokenizer.ggml.pre`` names the pre-tokenizer (the regex that splits text before BPE), which llama.cpp needs to
tokenize as the original does. It is read from the tokenizer's own pre-tokenizer, not guessed from the model:

* ``ByteLevel`` with its built-in GPT-2 regex -> ``gpt-2``;
* ``Digits(individual_digits)`` then ``ByteLevel`` (SmolLM/StarCoder-style) -> ``smollm``;
* ``Split`` by the Llama 3 regex then ``ByteLevel`` -> ``llama-bpe``; by the Qwen2/Qwen3 regex -> ``qwen2``; by
  Mistral's tekken regex -> ``tekken``;
* anything else -> ``default`` (llama.cpp's generic BPE split; text may then tokenize differently in llama.cpp
  than in transformers, though transformers' GGUF loader, which ignores most names, is unaffected).

``add_bos_token`` / ``add_eos_token`` say what the tokenizer itself adds around plain text (found by encoding a
probe), so that llama.cpp adds the same; a BOS the chat template writes is part of the prompt text instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from swiftkit.exporters.gguf_tensors import GgufExportError

_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                 r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                 r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPLITS = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2", _TEKKEN_SPLIT: "tekken"}

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5  # gguf.TokenType values


@dataclass
class Vocab:
    """What the file says about the tokenizer (``tokenizer.ggml.*`` and ``tokenizer.chat_template``)."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int] = field(default_factory=dict)  # bos, eos, unk, pad
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None


def read_vocab(tokenizer, n_vocab: int, eos_token_id: int | None = None) -> Vocab:
    """The vocabulary of ``tokenizer`` padded to the model's ``n_vocab`` rows; ``eos_token_id`` replaces the
    tokenizer's eos (the template's end-of-turn token). Raises :class:`GgufExportError` for other tokenizers."""
    spec = _tokenizer_json(tokenizer)
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not _is_byte_level(spec):
        kind = model.get("type") or "unknown"
        raise GgufExportError(f"--quant_method gguf: the tokenizer is {kind} without byte-level pre-tokenization; "
                              "swiftkit writes GGUF for byte-level BPE tokenizers only (tokenizer.json model BPE over "
                              "bytes, as in Llama 3, Qwen and SmolLM)")
    vocab = tokenizer.get_vocab()
    if vocab and max(vocab.values()) >= n_vocab:
        raise GgufExportError(f"--quant_method gguf: the tokenizer has ids up to {max(vocab.values())} but the model's "
                              f"embedding has {n_vocab} rows; resize the embedding before exporting")
    added = dict(tokenizer.added_tokens_decoder)
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [UNUSED] * n_vocab
    for text, index in vocab.items():
        tokens[index] = text
        types[index] = NORMAL
    for index, token in added.items():
        if index < n_vocab:
            tokens[index] = token.content
            types[index] = CONTROL if token.special else USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    ids = {"bos": tokenizer.bos_token_id, "eos": eos_token_id if eos_token_id is not None else tokenizer.eos_token_id,
           "unk": tokenizer.unk_token_id, "pad": tokenizer.pad_token_id}
    template = tokenizer.chat_template
    if isinstance(template, dict):  # several named templates: the default one is the chat template
        template = template.get("default")
    add_bos, add_eos = adds_special_tokens(tokenizer)
    return Vocab(tokens, types, merges, pre_tokenizer_name(spec),
                 {k: v for k, v in ids.items() if v is not None}, add_bos, add_eos, template)


def add_vocab(writer, vocab: Vocab) -> None:
    """Write ``vocab`` into a ``gguf.GGUFWriter``."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    setters = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
               "pad": writer.add_pad_token_id}
    for key, index in vocab.special_ids.items():
        setters[key](index)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def adds_special_tokens(tokenizer) -> tuple[bool, bool]:
    """Whether ``tokenizer`` puts its BOS before / its EOS after plain text it encodes."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(full) > len(plain) and full[0] == bos
    add_eos = eos is not None and len(full) > len(plain) and full[-1] == eos
    return add_bos, add_eos


def pre_tokenizer_name(spec: dict) -> str:
    """llama.cpp's name for the pre-tokenizer in a parsed tokenizer.json (see the module docstring)."""
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        return _SPLITS.get(pattern, "default")
    return "default"


def _tokenizer_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise GgufExportError(f"--quant_method gguf: {type(tokenizer).__name__} has no tokenizer.json (a slow "
                              "tokenizer); swiftkit writes GGUF from fast byte-level BPE tokenizers only")
    return json.loads(backend.to_str())


def _is_byte_level(spec: dict) -> bool:
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    return any(step.get("type") == "ByteLevel" for step in steps)

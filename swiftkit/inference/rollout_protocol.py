"""What a GRPO trainer and a `swiftkit rollout` server agree on: the request, the replies, the weights payload
and the model identity both sides compare.

The HTTP protocol (JSON unless said otherwise; errors are ``{"error": {"message", "type", "param", "code"}}``):

``GET /health``
    ``{"status": "ok", "protocol": 1, "model": NAME, "backend": "transformers"|"vllm", "version": N,
    "identity": {...}}``. ``version`` counts the weight pushes the server has taken (0: the weights it loaded);
    ``identity`` is :func:`model_identity` of the served model.
``POST /generate``
    ``{"prompts": [[token ids], ...], "n": 1, "max_tokens": 16, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
    "repetition_penalty": 1.0, "stop_token_ids": [ids] (default: the served template's end-of-turn ids),
    "seed": null, "logprobs": false}`` ->
    ``{"completion_ids": [[ids], ...], "finish_reasons": ["stop"|"length", ...], "logprobs": [[float, ...], ...]
    or null, "version": N}``: ``n`` replies per prompt, prompt-major (the replies of prompt 0, then of prompt 1,
    ...). A reply ends with the stop token that ended it (not with padding); ``logprobs`` are each reply token's
    log-probability under the distribution it was sampled from (after temperature, top-k and top-p). A
    temperature below 1e-5 decodes greedily. ``version`` is the weights the replies came from.
``POST /update_weights``
    The body is a safetensors file (``application/octet-stream``, :func:`encode_weights`) whose metadata says
    what it holds: ``kind`` ``adapter`` (a peft adapter's state dict as peft saves it, with its
    ``adapter_config`` as JSON) or ``weights`` (parameters by their names in the model, e.g. every parameter of
    full training; the others keep their values). The next ``/generate`` uses them. ->
    ``{"version": N, "tensors": count}``.

A request is answered only after the one before it: a push never lands in the middle of a generation.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

PROTOCOL = 1
WEIGHTS_FORMAT = "swiftkit-rollout-weights"
WEIGHT_KINDS = ("adapter", "weights")
# Identity fields whose difference makes the served model another model (None on one side: not compared).
IDENTITY_FIELDS = ("architecture", "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "tokenizer")


class RolloutProtocolError(ValueError):
    """A malformed request or weights payload; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class RolloutRequest:
    """One ``/generate`` call: ``n`` sampled replies for each prompt (token ids)."""

    prompts: list[list[int]]
    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    repetition_penalty: float = 1.0
    stop_token_ids: tuple[int, ...] | None = None  # None: the served template's end-of-turn ids
    seed: int | None = None
    logprobs: bool = False

    def to_json(self) -> dict:
        out = {"prompts": [list(p) for p in self.prompts], "n": self.n, "max_tokens": self.max_tokens,
               "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
               "repetition_penalty": self.repetition_penalty, "seed": self.seed, "logprobs": self.logprobs}
        if self.stop_token_ids is not None:
            out["stop_token_ids"] = list(self.stop_token_ids)
        return out


@dataclass
class Completion:
    """One reply: its token ids (ending with the stop token that ended it), why it ended, and its logprobs."""

    token_ids: list[int]
    finish_reason: str  # "stop" or "length"
    logprobs: list[float] | None = None


def cut_at_stop(ids: list[int], stops) -> tuple[list[int], str]:
    """``ids`` through the first stop token (kept), and ``"stop"``; all of them and ``"length"`` when none."""
    stops = set(stops)
    for i, token in enumerate(ids):
        if token in stops:
            return ids[:i + 1], "stop"
    return ids, "length"


# -- weights payload --------------------------------------------------------------------------------

def encode_weights(tensors: dict, *, kind: str, adapter_config: dict | None = None, step: int = 0) -> bytes:
    """A safetensors file in memory holding ``tensors`` (moved to the CPU) and what they are."""
    from safetensors.torch import save  # defers torch

    if kind not in WEIGHT_KINDS:
        raise ValueError(f"unknown weights kind {kind!r}")
    metadata = {"format": WEIGHTS_FORMAT, "kind": kind, "step": str(step)}
    if adapter_config is not None:
        metadata["adapter_config"] = json.dumps(adapter_config, default=_json_default, sort_keys=True)
    return save({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, metadata=metadata)


def _json_default(value):
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def weights_metadata(raw: bytes) -> dict:
    """The metadata of a safetensors payload, checked to be a rollout weights payload."""
    if len(raw) < 8:
        raise RolloutProtocolError("the body is not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", raw[:8])
    if size > len(raw) - 8:
        raise RolloutProtocolError("the body is not a safetensors file (its header is longer than the body)")
    try:
        header = json.loads(raw[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RolloutProtocolError(f"the body is not a safetensors file ({exc})") from exc
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != WEIGHTS_FORMAT:
        raise RolloutProtocolError(f"the safetensors body lacks the metadata format={WEIGHTS_FORMAT!r}: send what "
                                   "swiftkit.inference.rollout_protocol.encode_weights writes")
    if meta.get("kind") not in WEIGHT_KINDS:
        raise RolloutProtocolError(f"unknown weights kind {meta.get('kind')!r}; valid: {', '.join(WEIGHT_KINDS)}",
                                   "kind")
    if meta["kind"] == "adapter":
        try:
            config = json.loads(meta.get("adapter_config", ""))
        except json.JSONDecodeError as exc:
            raise RolloutProtocolError(f"adapter_config is not valid JSON: {exc}", "adapter_config") from exc
        if not isinstance(config, dict) or "peft_type" not in config:
            raise RolloutProtocolError("adapter_config must be a peft adapter config (with peft_type)",
                                       "adapter_config")
        meta = {**meta, "adapter_config": config}
    return meta


def decode_weights(raw: bytes) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a payload :func:`encode_weights` wrote (tensors on the CPU)."""
    from safetensors.torch import load  # defers torch

    meta = weights_metadata(raw)
    try:
        tensors = load(raw)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise RolloutProtocolError(f"the safetensors body cannot be read: {exc}") from exc
    if not tensors:
        raise RolloutProtocolError("the weights payload holds no tensors")
    return tensors, meta


# -- model identity ---------------------------------------------------------------------------------

def model_identity(config, tokenizer, vocab_size: int | None = None) -> dict:
    """What makes two models interchangeable for rollouts: architecture, sizes and the tokenizer's vocabulary
    (a digest of every token and its id). ``vocab_size`` is the embedding's rows (default: the config's)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    architectures = getattr(config, "architectures", None) or [None]
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
    return {"architecture": architectures[0], "model_type": getattr(config, "model_type", None),
            "vocab_size": vocab_size if vocab_size is not None else getattr(text, "vocab_size", None),
            "hidden_size": getattr(text, "hidden_size", None),
            "num_hidden_layers": getattr(text, "num_hidden_layers", None),
            "tokenizer": f"{len(vocab)} tokens, sha256 {digest}"}


def identity_mismatch(served: dict, local: dict) -> str | None:
    """How the served model differs from the local one (``"vocab_size 512 vs 1024"``), or None."""
    diffs = [f"{key} {served.get(key)} vs {local.get(key)}" for key in IDENTITY_FIELDS
             if served.get(key) is not None and local.get(key) is not None and served.get(key) != local.get(key)]
    return "; ".join(diffs) or None

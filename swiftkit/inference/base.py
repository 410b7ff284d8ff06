"""The inference-engine contract, and the parts both built-in engines share.

:class:`ReplyEngine` is what ``swiftkit infer`` and ``eval`` (and eval benchmarks) call on an engine;
:class:`InferEngine` adds what ``deploy`` calls. The transformers and vLLM engines implement all of
it; an engine a plugin returns from ``swiftkit_get_infer_engine`` must meet the protocol of the
command it serves (checked when it is chosen). OpenAI request and response shapes are
not the engine's business: :mod:`swiftkit.inference.openai` builds them from these calls.

The shared parts are composed, not inherited: :class:`ServedModels` (which served model name is
which adapter) and :class:`PromptCodec` (the template's prompt ids, text ids and decoding, behind
one lock, since a fast tokenizer must not be used by two threads at once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from swiftkit.data.media import IMAGE_TAG, load_image
from swiftkit.inference.protocol import ProtocolError, SamplingParams

PROMPT_LOGPROBS_UNSUPPORTED = (
    "prompt logprobs ('echo': true with 'logprobs') are not supported by this engine (--infer_backend vllm "
    "has none in swiftkit deploy); serve with --infer_backend transformers, or ask without 'echo'")


@dataclass
class Generated:
    """One finished reply: its text, how many tokens it took and why it ended."""

    text: str
    completion_tokens: int
    finish_reason: str  # "stop" (stop token or string) or "length" (max_tokens reached)
    logprobs: list[dict] | None = None  # OpenAI ``logprobs.content`` entries, when asked for


@runtime_checkable
class ReplyEngine(Protocol):
    """Replies to conversations: what ``infer`` and ``eval`` call."""

    def generate(self, conversations: list[list[dict]], **generation) -> list[str]:
        """One reply per conversation (``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``,
        ``repetition_penalty``): the simple call of ``infer`` and eval benchmarks."""

    def stream(self, messages: list[dict], **generation) -> Iterator[str]:
        """The reply to ``messages`` in text pieces as they are generated."""


@runtime_checkable
class InferEngine(ReplyEngine, Protocol):
    """Everything callers of an engine use (``deploy`` included). ``template`` encodes prompts
    exactly as training did."""

    template: object
    max_model_len: int | None  # prompt + reply limit; deploy may lower it (--max_model_len)
    supports_logprobs: bool
    supports_prompt_logprobs: bool  # whether prompt_logprobs works (completions with echo and logprobs)

    def served_models(self) -> dict[str, str | None]:
        """Served model name -> adapter name (None: the base model); empty when names are not used."""

    def model_names(self) -> list[str]: ...

    def add_model(self, name: str, adapter: str | None = None) -> None:
        """Serve the base model (``adapter`` None) or an already loaded adapter as ``name``."""

    def load_adapter(self, name: str, path: str) -> None:
        """Load the LoRA adapter at ``path`` and serve it as ``name``."""

    def check_model(self, name: str) -> None:
        """Raise a 404 :class:`ProtocolError` unless ``name`` is served."""

    def prompt_ids(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]: ...

    def text_ids(self, text: str) -> list[int]: ...

    def text_offsets(self, text: str, ids: list[int]) -> list[int]:
        """Where each of ``ids`` (``text_ids(text)``) starts in ``text``, in characters."""

    def prompt_logprobs(self, prompts: list[list[int]], top: int, model: str | None = None,
                        cancel: threading.Event | None = None) -> list[list[dict]]:
        """Per prompt (token ids), one entry per token in the shape of
        :func:`~swiftkit.inference.protocol.token_logprob`: its log-probability given the tokens
        before it under ``model``'s adapter and its ``top`` likeliest alternatives; the first token
        has ``logprob`` and ``top_logprobs`` None. Only called when ``supports_prompt_logprobs``."""

    def generate_ids(self, prompts: list[list[int]], params: SamplingParams, model: str | None = None,
                     cancel: threading.Event | None = None) -> list[Generated]:
        """One reply per prompt (token ids), generated together with ``model``'s adapter. Once
        ``cancel.is_set()`` (the deploy scheduler passes any object with ``is_set()``: every client of
        the batch hung up or the server is shutting down) generation should stop at the next token."""

    def stream_ids(self, prompt: list[int], params: SamplingParams, model: str | None = None,
                   cancel: threading.Event | None = None) -> Iterator[str | Generated]:
        """Text pieces as they are generated, then the :class:`Generated` reply; a failure is raised
        before the reply (never a short reply that looks finished); stops once ``cancel`` is set."""


@runtime_checkable
class RolloutEngine(Protocol):
    """What `swiftkit rollout` calls (:mod:`swiftkit.inference.rollout_protocol` has the request and reply types):
    sampled replies as token ids, and weights a trainer pushes."""

    template: object
    max_model_len: int | None

    def rollout_identity(self) -> dict:
        """:func:`~swiftkit.inference.rollout_protocol.model_identity` of the served model."""

    def generate_rollouts(self, request, batch_size: int | None = None) -> list:
        """``request.n`` :class:`~swiftkit.inference.rollout_protocol.Completion` per prompt, prompt-major, with
        the weights last pushed; at most ``batch_size`` sequences are generated together (None: all)."""

    def update_weights(self, tensors: dict, metadata: dict) -> None:
        """Load pushed weights (``metadata["kind"]``: ``adapter`` or ``weights``) so the next generation uses
        them; a :class:`~swiftkit.inference.rollout_protocol.RolloutProtocolError` when they do not fit."""


def missing_members(engine, protocol: type = InferEngine) -> list[str]:
    """The members of ``protocol`` that ``engine`` lacks (empty when it meets the protocol)."""
    names = [n for n in dir(protocol) if not n.startswith("_")]
    for cls in protocol.__mro__:
        names += list(getattr(cls, "__annotations__", {}))
    return sorted({n for n in names if not hasattr(engine, n)})


def sampling_params(max_new_tokens: int = 512, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 50,
                    repetition_penalty: float = 1.0) -> SamplingParams:
    """:class:`SamplingParams` from the keyword arguments of ``generate`` / ``stream``."""
    return SamplingParams(max_new_tokens, temperature, top_p, top_k, repetition_penalty)


def generate_texts(engine, conversations: list[list[dict]], **generation) -> list[str]:
    """``engine.generate`` on top of ``prompt_ids`` and ``generate_ids`` (what both engines do)."""
    if not conversations:
        return []
    prompts = [engine.prompt_ids(m) for m in conversations]
    return [g.text for g in engine.generate_ids(prompts, sampling_params(**generation))]


def stream_text(engine, messages: list[dict], **generation) -> Iterator[str]:
    """``engine.stream`` on top of ``prompt_ids`` and ``stream_ids``."""
    for item in engine.stream_ids(engine.prompt_ids(messages), sampling_params(**generation)):
        if isinstance(item, str):
            yield item


class ServedModels:
    """Served model names and the adapter each one uses (None: the base model)."""

    def __init__(self):
        self.names: dict[str, str | None] = {}

    def add(self, name: str, adapter: str | None = None) -> None:
        if name in self.names:
            raise ValueError(f"model name {name!r} is served twice; give each adapter its own name")
        self.names[name] = adapter

    def check(self, name: str) -> None:
        if self.names and name not in self.names:
            raise ProtocolError(
                f"the model {name!r} does not exist; served models: {', '.join(self.names)}",
                "model", status=404, code="model_not_found",
            )


class MediaPrompt(list):
    """Prompt ids (a list) of a prompt with images, carrying the processor's tensors for them (``features``:
    ``pixel_values``, ``image_grid_thw``, ...), which generation passes to the model."""

    def __init__(self, ids, features: dict):
        super().__init__(ids)
        self.features = features


def message_images(messages: list[dict]) -> tuple[list[dict], list[str]]:
    """``(messages without their "images" keys, the images in order)``: a message's ``images`` are the
    pictures of the ``<image>`` tags in its content (as :func:`swiftkit.inference.protocol.chat_messages`
    writes the OpenAI ``image_url`` parts)."""
    if not any(isinstance(m, dict) and m.get("images") for m in messages):
        return messages, []
    images: list[str] = []
    out = []
    for m in messages:
        images += list(m.get("images") or ())
        out.append({k: v for k, v in m.items() if k != "images"})
    return out, images


def attach_images(messages: list[dict], images) -> list[dict]:
    """A canonical row's messages with its ``images`` handed to the messages whose ``<image>`` tags they fill,
    in order (the form :func:`message_images` reads)."""
    if not images:
        return messages
    refs, out = list(images), []
    for m in messages:
        n = m.get("content").count(IMAGE_TAG) if isinstance(m.get("content"), str) else 0
        out.append({**m, "images": refs[:n]} if n else m)
        refs = refs[n:]
    return out


class PromptCodec:
    """A template's encoding and decoding, serialised by one lock (fast tokenizers are not thread-safe).

    A template that takes images (:class:`swiftkit.data.vision.VisionEncoder`, a vision-language model's) encodes
    a prompt whose messages carry ``images`` as a :class:`MediaPrompt`; any other template refuses such a prompt.
    """

    def __init__(self, template, *, images: bool = True):
        self.template = template
        self.stop_token_ids: list[int] = list(template.stop_token_ids)
        self.lock = threading.Lock()
        self.images = images  # False: the engine generates from token ids alone (vLLM here)

    def prompt_ids(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        messages, images = message_images(messages)
        if images:
            return self._media_prompt(messages, images, tools)
        with self.lock:
            return list(self.template.encode_prompt(messages, tools=tools))

    def _media_prompt(self, messages: list[dict], images: list[str], tools) -> MediaPrompt:
        if not self.images:
            raise ValueError(f"the prompt has {len(images)} image(s): --infer_backend vllm takes text prompts only; "
                             "serve a vision-language model with --infer_backend transformers")
        if not hasattr(self.template, "prompt_inputs"):
            raise ValueError(f"the prompt has {len(images)} image(s), but this model takes text only (it has no "
                             "vision tower): send text, or serve a vision-language model")
        pictures = [load_image(ref, f"image {k + 1}") for k, ref in enumerate(images)]
        with self.lock:
            inputs = self.template.prompt_inputs(messages, pictures, tools)
        return MediaPrompt(inputs.pop("input_ids")[0].tolist(), inputs)

    def text_ids(self, text: str) -> list[int]:
        with self.lock:
            return list(self.template.tokenizer(text)["input_ids"])

    def decode(self, ids) -> str:
        with self.lock:
            return self.template.decode(ids)

    def text_offsets(self, text: str, ids: list[int]) -> list[int]:
        """Where each of ``ids`` (what :meth:`text_ids` gives for ``text``) starts in ``text``, in characters.

        A fast tokenizer's offset mapping says where each token ends; a token starts where the
        tokens before it end, so a token's leading space is its own (some tokenizers trim it from
        the mapping's start) and a token the tokenizer adds (BOS) takes no characters. Without an
        offset mapping, the characters of the tokens before it, each decoded on its own, are counted.
        """
        with self.lock:
            tok = self.template.tokenizer
            if getattr(tok, "is_fast", False):
                encoded = tok(text, return_offsets_mapping=True)
                if list(encoded["input_ids"]) == list(ids):
                    offsets, reached = [], 0
                    for _, end in encoded["offset_mapping"]:
                        offsets.append(reached)
                        reached = max(reached, end)
                    return offsets
            offsets, length = [], 0
            for token_id in ids:
                offsets.append(min(length, len(text)))
                length += len(tok.decode([token_id], skip_special_tokens=False))
            return offsets

    def until_stop(self, ids: list[int]) -> list[int]:
        """``ids`` up to (not including) the first stop token."""
        stops = set(self.stop_token_ids)
        for i, tok in enumerate(ids):
            if tok in stops:
                return ids[:i]
        return ids


class CodecEngine:
    """What the built-in engines share: prompts encoded and decoded through ``self.codec`` (a
    :class:`PromptCodec`), model names kept in ``self.served`` (a :class:`ServedModels`), and the
    simple ``generate`` / ``stream`` API on top of ``generate_ids`` / ``stream_ids``."""

    codec: PromptCodec
    served: ServedModels

    @property
    def stop_token_ids(self) -> list[int]:
        """The token ids generation stops at (the template's end-of-turn tokens)."""
        return self.codec.stop_token_ids

    @stop_token_ids.setter
    def stop_token_ids(self, ids) -> None:
        self.codec.stop_token_ids = list(ids)

    def served_models(self) -> dict[str, str | None]:
        return dict(self.served.names)

    def model_names(self) -> list[str]:
        return list(self.served.names)

    def check_model(self, name: str) -> None:
        self.served.check(name)

    def prompt_ids(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        return self.codec.prompt_ids(messages, tools)

    def text_ids(self, text: str) -> list[int]:
        return self.codec.text_ids(text)

    def text_offsets(self, text: str, ids: list[int]) -> list[int]:
        return self.codec.text_offsets(text, ids)

    def generate(self, conversations: list[list[dict]], **generation) -> list[str]:
        """One reply per conversation, generated as one batch."""
        return generate_texts(self, conversations, **generation)

    def stream(self, messages: list[dict], **generation) -> Iterator[str]:
        """Yield the reply to ``messages`` in text pieces (same text as generate)."""
        return stream_text(self, messages, **generation)


def cut_at_stop_string(text: str, stops) -> tuple[str, bool]:
    """``text`` cut before the first stop string, and whether one was found."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(found)], True) if found else (text, False)

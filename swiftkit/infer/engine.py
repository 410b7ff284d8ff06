"""Generation with plain transformers: batched replies and a token stream for chat.

The prompt ids are exactly ``template.encode_prompt(messages)`` (what the model's chat template
gives with ``add_generation_prompt=True``); a batch is left-padded by hand with an attention mask,
so padding never changes the prompt. Generation stops at any of ``template.stop_token_ids``, and
only the new tokens before the stop token are decoded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator


class _TokenQueue:
    """A ``generate`` streamer: the first ``put`` is the prompt (skipped), then new token ids."""

    DONE = object()

    def __init__(self):
        self.items: queue.Queue = queue.Queue()
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.items.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.items.put(self.DONE)


class TransformersEngine:
    """Chat replies from a causal LM and a template (``encode_prompt``, ``decode``, stop ids)."""

    def __init__(self, model, template):
        self.model = model
        self.template = template
        self.stop_token_ids: list[int] = list(template.stop_token_ids)
        tok = template.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_token_id: int = pad if pad is not None else (self.stop_token_ids or [0])[0]

    # -- building blocks -------------------------------------------------------------------------

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return list(self.template.encode_prompt(messages))

    def _batch(self, prompts: list[list[int]]):
        """Left-padded ``input_ids`` and ``attention_mask`` tensors on the model's device."""
        import torch

        width = max(len(p) for p in prompts)
        ids = [[self.pad_token_id] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        device = self.model.device
        return torch.tensor(ids, device=device), torch.tensor(mask, device=device)

    def _generation_config(self, max_new_tokens, temperature, top_p, top_k, repetition_penalty):
        from transformers import GenerationConfig

        kw = {
            "max_new_tokens": max_new_tokens,
            "eos_token_id": self.stop_token_ids or None,
            "pad_token_id": self.pad_token_id,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            kw.update(temperature=temperature, top_p=top_p, top_k=top_k)
        if repetition_penalty != 1.0:
            kw["repetition_penalty"] = repetition_penalty
        return GenerationConfig(**kw)

    def _until_stop(self, ids: list[int]) -> list[int]:
        stops = set(self.stop_token_ids)
        for i, tok in enumerate(ids):
            if tok in stops:
                return ids[:i]
        return ids

    # -- public API ------------------------------------------------------------------------------

    def generate(
        self,
        conversations: list[list[dict]],
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 50,
        repetition_penalty: float = 1.0,
    ) -> list[str]:
        """One reply per conversation, generated as one left-padded batch."""
        if not conversations:
            return []
        import torch

        input_ids, mask = self._batch([self.prompt_ids(m) for m in conversations])
        config = self._generation_config(max_new_tokens, temperature, top_p, top_k, repetition_penalty)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
        new = out[:, input_ids.shape[1]:].tolist()
        return [self.template.decode(self._until_stop(ids)) for ids in new]

    def stream(self, messages: list[dict], **gen) -> Iterator[str]:
        """Yield the reply to ``messages`` in text pieces as tokens arrive (same text as generate)."""
        import torch

        input_ids, mask = self._batch([self.prompt_ids(messages)])
        config = self._generation_config(
            gen.get("max_new_tokens", 512), gen.get("temperature", 0.0), gen.get("top_p", 1.0),
            gen.get("top_k", 50), gen.get("repetition_penalty", 1.0),
        )
        streamer = _TokenQueue()
        failure: list[BaseException] = []

        def work():
            try:
                with torch.inference_mode():
                    self.model.generate(
                        input_ids=input_ids, attention_mask=mask, generation_config=config, streamer=streamer
                    )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        ids: list[int] = []
        emitted = ""
        stopped = False
        while True:
            item = streamer.items.get()
            if item is _TokenQueue.DONE:
                break
            if stopped:
                continue  # drain until generate ends
            kept = self._until_stop(item)
            stopped = len(kept) < len(item)
            ids.extend(kept)
            text = self.template.decode(ids)
            # Hold back a piece that ends in half a multi-byte character or rewrites earlier text.
            if text.startswith(emitted) and not text.endswith("\ufffd") and len(text) > len(emitted):
                yield text[len(emitted):]
                emitted = text
        thread.join()
        if failure:
            raise failure[0]
        text = self.template.decode(ids)
        if text.startswith(emitted) and len(text) > len(emitted):
            yield text[len(emitted):]

"""Generation with plain transformers: batched replies and token streams (the ``transformers`` engine).

The prompt ids are exactly ``template.encode_prompt(messages, tools=...)`` (what the model's chat
template gives with ``add_generation_prompt=True``, as in training); a batch is left-padded by hand
with an attention mask, so padding never changes the prompt. Generation stops at any of
``template.stop_token_ids`` or at a request's stop strings, and only the new tokens before the
stop are decoded. One base model can serve several LoRA adapters, each under its own model name,
chosen per call (peft ``set_adapter``; the base model runs with the adapters disabled). Calls from
several threads are serialised by a lock.

For the deploy scheduler's continuous batching the engine also decodes token by token: ``prefill``
runs one prompt and starts its sequences (``n`` choices), ``decode_step`` advances a batch of
sequences by one token each (see :mod:`swiftkit.inference.stepping` for the batch's cache). Tokens
are chosen as ``generate`` chooses them: the same generation config (the model's defaults under the
request's settings) and logits processors, applied to each sequence's own ids, then argmax or
softmax sampling, so a greedy reply is the one ``generate_ids`` gives for the prompt alone.
``supports_steps`` is False for models whose cache is not keys and values in every layer; the
scheduler then runs whole requests.

With ``SamplingParams.logprobs`` a reply also carries each kept token's log-probability (and its
``top_logprobs`` likeliest alternatives): ``log_softmax`` of the model's *raw* logits at that step
(``output_logits=True``), i.e. before repetition penalty, temperature, top-k and top-p. For greedy
decoding without a repetition penalty the chosen token is then the top alternative; for sampling
the numbers describe the model, not the warped distribution it was sampled from.

``prompt_logprobs`` scores given prompts instead (completions with ``echo`` and ``logprobs``): each
token's log-probability given the tokens before it, from one batched forward pass of
:func:`swiftkit.inference.scoring.token_logprobs`, the same numbers in-process evaluation uses.
"""

from __future__ import annotations

import contextlib
import inspect
import queue
import threading
from collections.abc import Iterator

from swiftkit.inference import rollout_ops
from swiftkit.inference.base import (
    CodecEngine,
    Generated,
    MediaPrompt,
    PromptCodec,
    ServedModels,
    cut_at_stop_string,
)
from swiftkit.inference.protocol import SamplingParams, sampling, token_logprob
from swiftkit.inference.scoring import token_logprobs
from swiftkit.inference.stepping import DecodeBatch, Sequence, TextPieces, plain_kv_cache


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


def _stopping_criteria(width: int, stops: tuple[str, ...], decode, cancel: threading.Event | None):
    """A StoppingCriteria ending rows whose new text contains a stop string (all rows on cancel);
    ``stopped_at[row]`` is the sequence length at which a row was stopped."""
    import torch  # defers torch
    from transformers import StoppingCriteria  # defers transformers

    window = max((len(s) for s in stops), default=0) + 8  # tokens: each decodes to >= 1 char mostly

    class StopStrings(StoppingCriteria):
        def __init__(self):
            self.stopped_at: dict[int, int] = {}

        def __call__(self, input_ids, scores, **kwargs):
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            if cancel is not None and cancel.is_set():
                return done | True
            if stops:
                length = input_ids.shape[1]
                for row, ids in enumerate(input_ids[:, max(width, length - window):].tolist()):
                    if row not in self.stopped_at and any(s in decode(ids) for s in stops):
                        self.stopped_at[row] = length
                    done[row] = row in self.stopped_at
            return done

    return StopStrings()


def _byte_level_chars() -> dict[str, int]:
    """The byte-level BPE alphabet: printable bytes stand for themselves, the rest are shifted past 255."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_LEVEL = _byte_level_chars()


def _piece_bytes(piece: str) -> bytes | None:
    """The bytes a vocabulary piece stands for (``<0xHH>`` byte fallback or byte-level BPE), else None."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return bytes([int(piece[3:5], 16)])
    if piece and all(c in _BYTE_LEVEL for c in piece):
        return bytes(_BYTE_LEVEL[c] for c in piece)
    return None


def _features(prompt, model) -> dict:
    """The image features a :class:`MediaPrompt` carries, on the model's device, the floating ones in its dtype
    (processors give float32 pixels, or bfloat16 for some; none for a text prompt)."""
    features = getattr(prompt, "features", None) or {}
    out = {}
    for key, value in features.items():
        if hasattr(value, "to"):
            value = value.to(model.device, dtype=model.dtype) if value.is_floating_point() else value.to(model.device)
        out[key] = value
    return out


def _takes(model, name: str) -> bool:
    """Whether the (base) model's ``forward`` has the parameter ``name``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return name in inspect.signature(base.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False


class TransformersEngine(CodecEngine):
    """Replies from a causal LM and a template (``encode_prompt``, ``decode``, stop ids); meets
    :class:`~swiftkit.inference.base.InferEngine`."""

    supports_logprobs = True
    supports_prompt_logprobs = True

    def __init__(self, model, template):
        self.model = model
        self.template = template
        self.codec = PromptCodec(template)
        self.takes_images = hasattr(template, "prompt_inputs")  # a vision-language model's template
        tok = template.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_token_id: int = pad if pad is not None else (self.stop_token_ids or [0])[0]
        self.max_model_len: int | None = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.served = ServedModels()  # model name -> peft adapter name (None: base model)
        self._model_lock = threading.Lock()
        config = getattr(model, "config", None)
        # prefill / decode_step work (the deploy scheduler batches continuously) when every layer caches keys and values
        # (a vision-language model generates whole requests: its image features go in with the prompt)
        self.supports_steps: bool = config is not None and plain_kv_cache(config) and not self.takes_images

        self._logits_to_keep = _takes(model, "logits_to_keep")

    # -- served models ---------------------------------------------------------------------------

    def add_model(self, name: str, adapter: str | None = None) -> None:
        """Serve the base model (``adapter`` None) or an already loaded peft adapter as ``name``."""
        self.served.add(name, adapter)

    def load_adapter(self, name: str, path: str) -> None:
        """Load the LoRA adapter at ``path`` beside the others and serve it as ``name``."""
        from peft import PeftModel  # defers peft

        internal = f"adapter{len(self.served.names)}"  # peft names become module keys: keep them plain
        with self._model_lock:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(path, adapter_name=internal, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=internal, is_trainable=False)
            self.model.eval()
        self.add_model(name, internal)

    @contextlib.contextmanager
    def _using(self, name: str | None):
        """Run with the adapter served as ``name`` active (None: the model as loaded)."""
        if name is None or not self.served.names:
            yield
            return
        self.check_model(name)
        adapter = self.served.names[name]
        if adapter is None:
            disable = getattr(self.model, "disable_adapter", None)
            with disable() if disable is not None and hasattr(self.model, "peft_config") else contextlib.nullcontext():
                yield
        else:
            self.model.set_adapter(adapter)
            yield

    # -- building blocks -------------------------------------------------------------------------

    def _decode(self, ids) -> str:
        return self.codec.decode(ids)

    def _batch(self, prompts: list[list[int]]):
        """Left-padded ``input_ids`` and ``attention_mask`` tensors on the model's device."""
        import torch  # defers torch

        width = max(len(p) for p in prompts)
        ids = [[self.pad_token_id] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        device = self.model.device
        return torch.tensor(ids, device=device), torch.tensor(mask, device=device)

    def _generation_config(self, params: SamplingParams):
        from transformers import GenerationConfig  # defers transformers

        kw = {
            "max_new_tokens": params.max_tokens,
            "eos_token_id": self.stop_token_ids or None,
            "pad_token_id": self.pad_token_id,
            "do_sample": sampling(params),
        }
        if sampling(params):
            kw.update(temperature=params.temperature, top_p=params.top_p,
                      top_k=params.top_k if params.top_k > 0 else None)
        if params.repetition_penalty != 1.0:
            kw["repetition_penalty"] = params.repetition_penalty
        if params.logprobs:
            kw.update(output_logits=True, return_dict_in_generate=True)
        return GenerationConfig(**kw)

    def _finish(self, ids: list[int], params: SamplingParams, steps=None, row: int = 0,
                entries: list[dict] | None = None) -> Generated:
        """The reply of generated ``ids``; ``steps`` (raw logits per step, batch-first) or ``entries``
        (one logprob entry per token of ``ids``) add logprobs."""
        kept = self.codec.until_stop(ids)
        hit_token = len(kept) < len(ids)
        text, hit_string = cut_at_stop_string(self._decode(kept), params.stop)
        reason = "length" if not (hit_token or hit_string) and len(kept) >= params.max_tokens else "stop"
        reply = Generated(text, len(kept) + int(hit_token), reason)
        if steps is not None or entries is not None:
            if hit_string:  # only the tokens that make up the returned text
                kept = kept[:next(m for m in range(len(kept) + 1) if len(self._decode(kept[:m])) >= len(text))]
            reply.logprobs = (entries[:len(kept)] if entries is not None
                              else self._token_logprobs(kept, steps, row, params.top_logprobs))
        return reply

    def _token_text(self, token_id: int) -> tuple[str, bytes]:
        """A token's text and its UTF-8 bytes; a token holding part of a character gets its own
        bytes (byte-level BPE or ``<0xHH>`` pieces) and the text ``bytes:\\xHH...`` as OpenAI writes it."""
        with self.codec.lock:
            tok = self.template.tokenizer
            text = tok.decode([token_id], skip_special_tokens=False)
            if "\ufffd" not in text:
                return text, text.encode("utf-8")
            piece = tok.convert_ids_to_tokens(token_id)
        raw = _piece_bytes(piece) if isinstance(piece, str) else None
        if raw is None:
            return text, text.encode("utf-8")
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw), raw

    def _token_logprobs(self, ids: list[int], steps, row: int, top: int) -> list[dict]:
        return [self._logprob_entry(steps[step][row], token_id, top) for step, token_id in enumerate(ids)]

    def _logprob_entry(self, logits, token_id: int, top: int) -> dict:
        """The entry of ``token_id`` chosen at a step whose raw logits (one row) are ``logits``."""
        import torch  # defers torch

        logprobs = torch.log_softmax(logits.float(), dim=-1)
        alternatives = []
        if top:
            values, indices = logprobs.topk(top)
            alternatives = [(*self._token_text(i), v) for i, v in zip(indices.tolist(), values.tolist())]
        return token_logprob(*self._token_text(token_id), logprobs[token_id].item(), alternatives)

    def _alternatives(self, top) -> list[tuple[str, bytes, float]]:
        return [(*self._token_text(token_id), value) for token_id, value in top]

    # -- rollouts (swiftkit rollout; see swiftkit.inference.rollout_ops) ---------------------------

    def rollout_identity(self) -> dict:
        return rollout_ops.transformers_identity(self)

    def generate_rollouts(self, request, batch_size: int | None = None) -> list:
        return rollout_ops.transformers_rollouts(self, request, batch_size)

    def update_weights(self, tensors: dict, metadata: dict) -> None:
        rollout_ops.transformers_update(self, tensors, metadata)

    # -- scoring ---------------------------------------------------------------------------------

    def prompt_logprobs(self, prompts: list[list[int]], top: int, model: str | None = None,
                        cancel: threading.Event | None = None) -> list[list[dict]]:
        """Per prompt, each token's entry (see :func:`token_logprob`), scored in one batch with
        ``model``'s adapter; the first token's ``logprob`` and ``top_logprobs`` are None."""
        if cancel is not None and cancel.is_set():
            return [[] for _ in prompts]
        with self._model_lock, self._using(model):
            scored = token_logprobs(self.model, prompts, pad_token_id=self.pad_token_id,
                                    batch_size=max(1, len(prompts)), top=top)
        out = []
        for ids, scores in zip(prompts, scored):
            first = {**token_logprob(*self._token_text(ids[0]), None), "top_logprobs": None}
            out.append([first] + [token_logprob(*self._token_text(s.token_id), s.logprob, self._alternatives(s.top))
                                  for s in scores])
        return out

    # -- generation ------------------------------------------------------------------------------

    def generate_ids(self, prompts: list[list[int]], params: SamplingParams, model: str | None = None,
                     cancel: threading.Event | None = None) -> list[Generated]:
        """One reply per prompt (token ids), generated as one left-padded batch with ``model``'s adapter
        (prompts with images one by one, each with its features)."""
        if any(isinstance(p, MediaPrompt) for p in prompts):  # each with its own image features
            return [reply for p in prompts for reply in self._generate_batch([p], params, model, cancel)]
        return self._generate_batch(prompts, params, model, cancel)

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams, model: str | None,
                        cancel: threading.Event | None) -> list[Generated]:
        import torch  # defers torch

        input_ids, mask = self._batch(prompts)
        features = _features(prompts[0], self.model)
        width = input_ids.shape[1]
        stopper = _stopping_criteria(width, params.stop, self._decode, cancel)
        with self._model_lock, self._using(model), torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, stopping_criteria=[stopper],
                                      generation_config=self._generation_config(params), **features)
        steps = out.logits if params.logprobs else None
        rows = (out.sequences if params.logprobs else out)[:, width:].tolist()
        return [self._finish(ids[:stopper.stopped_at[i] - width] if i in stopper.stopped_at else ids, params,
                             steps, i)
                for i, ids in enumerate(rows)]

    def stream_ids(self, prompt: list[int], params: SamplingParams, model: str | None = None,
                   cancel: threading.Event | None = None) -> Iterator[str | Generated]:
        """Yield text pieces as tokens arrive, then the :class:`Generated` reply (same text as generate)."""
        import torch  # defers torch

        input_ids, mask = self._batch([prompt])
        features = _features(prompt, self.model)
        cancel = cancel or threading.Event()
        stopper = _stopping_criteria(input_ids.shape[1], params.stop, self._decode, cancel)
        streamer = _TokenQueue()
        failure: list[BaseException] = []

        def work():
            try:
                with self._using(model), torch.inference_mode():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    self.model.generate(input_ids=input_ids, attention_mask=mask, streamer=streamer,
                                        stopping_criteria=[stopper], generation_config=self._generation_config(params),
                                        **features)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        with self._model_lock:
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            try:
                yield from self._pieces(streamer, params, cancel, failure)
            finally:
                cancel.set()  # a consumer that stops early ends generation too
                thread.join()

    # -- token by token (continuous batching) ----------------------------------------------------

    def _decoding(self, params: SamplingParams, input_ids, mask):
        """What ``generate`` would use for ``params`` and this prompt: whether it samples, its logits
        processors (the model's generation config under the request's settings) and its stop token ids."""
        config, _ = self.model._prepare_generation_config(self._generation_config(params))
        self.model._prepare_special_tokens(config, True, device=input_ids.device)
        processors = self.model._get_logits_processor(
            generation_config=config, input_ids_seq_length=input_ids.shape[1], encoder_input_ids=input_ids,
            device=input_ids.device, model_kwargs={"attention_mask": mask})
        eos = config._eos_token_tensor
        return bool(config.do_sample), processors, set(eos.reshape(-1).tolist()) if eos is not None else set()

    def _chooser(self, params: SamplingParams, sample: bool, processors, eos: set[int]):
        """``choose(seq, logits) -> (token, logprob entry or None, stop)`` for one request's sequences,
        picking tokens as ``generate`` does (processors, then softmax sampling or argmax)."""
        import torch  # defers torch

        window = max((len(s) for s in params.stop), default=0) + 8  # tokens, as in generate_ids' stop check

        def choose(seq: Sequence, logits):
            scores = logits[None]
            if processors:
                scores = processors(torch.tensor([seq.prompt + seq.ids], device=logits.device), scores)
            if sample:
                token = int(torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[0, 0])
            else:
                token = int(scores[0].argmax())
            entry = self._logprob_entry(logits, token, params.top_logprobs) if params.logprobs else None
            stop = token in eos or bool(params.stop) and any(
                s in self._decode((seq.ids + [token])[-window:]) for s in params.stop)
            return token, entry, stop

        return choose

    def _sequence_reply(self, seq: Sequence) -> Generated:
        return self._finish(seq.ids, seq.params, entries=seq.entries)

    def prefill(self, prompt: list[int], params: SamplingParams, model: str | None = None, n: int = 1,
                stream: bool = False) -> list[Sequence]:
        """Run ``prompt`` through the model with ``model``'s adapter and start ``n`` sequences from it,
        each with its first token chosen (and ``done`` if that already ends it); with ``stream`` each
        collects its text pieces. They continue with :meth:`decode_step` in a batch of ``model``."""
        import torch  # defers torch
        from transformers import DynamicCache  # defers transformers

        device = self.model.device
        input_ids = torch.tensor([prompt], device=device)
        mask = torch.ones_like(input_ids)
        with self._model_lock, self._using(model), torch.inference_mode():
            sample, processors, eos = self._decoding(params, input_ids, mask)
            choose = self._chooser(params, sample, processors, eos)
            seqs = [Sequence(list(prompt), params, model, choose=choose, finish=self._sequence_reply,
                             pieces=TextPieces(self._decode, self.codec.until_stop, params.stop) if stream else None)
                    for _ in range(n)]
            if params.max_tokens <= 0:
                for seq in seqs:
                    seq.stop()
                return seqs
            cache = DynamicCache()
            extra = {"logits_to_keep": 1} if self._logits_to_keep else {}
            out = self.model(input_ids=input_ids, attention_mask=mask, cache=cache, use_cache=True,
                             position_ids=torch.arange(len(prompt), device=device)[None], **extra)
            logits = out.logits[:, -1].to(dtype=torch.float32)
            layers = [(layer.keys, layer.values) for layer in cache.layers]
            if not layers or any(getattr(k, "shape", (0, 0))[-2] != len(prompt) for k, _ in layers):
                raise RuntimeError(f"{type(self.model).__name__}'s cache is not plain keys and values per layer; "
                                   "it cannot be decoded in a continuous batch")
            for seq in seqs:
                seq.prefill_cache = layers
                seq.advance(logits[0])
        return seqs

    def new_batch(self, model: str | None = None) -> DecodeBatch:
        """An empty batch for sequences of ``model`` (see :meth:`decode_step`)."""
        return DecodeBatch(model)

    def decode_step(self, batch: DecodeBatch, seqs: list[Sequence]) -> None:
        """One more token for each of ``seqs`` (unfinished, all from :meth:`prefill` with ``batch.model``):
        the batch's rows become ``seqs`` (its cache rebuilt if they changed), then one forward pass.
        After a failure the batch's cache is unusable: start a new batch."""
        import torch  # defers torch

        with self._model_lock, self._using(batch.model), torch.inference_mode():
            batch.arrange(seqs)
            device = self.model.device
            mask = torch.cat([batch.mask, batch.mask.new_ones(len(seqs), 1)], dim=1)
            out = self.model(input_ids=torch.tensor([[s.next_token] for s in seqs], device=device),
                             position_ids=torch.tensor([[s.position] for s in seqs], device=device),
                             attention_mask=mask, cache=batch.cache, use_cache=True)
            batch.mask = mask
            logits = out.logits[:, -1].to(dtype=torch.float32)
            for i, seq in enumerate(seqs):
                seq.position += 1
                seq.advance(logits[i])

    def _pieces(self, streamer: _TokenQueue, params: SamplingParams, cancel: threading.Event,
                failure: list[BaseException]):
        text_pieces = TextPieces(self._decode, self.codec.until_stop, params.stop)
        while True:
            item = streamer.items.get()
            if item is _TokenQueue.DONE:
                break
            piece = text_pieces.add(item)  # nothing once a stop is reached: drain until generate ends
            if text_pieces.hit_string:
                cancel.set()
            if piece:
                yield piece
        if failure:  # raised before the final reply, so a failed stream never ends as a success
            raise failure[0]
        ids = text_pieces.ids
        text, hit_string = cut_at_stop_string(self._decode(ids), params.stop)
        rest = text_pieces.rest(text)
        if rest:
            yield rest
        done = text_pieces.hit_token or hit_string or len(ids) < params.max_tokens
        yield Generated(text, len(ids) + int(text_pieces.hit_token), "stop" if done else "length")

"""The model under evaluation loaded in this process: :class:`LocalEvalModel` (meets
:class:`~swiftkit.evaluate.model.EvalModel`).

Replies come from :class:`~swiftkit.inference.engine.TransformersEngine`, the engine ``swiftkit
infer`` uses, so a benchmark hears what ``infer`` would say. Log-likelihoods come from
:func:`swiftkit.inference.scoring.token_logprobs`, the pass ``swiftkit deploy`` scores prompts with,
so the same model scores the same here and behind a server.

How texts become tokens (the choices a log-likelihood depends on):

* Texts are tokenized without special tokens, then the tokenizer's own beginning-of-text prefix
  is put in front of a plain text: the BOS token when the tokenizer adds one to plain text by
  itself (``add_special_tokens=True`` does), as a server tokenizing a completions prompt does.
  A context that already starts with the BOS text (a prompt from :meth:`LocalEvalModel.render`
  whose chat template writes it) gets none. Tokenizers that add no BOS (Qwen, SmolLM2, GPT-2
  style) get nothing, and the first token of a text then has nothing before it to be scored from:
  it is left out (of a rolling log-likelihood's count too, and of a continuation after an empty
  context).
* The continuation's tokens are those of ``context + continuation`` after the longest common
  prefix with the context's own tokens: when the tokenizer merges the context's last characters
  with the continuation's first (BPE), the merged token counts as continuation.
* A sequence longer than ``max_length`` loses tokens from its start; the continuation is kept whole
  (one longer than ``max_length`` is an error).
* ``rolling_loglikelihood`` scores a long text in windows of ``max_length`` tokens: the first
  window scores all its tokens; each later one is conditioned on the ``max_length // 2`` tokens
  before it and scores the next ``max_length - max_length // 2``, so every token is scored exactly
  once and, after the first window, with at least half a window of context.

The model may be the one being trained (a peft model): it is scored and generates in eval mode,
and is left in the mode it was found in.
"""

from __future__ import annotations

import contextlib

from swiftkit.inference.engine import TransformersEngine
from swiftkit.inference.protocol import SamplingParams
from swiftkit.inference.scoring import max_positions, token_logprobs


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class LocalEvalModel:
    """``model`` (a causal LM, possibly peft-wrapped) and its ``template`` as an evaluation model."""

    def __init__(self, model, template, *, name: str, batch_size: int = 8, max_length: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.template = template
        self.name = name
        self.batch_size = batch_size
        self.max_length = max_length or max_positions(model)
        if self.max_length is None or self.max_length < 2:
            raise ValueError("max_length is needed: the model's config has no max_position_embeddings")
        self.tokenizer = template.tokenizer
        self._engine = None
        self._bos = self._bos_prefix()

    # -- tokens ----------------------------------------------------------------------------------

    def _bos_prefix(self) -> list[int]:
        """``[bos_token_id]`` when the tokenizer starts plain text with its BOS token, else ``[]``."""
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return []
        return [bos] if self.tokenizer("a")["input_ids"][:1] == [bos] else []

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prefix_for(self, context: str) -> list[int]:
        if self._bos and context.startswith(self.tokenizer.bos_token):
            return []
        return list(self._bos)

    @property
    def pad_token_id(self) -> int:
        return self.engine.pad_token_id

    @property
    def engine(self):
        """The :class:`~swiftkit.inference.engine.TransformersEngine` replies come from (built once)."""
        if self._engine is None:
            self._engine = TransformersEngine(self.model, self.template)
        return self._engine

    @contextlib.contextmanager
    def _eval_mode(self):
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    # -- EvalModel -------------------------------------------------------------------------------

    def render(self, messages: list[dict]) -> str:
        """The prompt text of ``messages`` as ``swiftkit infer`` encodes it (ending with the assistant
        turn's opening), special tokens written out; tokenizing it without special tokens gives the
        same ids back."""
        ids = self.template.encode_prompt(messages)
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def generate(self, conversations: list[list[dict]], *, max_new_tokens: int = 512, stop: list[str] | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, top_k: int = 50,
                 repetition_penalty: float = 1.0) -> list[str]:
        """Replies in batches of ``batch_size`` (shortest prompts together), in the given order."""
        params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                repetition_penalty=repetition_penalty, stop=tuple(stop or ()))
        prompts = [self.engine.prompt_ids(messages) for messages in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        replies: list[str] = [""] * len(prompts)
        with self._eval_mode():
            for b in range(0, len(order), self.batch_size):
                batch = order[b:b + self.batch_size]
                for i, reply in zip(batch, self.engine.generate_ids([prompts[i] for i in batch], params)):
                    replies[i] = reply.text
        return replies

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Sum of the continuation's token log-probabilities after the context, and whether each of
        those tokens is the model's likeliest (see the module docstring for how texts are tokenized)."""
        sequences, starts, empty = [], [], set()
        for k, (context, continuation) in enumerate(requests):
            prefix = self._prefix_for(context)
            context_ids = prefix + self._ids(context)
            full = prefix + self._ids(context + continuation)
            start = max(_common_prefix(context_ids, full), 1)
            if start >= len(full):
                empty.add(k)  # nothing to score: an empty continuation
                full, start = full[:1] or [self.pad_token_id], 1
            elif len(full) - start >= self.max_length:
                raise ValueError(f"request {k}: the continuation has {len(full) - start} tokens; max_length "
                                 f"{self.max_length} leaves no room for the context")
            cut = max(0, len(full) - self.max_length)
            sequences.append(full[cut:])
            starts.append(start - cut)
        scored = token_logprobs(self.model, sequences, pad_token_id=self.pad_token_id, batch_size=self.batch_size,
                                starts=starts)
        return [(0.0, True) if k in empty else (sum(s.logprob for s in scores), all(s.greedy for s in scores))
                for k, scores in enumerate(scored)]

    def rolling_loglikelihood(self, texts: list[str]) -> list[tuple[float, int]]:
        """Sum of the log-probabilities of every token of each text that can be scored, and their number."""
        windows, starts, owner = [], [], []
        for k, text in enumerate(texts):
            ids = list(self._bos) + self._ids(text)
            for window, start in self._windows(ids):
                windows.append(window)
                starts.append(start)
                owner.append(k)
        scored = token_logprobs(self.model, windows, pad_token_id=self.pad_token_id, batch_size=self.batch_size,
                                starts=starts)
        totals = [[0.0, 0] for _ in texts]
        for k, scores in zip(owner, scored):
            totals[k][0] += sum(s.logprob for s in scores)
            totals[k][1] += len(scores)
        return [(total, count) for total, count in totals]

    def _windows(self, ids: list[int]) -> list[tuple[list[int], int]]:
        """``(window, first scored index in it)`` covering ``ids[1:]`` once (see the module docstring)."""
        length, context = self.max_length, self.max_length // 2
        out, scored_to = [], 1  # ids[0] has nothing before it
        while scored_to < len(ids):
            begin = 0 if scored_to == 1 else scored_to - context
            end = min(len(ids), begin + length)
            out.append((ids[begin:end], scored_to - begin))
            scored_to = end
        return out

"""What an evaluator asks of the model under evaluation: :class:`EvalModel`.

Two implementations meet it: :class:`swiftkit.evaluate.local.LocalEvalModel` (a model loaded in this
process, or the model being trained) and :class:`swiftkit.evaluate.remote.RemoteEvalModel` (any
OpenAI-compatible server, ``--eval_url``). Evaluators see only this protocol, so every benchmark runs
the same way on both.

Texts, not token ids, cross this boundary: a server tokenizes for itself, and an in-process model
tokenizes with its own tokenizer, so a log-likelihood is always "of this continuation after this
context" in the model's own tokens.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class LogprobsUnavailable(RuntimeError):
    """The model cannot score given text (a server that returns no prompt log-probabilities)."""


@runtime_checkable
class EvalModel(Protocol):
    """The model an evaluation scores."""

    name: str  # shown in reports: the served model name, or the model / adapters path

    def render(self, messages: list[dict]) -> str | None:
        """The prompt text the model's chat template makes of ``messages`` (ending with the
        assistant turn's opening), or ``None`` when prompts cannot be rendered here (a remote model:
        its template is on the server); log-likelihood tasks then score plain text."""

    def generate(self, conversations: list[list[dict]], *, max_new_tokens: int = 512, stop: list[str] | None = None,
                 temperature: float = 0.0, **generation) -> list[str]:
        """One reply per conversation (the model's chat template applied), cut before any ``stop``
        string; greedy when ``temperature`` is 0. ``generation`` may also hold ``top_p``, ``top_k`` and
        ``repetition_penalty`` (the keywords of ``ReplyEngine.generate``, so a benchmark written for an
        inference engine runs unchanged)."""

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """For each ``(context, continuation)``: the sum of the log-probabilities of the
        continuation's tokens following the context, and whether greedy decoding would produce
        exactly those tokens. Raises :class:`LogprobsUnavailable` when the model cannot say."""

    def rolling_loglikelihood(self, texts: list[str]) -> list[tuple[float, int]]:
        """For each text: the sum of the log-probabilities of all its tokens (each given every
        token before it, the first given the beginning-of-text token where the tokenizer has one)
        and the number of tokens scored. Raises :class:`LogprobsUnavailable` when it cannot."""

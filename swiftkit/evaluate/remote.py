"""The model under evaluation behind an OpenAI-compatible server: :class:`RemoteEvalModel` (meets
:class:`~swiftkit.evaluate.model.EvalModel`), talking through the ``openai`` client.

Replies come from ``/v1/chat/completions`` (the server applies its own chat template, so
:meth:`RemoteEvalModel.render` returns None). Log-likelihoods come from ``/v1/completions`` with
``echo`` and ``logprobs`` and ``max_tokens`` 0: the server returns the prompt's own tokens with
their log-probabilities (``swiftkit deploy`` with the transformers engine and vLLM do; OpenAI's
current models do not). A server that refuses ``max_tokens`` 0 is asked once more with 1, and the
generated token is ignored; a server without prompt log-probabilities raises
:class:`~swiftkit.evaluate.model.LogprobsUnavailable`, naming the URL.

The server tokenizes, so the split between context and continuation is found in its tokens by
their ``text_offset``: a continuation token is one whose text ends after the context ends. A token
that straddles the boundary (the tokenizer merged the context's last characters with the
continuation's first) therefore counts as continuation, which is what
:class:`~swiftkit.evaluate.local.LocalEvalModel` does too. The first token of a prompt has no
log-probability (nothing before it, unless the server's tokenizer adds a BOS token) and is not
counted. Texts longer than the server's context are refused by the server (no windowing here).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from swiftkit.core.errors import SwiftkitError
from swiftkit.evaluate.model import LogprobsUnavailable

GREEDY_TOLERANCE = 1e-6  # a token within this of the top log-probability counts as the likeliest


class EvalServerError(SwiftkitError, RuntimeError):
    """The evaluation server cannot be reached, or it refused a request for a reason other than logprobs."""


def api_url(base_url: str) -> str:
    """``base_url`` as the client's API root: a bare ``http://host:port`` gets ``/v1``."""
    url = base_url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


class RemoteEvalModel:
    """A model served over HTTP (``--eval_url``); ``model`` None picks the first of ``GET /v1/models``."""

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 concurrency: int = 4, timeout_s: float = 600):
        import openai  # defers openai

        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.url = api_url(base_url)
        self.concurrency = concurrency
        self._openai = openai
        self.client = openai.OpenAI(base_url=self.url, api_key=api_key or "none", timeout=timeout_s, max_retries=1)
        self._scoring_max_tokens = 0  # becomes 1 once the server refuses 0
        self.name = model or self._first_model()

    # -- calls -----------------------------------------------------------------------------------

    def _call(self, what: str, create, **kwargs):
        """``create(**kwargs)``; an unreachable server or a refusal becomes one line naming the URL."""
        openai = self._openai
        try:
            return create(**kwargs)
        except openai.APIConnectionError as exc:
            raise EvalServerError(f"cannot reach the model server at {self.url} ({what}): {exc}; is `swiftkit "
                                  "deploy` (or another OpenAI-compatible server) running there?") from None
        except openai.APIStatusError as exc:
            raise EvalServerError(f"the model server at {self.url} answered {what} with {exc.status_code}: "
                                  f"{_message(exc)}") from None

    def _first_model(self) -> str:
        listed = self._call("GET /models", self.client.models.list).data
        if not listed:
            raise EvalServerError(f"the model server at {self.url} serves no model (GET /models is empty)")
        return listed[0].id

    def _map(self, fn, items: list) -> list:
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(fn, items))

    # -- EvalModel -------------------------------------------------------------------------------

    def render(self, messages: list[dict]) -> None:
        """None: the chat template is on the server."""
        return None

    def generate(self, conversations: list[list[dict]], *, max_new_tokens: int = 512, stop: list[str] | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, top_k: int | None = None,
                 repetition_penalty: float | None = None) -> list[str]:
        """One chat completion per conversation, ``concurrency`` at a time, in the given order. ``top_k`` and
        ``repetition_penalty`` are not OpenAI parameters: they go in the body as vLLM and swiftkit deploy
        read them."""
        extra = {k: v for k, v in (("top_k", top_k), ("repetition_penalty", repetition_penalty)) if v is not None}

        def reply(messages: list[dict]) -> str:
            out = self._call("POST /chat/completions", self.client.chat.completions.create, model=self.name,
                             messages=messages, max_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                             stop=list(stop) if stop else None, extra_body=extra or None)
            return out.choices[0].message.content or ""

        return self._map(reply, conversations)

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Sum of the continuation's token log-probabilities after the context (see the module
        docstring for the boundary), and whether each of them was the likeliest token."""
        def score(request: tuple[str, str]) -> tuple[float, bool]:
            context, continuation = request
            if not continuation:
                return 0.0, True
            tokens = self._prompt_logprobs(context + continuation)
            picked = [(lp, top) for lp, top, _, end in tokens if end > len(context) and lp is not None]
            return sum(lp for lp, _ in picked), all(_likeliest(lp, top) for lp, top in picked)

        return self._map(score, requests)

    def rolling_loglikelihood(self, texts: list[str]) -> list[tuple[float, int]]:
        """Sum of the log-probabilities of every token of each text the server scores, and their number."""
        def score(text: str) -> tuple[float, int]:
            if not text:
                return 0.0, 0
            logprobs = [lp for lp, _, _, _ in self._prompt_logprobs(text) if lp is not None]
            return sum(logprobs), len(logprobs)

        return self._map(score, texts)

    # -- prompt log-probabilities ----------------------------------------------------------------

    def _prompt_logprobs(self, prompt: str) -> list[tuple[float | None, dict | None, int, int]]:
        """``(logprob, top alternatives, start, end)`` of each of the prompt's tokens, as the server
        scores them (start and end: character offsets into ``prompt``)."""
        out = self._echo(prompt)
        choice = out.choices[0] if out.choices else None
        lp = getattr(choice, "logprobs", None)
        if lp is None or not lp.token_logprobs or lp.text_offset is None:
            raise LogprobsUnavailable(self._unavailable("it returned no logprobs for the prompt"))
        offsets = list(lp.text_offset)
        usage = getattr(out, "usage", None)
        count = getattr(usage, "prompt_tokens", None)
        if not isinstance(count, int) or not 0 < count <= len(offsets):
            count = sum(1 for offset in offsets if offset < len(prompt)) or len(offsets)
        tops = list(lp.top_logprobs or [None] * len(offsets))
        ends = [*offsets[1:count], len(prompt)]
        return [(lp.token_logprobs[i], tops[i], offsets[i], ends[i]) for i in range(count)]

    def _echo(self, prompt: str):
        """The completion echoing ``prompt`` with its logprobs (``max_tokens`` 0, or 1 if 0 is refused)."""
        openai = self._openai
        while True:
            max_tokens = self._scoring_max_tokens
            try:
                return self.client.completions.create(model=self.name, prompt=prompt, echo=True, logprobs=1,
                                                      max_tokens=max_tokens, temperature=0)
            except openai.APIConnectionError as exc:
                raise EvalServerError(f"cannot reach the model server at {self.url} (POST /completions): {exc}; "
                                      "is `swiftkit deploy` (or another OpenAI-compatible server) running there?"
                                      ) from None
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                message = _message(exc)
                if max_tokens == 0 and "max_tokens" in message and "logprobs" not in message:
                    self._scoring_max_tokens = 1
                    continue
                if "context" in message and "logprob" not in message and "echo" not in message:
                    raise EvalServerError(f"the model server at {self.url} refused a text to score: {message}"
                                          ) from None
                raise LogprobsUnavailable(self._unavailable(f"it answered {exc.status_code}: {message}")) from None
            except openai.APIStatusError as exc:
                raise EvalServerError(f"the model server at {self.url} answered POST /completions with "
                                      f"{exc.status_code}: {_message(exc)}") from None

    def _unavailable(self, why: str) -> str:
        return (f"the model server at {self.url} cannot score given text ({why}): log-likelihood benchmarks "
                "need prompt log-probabilities (POST /completions with 'echo': true and 'logprobs', as "
                "`swiftkit deploy` and vLLM serve them); run generative benchmarks against this server instead")


def _message(exc) -> str:
    """The server's own error message (OpenAI shape, or FastAPI's ``detail``), else the client's text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("detail"), str):
            return body["detail"]
        return str(body)
    return str(getattr(exc, "message", exc))


def _likeliest(logprob: float, top: dict | None) -> bool:
    """Whether a token with ``logprob`` is the likeliest, given the top alternatives the server listed."""
    return bool(top) and logprob >= max(top.values()) - GREEDY_TOLERANCE

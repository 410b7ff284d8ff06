"""OpenAI-compatible request and response shapes, checked by hand (no web framework needed).

``ChatRequest.from_dict`` / ``CompletionRequest.from_dict`` take the parsed JSON body of
``/v1/chat/completions`` / ``/v1/completions`` and raise :class:`ProtocolError` (a ``ValueError``
carrying the offending field in ``param``) for anything malformed or unsupported. Fields the
client leaves out take the server's defaults (``SamplingDefaults``, from ``GenerationArgs``);
``top_k`` and ``repetition_penalty`` are extensions to the OpenAI schema. Unknown fields are
ignored, as OpenAI-compatible servers commonly do. Chat requests may ask for ``logprobs`` (with
``top_logprobs`` 0-20) when they do not stream; completions take ``logprobs`` as an integer 0-5,
and with ``echo`` they get the prompt's tokens scored too (``max_tokens`` 0: only the prompt's, no
generation; see :func:`echoed_logprobs`). The ``*_response`` / ``*_chunk`` functions
build the JSON bodies (``chat.completion``, ``chat.completion.chunk``, ``text_completion``).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

from swiftkit.data.media import IMAGE_TAG

ROLES = ("system", "user", "assistant", "tool", "developer")
FINISH_REASONS = ("stop", "length", "tool_calls")


class ProtocolError(ValueError):
    """A request body is malformed or asks for something unsupported; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code


@dataclass(frozen=True)
class SamplingDefaults:
    """Server-side values for the generation fields a request leaves out."""

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0


@dataclass(frozen=True)
class SamplingParams:
    """How to generate; requests with equal params (and model) may share a batch.

    ``max_tokens`` is the client's value or the server default; the engine lowers a default that
    does not fit the context, while a client's value that does not fit is an error.
    """

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False  # report each generated token's log-probability (chat only)
    top_logprobs: int = 0  # and this many most likely alternatives per position (0-20)


MIN_TEMPERATURE = 1e-5  # below it a request is greedy: logits / 1e-310 overflow to inf, then NaN


def sampling(params: SamplingParams) -> bool:
    """Whether ``params`` sample (temperature >= MIN_TEMPERATURE) rather than decode greedily."""
    return params.temperature >= MIN_TEMPERATURE


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


# -- field checks --------------------------------------------------------------------------------

def _number(body: dict, name: str, default, *, lo=None, hi=None, integer=False, lo_open=False):
    value = body.get(name)
    if value is None:
        return default
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ProtocolError(f"'{name}' must be {kind}, got {value!r}", name)
    if not math.isfinite(value):
        raise ProtocolError(f"'{name}' must be a finite number, got {value!r}", name)
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ProtocolError(f"'{name}' must be {'>' if lo_open else '>='} {lo}, got {value!r}", name)
    if hi is not None and value > hi:
        raise ProtocolError(f"'{name}' must be <= {hi}, got {value!r}", name)
    return value


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
        raise ProtocolError(f"'stop' must be a non-empty string or a list of them, got {stop!r}", "stop")
    return tuple(dict.fromkeys(items))


MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5


def _logprobs(body: dict, chat: bool) -> tuple[bool, int]:
    """``(logprobs, top_logprobs)``: chat asks with a bool plus a count, completions with one integer."""
    if not chat:
        top = _number(body, "logprobs", None, lo=0, hi=MAX_COMPLETION_LOGPROBS, integer=True)
        if top is not None and body.get("stream"):
            raise ProtocolError("'logprobs' is not supported with 'stream': true; ask without streaming", "logprobs")
        return top is not None, top or 0
    want = body.get("logprobs")
    if want is None:
        want = False
    if not isinstance(want, bool):
        raise ProtocolError(f"'logprobs' must be true or false, got {want!r}", "logprobs")
    top = _number(body, "top_logprobs", None, lo=0, hi=MAX_TOP_LOGPROBS, integer=True)
    if top is not None and not want:
        raise ProtocolError("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    if want and body.get("stream"):
        raise ProtocolError("'logprobs' is not supported with 'stream': true; ask without streaming", "logprobs")
    return want, top or 0


def _reject_unsupported(body: dict) -> None:
    if body.get("logit_bias"):
        raise ProtocolError("'logit_bias' is not supported by this server", "logit_bias")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name):
            raise ProtocolError(f"'{name}' is not supported; use 'repetition_penalty' (extension)", name)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type", "text") != "text":
        raise ProtocolError("only 'response_format' {\"type\": \"text\"} is supported", "response_format")


def _common(body, defaults: SamplingDefaults, max_tokens_field: str = "max_tokens", chat: bool = False):
    """Model name, SamplingParams, n, stream and include_usage shared by both request kinds."""
    if not isinstance(body, dict):
        raise ProtocolError(f"the request body must be a JSON object, got {type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProtocolError("'model' is required: the name of a served model (GET /v1/models)", "model")
    _reject_unsupported(body)
    logprobs, top_logprobs = _logprobs(body, chat)
    # completions may ask for no new token: with 'echo' that scores the prompt alone
    max_tokens = _number(body, max_tokens_field, None, lo=1 if chat else 0, integer=True)
    if max_tokens is None and max_tokens_field != "max_tokens":
        max_tokens = _number(body, "max_tokens", None, lo=1, integer=True)
    params = SamplingParams(
        max_tokens=max_tokens if max_tokens is not None else defaults.max_tokens,
        temperature=float(_number(body, "temperature", defaults.temperature, lo=0, hi=2)),
        top_p=float(_number(body, "top_p", defaults.top_p, lo=0, hi=1, lo_open=True)),
        top_k=int(_number(body, "top_k", defaults.top_k, lo=-1, integer=True)),
        repetition_penalty=float(_number(body, "repetition_penalty", defaults.repetition_penalty, lo=0, lo_open=True)),
        stop=_stop(body),
        seed=_number(body, "seed", None, integer=True),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )
    n = _number(body, "n", 1, lo=1, hi=16, integer=True)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ProtocolError(f"'stream' must be true or false, got {stream!r}", "stream")
    if stream and n > 1:
        raise ProtocolError("'n' > 1 is not supported with 'stream': true", "n")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ProtocolError("'stream_options' must be an object", "stream_options")
    return model, params, n, stream, bool(options.get("include_usage", False)), max_tokens is not None


def _content_text(content, where: str) -> tuple[str | None, list[str]]:
    """A message's content as text and its images: a string, None, or a list of ``{"type": "text"}`` and
    ``{"type": "image_url", "image_url": {"url": ...}}`` parts (each image becomes an ``<image>`` tag where it
    stands; the url is an http(s) or data URL)."""
    if content is None or isinstance(content, str):
        return content, []
    if isinstance(content, list):
        texts, images = [], []
        for k, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
                continue
            if kind == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if isinstance(url, str) and url:
                    texts.append(IMAGE_TAG)
                    images.append(url)
                    continue
                raise ProtocolError(f"{where}.content[{k}].image_url.url must be an http(s) or data URL",
                                    f"{where}.content")
            raise ProtocolError(f"{where}.content[{k}]: only text and image_url parts are supported, got "
                                f"{str(part)[:200]}", f"{where}.content")
        return "".join(texts), images
    raise ProtocolError(f"{where}.content must be a string or a list of text and image_url parts", f"{where}.content")


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProtocolError("'messages' is required: a non-empty list of {role, content} objects", "messages")
    out = []
    for k, message in enumerate(messages):
        where = f"messages[{k}]"
        if not isinstance(message, dict):
            raise ProtocolError(f"{where} must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role not in ROLES:
            raise ProtocolError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", f"{where}.role")
        msg = {key: value for key, value in message.items() if value is not None and key != "images"}
        msg["role"] = "system" if role == "developer" else role
        content, images = _content_text(message.get("content"), where)
        if content is None and not message.get("tool_calls"):
            raise ProtocolError(f"{where}.content is required", f"{where}.content")
        msg["content"] = content if content is not None else ""
        if images:
            if role != "user":
                raise ProtocolError(f"{where}: images are taken in user messages only", f"{where}.content")
            msg["images"] = images
        out.append(msg)
    return out


def _tools(body: dict) -> list[dict] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise ProtocolError("'tools' must be a list of tool objects", "tools")
    if body.get("tool_choice") == "none":
        return None
    return tools or None


# -- requests ------------------------------------------------------------------------------------

@dataclass
class ChatRequest:
    model: str
    messages: list[dict]
    params: SamplingParams = field(default_factory=SamplingParams)
    tools: list[dict] | None = None
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    max_tokens_given: bool = False  # the client set max_tokens / max_completion_tokens

    @classmethod
    def from_dict(cls, body, defaults: SamplingDefaults = SamplingDefaults()) -> ChatRequest:
        model, params, n, stream, usage, given = _common(body, defaults, "max_completion_tokens", chat=True)
        return cls(model, _messages(body), params, _tools(body), n, stream, usage, given)


@dataclass
class CompletionRequest:
    model: str
    prompts: list[str]
    params: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    max_tokens_given: bool = False
    echo: bool = False

    @classmethod
    def from_dict(cls, body, defaults: SamplingDefaults = SamplingDefaults()) -> CompletionRequest:
        model, params, n, stream, usage, given = _common(body, defaults)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ProtocolError("'prompt' is required: a string or a non-empty list of strings", "prompt")
        if stream and len(prompts) > 1:
            raise ProtocolError("several prompts are not supported with 'stream': true", "prompt")
        if body.get("suffix"):
            raise ProtocolError("'suffix' is not supported by this server", "suffix")
        echo = body.get("echo", False)
        if not isinstance(echo, bool):
            raise ProtocolError(f"'echo' must be true or false, got {echo!r}", "echo")
        if params.max_tokens == 0 and not echo:
            raise ProtocolError("'max_tokens': 0 generates nothing; it needs 'echo': true (the prompt returned, "
                                "with its token logprobs when 'logprobs' is set)", "max_tokens")
        if params.max_tokens == 0 and stream:
            raise ProtocolError("'max_tokens': 0 is not supported with 'stream': true", "max_tokens")
        return cls(model, prompts, params, n, stream, usage, given, echo)


# -- responses -----------------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def chat_message(content: str | None, tool_calls: list[dict] | None = None) -> dict:
    """An assistant message; with ``tool_calls`` its content may be None (nothing outside the calls)."""
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def chat_response(request_id: str, model: str, results, usage: Usage, logprobs: list | None = None) -> dict:
    """``results``: one ``(text, finish_reason)`` or ``(content, finish_reason, tool_calls)`` per choice;
    ``logprobs``: per choice, its list of token entries (see :func:`token_logprob`) or None."""
    logprobs = logprobs or [None] * len(results)
    choices = [
        {"index": i, "message": chat_message(*result[:1], *result[2:]),
         "logprobs": {"content": lp} if lp is not None else None, "finish_reason": result[1]}
        for i, (result, lp) in enumerate(zip(results, logprobs))
    ]
    return {"id": request_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage.to_dict()}


def token_logprob(token: str, raw: bytes, logprob: float | None,
                  top: list[tuple[str, bytes, float]] | None = None) -> dict:
    """One entry of ``choices[i].logprobs.content``; ``top`` (alternatives) only on outer entries.
    A prompt's first token has ``logprob`` None (see :func:`echoed_logprobs`)."""
    entry = {"token": token, "logprob": logprob, "bytes": list(raw)}
    if top is not None:
        entry["top_logprobs"] = [token_logprob(*alternative) for alternative in top]
    return entry


def chat_chunk(request_id: str, model: str, delta: dict, finish_reason: str | None = None,
               usage: Usage | None = None, created: int | None = None) -> dict:
    """One stream event; with ``usage`` and empty ``delta`` it is the final usage-only chunk."""
    choices = [] if usage is not None and not delta and finish_reason is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    ]
    return {"id": request_id, "object": "chat.completion.chunk", "created": created or int(time.time()),
            "model": model, "choices": choices, "usage": usage.to_dict() if usage is not None else None}


def tool_call_deltas(calls: list[dict]) -> list[dict]:
    """``calls`` as stream deltas: each whole, with its ``index`` among the reply's calls."""
    return [{"index": i, **call} for i, call in enumerate(calls)]


def _text_offsets(entries: list[dict], start: int = 0) -> list[int]:
    """Where each token starts: ``start`` plus the characters of the tokens before it (from their
    bytes; a partial character reads as U+FFFD)."""
    offsets, seen = [], b""
    for entry in entries:
        offsets.append(start + len(seen.decode("utf-8", errors="replace")))
        seen += bytes(entry["bytes"])
    return offsets


def completion_logprobs(entries: list[dict]) -> dict:
    """Chat-style token entries (see :func:`token_logprob`) in the legacy completions shape. Entries
    from :func:`echoed_logprobs` carry their own ``text_offset``; a prompt's first token has
    ``logprob`` and ``top_logprobs`` None (nothing before it to predict it from)."""
    if entries and all("text_offset" in e for e in entries):
        offsets = [e["text_offset"] for e in entries]
    else:
        offsets = _text_offsets(entries)
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [None if e.get("top_logprobs") is None else _first_per_token(e["top_logprobs"])
                             for e in entries],
            "text_offset": offsets}


def echoed_logprobs(prompt: str, offsets: list[int], prompt_entries: list[dict],
                    reply_entries: list[dict] | None = None) -> list[dict]:
    """The token entries of an echoed completion: the prompt's tokens (each starting at its
    ``offsets`` entry, a character offset into ``prompt``), then the reply's, whose offsets count on
    from the end of the prompt, as the echoed text is the prompt followed by the reply."""
    entries = [{**entry, "text_offset": offset} for entry, offset in zip(prompt_entries, offsets)]
    reply_entries = reply_entries or []
    return entries + [{**entry, "text_offset": offset}
                      for entry, offset in zip(reply_entries, _text_offsets(reply_entries, len(prompt)))]


def _first_per_token(alternatives: list[dict]) -> dict:
    out: dict = {}
    for alternative in alternatives:  # likeliest first: keep it where two tokens read the same
        out.setdefault(alternative["token"], alternative["logprob"])
    return out


def completion_response(request_id: str, model: str, results, usage: Usage, logprobs: list | None = None) -> dict:
    """``results``: ``(text, finish_reason)`` per choice; ``logprobs``: per choice, token entries or None."""
    logprobs = logprobs or [None] * len(results)
    choices = [{"index": i, "text": text, "logprobs": completion_logprobs(lp) if lp is not None else None,
                "finish_reason": reason}
               for i, ((text, reason), lp) in enumerate(zip(results, logprobs))]
    return {"id": request_id, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage.to_dict()}


def completion_chunk(request_id: str, model: str, text: str, finish_reason: str | None = None,
                     usage: Usage | None = None) -> dict:
    choices = [] if usage is not None and not text and finish_reason is None else [
        {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    ]
    return {"id": request_id, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage.to_dict() if usage is not None else None}


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """The OpenAI error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}

"""OpenAI-style chat and completion requests answered by any :class:`~swiftkit.inference.base.InferEngine`.

``prepare_*`` turn a parsed request into prompt ids (the training encoding) and sampling params
fitted to the engine's context; ``chat`` / ``chat_stream`` / ``complete`` run it on the engine;
``*_body`` / ``*_chunks`` build the response bodies (shared with the deploy server, which batches
the generation itself).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from swiftkit.data.length import SLACK_CHARS, tokens_at_least
from swiftkit.inference.base import PROMPT_LOGPROBS_UNSUPPORTED, Generated
from swiftkit.inference.protocol import (
    ChatRequest,
    CompletionRequest,
    ProtocolError,
    SamplingParams,
    Usage,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    echoed_logprobs,
    new_id,
    tool_call_deltas,
)
from swiftkit.inference.toolcalls import parse_tool_calls


def fit(max_model_len: int | None, prompt_len: int, params: SamplingParams, given: bool = True) -> SamplingParams:
    """``params`` checked against ``max_model_len``: a server default is lowered to fit, a
    client's ``max_tokens`` that does not fit is an error."""
    if max_model_len is None:
        return params
    room = max_model_len - prompt_len
    if room <= 0:
        raise ProtocolError(f"the prompt has {prompt_len} tokens, but this model's context is {max_model_len} "
                            "tokens (max_model_len)", "messages", code="context_length_exceeded")
    if params.max_tokens > room:
        if given:
            raise ProtocolError(
                f"the prompt ({prompt_len} tokens) plus max_tokens ({params.max_tokens}) exceeds this model's "
                f"context of {max_model_len} tokens (max_model_len)", "max_tokens", code="context_length_exceeded")
        params = dataclasses.replace(params, max_tokens=room)
    return params


def _refuse_surely_too_long(engine, chars: int, param: str) -> None:
    """A prompt whose text alone cannot fit the context is refused before it is tokenized: the
    engine's tokenizer is shared under one lock, so tokenizing megabytes would stall every other
    request's generation (the bound: no token covers more characters than the longest vocabulary
    entry, see :mod:`swiftkit.data.length`)."""
    if engine.max_model_len is None:
        return
    fewest = tokens_at_least(engine.template.tokenizer, chars - SLACK_CHARS)
    if fewest > engine.max_model_len:
        raise ProtocolError(f"the prompt has at least {fewest:,} tokens (counted without tokenizing), but this "
                            f"model's context is {engine.max_model_len} tokens (max_model_len)", param,
                            code="context_length_exceeded")


def _check_logprobs(engine, params: SamplingParams) -> None:
    if params.logprobs and not engine.supports_logprobs:
        raise ProtocolError("'logprobs' is not supported by this engine (--infer_backend); use --infer_backend "
                            "transformers", "logprobs")


def prepare_chat(engine, request: ChatRequest) -> tuple[list[int], SamplingParams]:
    """Prompt ids (the training encoding) and the fitted sampling params of a chat request."""
    _check_logprobs(engine, request.params)
    engine.check_model(request.model)
    _refuse_surely_too_long(engine, sum(len(m["content"]) for m in request.messages), "messages")
    try:
        prompt = engine.prompt_ids(request.messages, tools=request.tools)
    except ValueError as exc:
        raise ProtocolError(str(exc), "messages") from exc
    return prompt, fit(engine.max_model_len, len(prompt), request.params, request.max_tokens_given)


def prepare_completion(engine, request: CompletionRequest) -> list[tuple[list[int], SamplingParams]]:
    """Prompt ids and fitted params of each prompt of a completion request."""
    _check_logprobs(engine, request.params)
    engine.check_model(request.model)
    out = []
    for text in request.prompts:
        _refuse_surely_too_long(engine, len(text), "prompt")
        prompt = engine.text_ids(text)
        if not prompt:
            raise ProtocolError("'prompt' encodes to no tokens", "prompt")
        out.append((prompt, fit(engine.max_model_len, len(prompt), request.params, request.max_tokens_given)))
    return out


def chat(engine, request: ChatRequest) -> dict:
    """A ``chat.completion`` body for ``request`` (its ``n`` choices in one batch)."""
    prompt, params = prepare_chat(engine, request)
    replies = engine.generate_ids([prompt] * request.n, params, model=request.model)
    return chat_body(request, len(prompt), replies)


def chat_stream(engine, request: ChatRequest) -> Iterator[dict]:
    """``chat.completion.chunk`` bodies for ``request`` as tokens arrive."""
    prompt, params = prepare_chat(engine, request)
    yield from chat_chunks(request, len(prompt), engine.stream_ids(prompt, params, model=request.model))


def check_prompt_scoring(engine, request: CompletionRequest) -> bool:
    """Whether ``request`` asks for its prompts' log-probabilities (``echo`` with ``logprobs``); a
    :class:`ProtocolError` when the engine cannot score prompts."""
    scoring = bool(request.echo and request.params.logprobs)
    if scoring and not engine.supports_prompt_logprobs:
        raise ProtocolError(PROMPT_LOGPROBS_UNSUPPORTED, "logprobs")
    return scoring


def with_prompt_logprobs(request: CompletionRequest, replies: list[Generated], scored: list[list[dict]],
                         offsets: list[list[int]]) -> list[Generated]:
    """``replies`` (``request.n`` per prompt) whose logprobs start with their prompt's scored tokens."""
    n = request.n
    return [dataclasses.replace(reply, logprobs=echoed_logprobs(request.prompts[k // n], offsets[k // n],
                                                                scored[k // n], reply.logprobs))
            for k, reply in enumerate(replies)]


def complete(engine, request: CompletionRequest) -> dict:
    """A ``text_completion`` body for a raw-prompt request (the server's answer, computed in this thread)."""
    scoring = check_prompt_scoring(engine, request)
    prepared = prepare_completion(engine, request)
    if request.params.max_tokens > 0:
        replies = [r for prompt, params in prepared
                   for r in engine.generate_ids([prompt] * request.n, params, model=request.model)]
    else:  # 0 (with echo): the prompts come back, scored or not
        replies = [Generated("", 0, "length") for _ in range(len(prepared) * request.n)]
    if scoring:
        offsets = [engine.text_offsets(text, ids) for text, (ids, _) in zip(request.prompts, prepared)]
        scored = engine.prompt_logprobs([p for p, _ in prepared], request.params.top_logprobs, request.model)
        replies = with_prompt_logprobs(request, replies, scored, offsets)
    return completion_body(request, sum(len(p) for p, _ in prepared), replies)


def chat_result(request: ChatRequest, reply: Generated) -> tuple:
    """``(text, finish_reason)`` of a reply, or ``(content, "tool_calls", calls)`` when the request
    offers ``tools`` and the reply calls some of them (see :mod:`swiftkit.inference.toolcalls`)."""
    if request.tools:
        content, calls = parse_tool_calls(reply.text, request.tools)
        if calls:
            return content, "tool_calls", calls
    return reply.text, reply.finish_reason


def chat_body(request: ChatRequest, prompt_tokens: int, replies: list[Generated]) -> dict:
    usage = Usage(prompt_tokens, sum(g.completion_tokens for g in replies))
    logprobs = [g.logprobs or [] for g in replies] if request.params.logprobs else None
    return chat_response(new_id("chatcmpl"), request.model, [chat_result(request, g) for g in replies], usage,
                         logprobs)


def completion_body(request: CompletionRequest, prompt_tokens: int, replies: list[Generated]) -> dict:
    usage = Usage(prompt_tokens, sum(g.completion_tokens for g in replies))
    groups = [replies[i:i + request.n] for i in range(0, len(replies), request.n)]
    results = [((p if request.echo else "") + g.text, g.finish_reason)
               for p, group in zip(request.prompts, groups) for g in group]
    logprobs = [g.logprobs or [] for g in replies] if request.params.logprobs else None
    return completion_response(new_id("cmpl"), request.model, results, usage, logprobs)


def chat_chunks(request: ChatRequest, prompt_tokens: int, events) -> Iterator[dict]:
    """Chunk bodies from ``events`` (text pieces, then a :class:`Generated`).

    When the request offers ``tools`` the reply is held back until it is complete: then its text
    outside any calls comes as one content delta and its tool calls as one ``tool_calls`` delta.
    """
    rid, model = new_id("chatcmpl"), request.model
    yield chat_chunk(rid, model, {"role": "assistant", "content": ""})
    for event in events:
        if isinstance(event, str):
            if not request.tools:
                yield chat_chunk(rid, model, {"content": event})
            continue
        finish = event.finish_reason
        if request.tools:
            content, finish, *calls = chat_result(request, event)
            if content:
                yield chat_chunk(rid, model, {"content": content})
            if calls:
                yield chat_chunk(rid, model, {"tool_calls": tool_call_deltas(calls[0])})
        yield chat_chunk(rid, model, {}, finish)
        if request.include_usage:
            yield chat_chunk(rid, model, {}, usage=Usage(prompt_tokens, event.completion_tokens))


def completion_chunks(request: CompletionRequest, prompt_tokens: int, events) -> Iterator[dict]:
    rid, model = new_id("cmpl"), request.model
    if request.echo:
        yield completion_chunk(rid, model, request.prompts[0])
    for event in events:
        if isinstance(event, str):
            yield completion_chunk(rid, model, event)
        else:
            yield completion_chunk(rid, model, "", event.finish_reason)
            if request.include_usage:
                yield completion_chunk(rid, model, "", usage=Usage(prompt_tokens, event.completion_tokens))
